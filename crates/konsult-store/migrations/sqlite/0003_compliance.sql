-- Konsult schema, SQLite dialect: what the patient-rights, records and
-- breach-support features need. Keep in step with ../postgres/0003_compliance.sql.

-- Rectification (GDPR art. 16): every change of a patient's personal data
-- keeps the values it replaced, sealed like the patient row itself
-- (previous_enc, AES-256-GCM), and which fields changed. The audit entry
-- `patient.rectify` names this row as its subject. Erasure deletes the rows.
CREATE TABLE patient_revisions (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    fields TEXT NOT NULL,
    previous_enc BLOB NOT NULL
);
CREATE INDEX patient_revisions_patient ON patient_revisions (clinic_id, patient_id);

-- Logins of the clinic's accounts, for breach investigation (GDPR art. 33).
-- No address, no user agent: who, when, and the outcome only.
CREATE TABLE login_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    therapist_id TEXT NOT NULL REFERENCES therapists(id),
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'throttled', 'logout'))
);
CREATE INDEX login_events_clinic_at ON login_events (clinic_id, at);

-- The clinic's own privacy notice for the join page (JSON: contact and
-- Danish/English text); NULL means the default notice.
ALTER TABLE clinics ADD COLUMN privacy_notice TEXT;

-- The patient's access log and the period exports read the audit log by
-- patient and by time.
CREATE INDEX audit_log_patient ON audit_log (clinic_id, patient_id);
CREATE INDEX audit_log_at ON audit_log (clinic_id, at);
