-- Konsult schema, SQLITE dialect: billing a region can audit (issue 9).
-- Keep in step with ../postgres/0004_billing_audit.sql.

-- One patient per person: a keyed lookup hash of the normalised CPR
-- (HMAC, like e-mail logins; never the CPR itself), unique per clinic among
-- patients in force. Filled for existing patients at start-up; a patient whose
-- CPR another patient already holds is marked as that patient's duplicate
-- (duplicate_of) until an admin merges the two. A merged patient points at the
-- patient it was merged into and is inactive.
ALTER TABLE patients ADD COLUMN cpr_lookup TEXT;
ALTER TABLE patients ADD COLUMN duplicate_of TEXT REFERENCES patients(id);
ALTER TABLE patients ADD COLUMN merged_into TEXT REFERENCES patients(id);
CREATE UNIQUE INDEX patients_one_per_cpr ON patients (clinic_id, cpr_lookup)
    WHERE cpr_lookup IS NOT NULL;

-- Every line has a service day (calendar_day) and a posting day (the Danish
-- day it was made; exports are by posting period), the therapist, the fee's
-- regulation reference and whether the fee was unconfirmed. A reversed line
-- names its reversal (reversed_by); only lines neither reversed nor reversals
-- are active. Posting days of existing lines are filled at start-up.
ALTER TABLE billing_lines ADD COLUMN posting_day TEXT;
ALTER TABLE billing_lines ADD COLUMN reversed_by TEXT REFERENCES billing_lines(id);
ALTER TABLE billing_lines ADD COLUMN therapist_id TEXT REFERENCES therapists(id);
ALTER TABLE billing_lines ADD COLUMN fee_reference TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_lines ADD COLUMN fee_unconfirmed BIGINT NOT NULL DEFAULT 0;
UPDATE billing_lines SET reversed_by = (
    SELECT r.id FROM billing_lines r WHERE r.correction_of = billing_lines.id
) WHERE correction_of IS NULL;
UPDATE billing_lines SET therapist_id = (
    SELECT c.therapist_id FROM consultations c WHERE c.id = billing_lines.consultation_id
);
DROP INDEX billing_lines_one_per_patient_day;
DROP INDEX billing_lines_one_per_consultation;
-- One active line per patient and Danish day, and per consultation and
-- patient, held by the database itself.
CREATE UNIQUE INDEX billing_lines_active_per_patient_day
    ON billing_lines (clinic_id, patient_id, calendar_day)
    WHERE correction_of IS NULL AND reversed_by IS NULL;
CREATE UNIQUE INDEX billing_lines_active_per_consultation
    ON billing_lines (consultation_id, patient_id)
    WHERE correction_of IS NULL AND reversed_by IS NULL;
CREATE INDEX billing_lines_posting ON billing_lines (clinic_id, posting_day);

-- Regulation steps a clinic admin recorded on top of the published ones
-- (change: JSON, {"percent":{"ppm":10600}} or {"amounts":{"fees":{...}}}).
CREATE TABLE fee_steps (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    speciale BIGINT NOT NULL,
    effective_from TEXT NOT NULL,
    change TEXT NOT NULL,
    source TEXT NOT NULL,
    recorded_by TEXT NOT NULL REFERENCES therapists(id),
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (clinic_id, speciale, effective_from)
);

-- Every billing decision a consultation has had, oldest first: the first at
-- completion, later ones after a reversal, a fee-table fix, a re-pricing or
-- an in-clinic visit the same day. billing_decisions holds the one in force.
ALTER TABLE billing_decisions ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
CREATE TABLE billing_decision_history (
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    generation BIGINT NOT NULL,
    decision TEXT NOT NULL,
    line_id TEXT REFERENCES billing_lines(id),
    decided_at BIGINT NOT NULL,
    cause TEXT NOT NULL,
    PRIMARY KEY (consultation_id, generation)
);
INSERT INTO billing_decision_history
    (consultation_id, clinic_id, generation, decision, line_id, decided_at, cause)
    SELECT consultation_id, clinic_id, 1, decision, line_id, decided_at, 'completed'
    FROM billing_decisions;
