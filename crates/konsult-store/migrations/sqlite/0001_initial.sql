-- Konsult schema, SQLite dialect. Keep in step with ../postgres/0001_initial.sql.
-- Instants are BIGINT milliseconds since the Unix epoch (UTC); calendar days
-- are TEXT 'YYYY-MM-DD' (the Danish day); *_enc columns hold AES-256-GCM
-- ciphertext (nonce || ciphertext+tag) of personal data.

CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE clinics (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    ydernummer TEXT NOT NULL,
    specialer TEXT NOT NULL,
    fee_table TEXT,
    relay_only_default BIGINT NOT NULL DEFAULT 1,
    retention TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE therapists (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    email_lookup TEXT NOT NULL UNIQUE,
    email_enc BLOB NOT NULL,
    name_enc BLOB NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'therapist')),
    active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    therapist_id TEXT NOT NULL REFERENCES therapists(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    pseudonym TEXT NOT NULL UNIQUE,
    name_enc BLOB,
    cpr_enc BLOB,
    phone_enc BLOB,
    email_enc BLOB,
    created_at BIGINT NOT NULL,
    erased_at BIGINT
);
CREATE INDEX patients_clinic ON patients (clinic_id);

CREATE TABLE courses (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    speciale BIGINT NOT NULL,
    diagnosis_group TEXT,
    structured TEXT,
    referral_date TEXT NOT NULL,
    opened_on TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX courses_patient ON courses (patient_id);

CREATE TABLE visits (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    at BIGINT NOT NULL,
    recorded_by TEXT NOT NULL REFERENCES therapists(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX visits_patient ON visits (patient_id);

CREATE TABLE assessments (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    course_id TEXT NOT NULL REFERENCES courses(id),
    made_by TEXT NOT NULL REFERENCES therapists(id),
    made_at BIGINT NOT NULL,
    cognitively_able BIGINT NOT NULL,
    technically_able BIGINT NOT NULL,
    clinically_relevant BIGINT NOT NULL,
    patient_safe BIGINT NOT NULL,
    patient_prefers_video BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT REFERENCES therapists(id)
);
CREATE INDEX assessments_course ON assessments (course_id);

CREATE TABLE consultations (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    course_id TEXT NOT NULL REFERENCES courses(id),
    therapist_id TEXT NOT NULL REFERENCES therapists(id),
    scheduled_start BIGINT NOT NULL,
    length_minutes BIGINT NOT NULL,
    state TEXT NOT NULL,
    relay_only BIGINT NOT NULL,
    started_at BIGINT,
    eligibility_at_start TEXT,
    two_way_at BIGINT,
    ended_at BIGINT,
    safety_enc BLOB,
    journal_enc BLOB,
    completed_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX consultations_clinic_start ON consultations (clinic_id, scheduled_start);
CREATE INDEX consultations_patient ON consultations (patient_id);

CREATE TABLE join_links (
    token_hash TEXT PRIMARY KEY,
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    opens_at BIGINT NOT NULL,
    closes_at BIGINT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX join_links_consultation ON join_links (consultation_id);

CREATE TABLE consultation_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    kind TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX consultation_events_consultation ON consultation_events (consultation_id);

CREATE TABLE billing_lines (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    consultation_id TEXT REFERENCES consultations(id),
    kind TEXT NOT NULL,
    service_number TEXT NOT NULL,
    speciale BIGINT NOT NULL,
    fee_ore BIGINT NOT NULL,
    region_ore BIGINT NOT NULL,
    patient_ore BIGINT NOT NULL,
    calendar_day TEXT NOT NULL,
    correction_of TEXT REFERENCES billing_lines(id),
    note TEXT,
    exported_at BIGINT,
    created_at BIGINT NOT NULL
);
-- The rule "one billable consultation per patient per calendar day" held by
-- the database itself, whatever the application does.
CREATE UNIQUE INDEX billing_lines_one_per_patient_day
    ON billing_lines (clinic_id, patient_id, calendar_day) WHERE correction_of IS NULL;
CREATE UNIQUE INDEX billing_lines_one_per_consultation
    ON billing_lines (consultation_id) WHERE correction_of IS NULL;
CREATE UNIQUE INDEX billing_lines_one_correction
    ON billing_lines (correction_of) WHERE correction_of IS NOT NULL;
CREATE INDEX billing_lines_day ON billing_lines (clinic_id, calendar_day);

CREATE TABLE billing_decisions (
    consultation_id TEXT PRIMARY KEY REFERENCES consultations(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    decision TEXT NOT NULL,
    line_id TEXT REFERENCES billing_lines(id),
    decided_at BIGINT NOT NULL
);

CREATE TABLE audit_heads (
    clinic_id TEXT PRIMARY KEY REFERENCES clinics(id),
    seq BIGINT NOT NULL,
    head TEXT NOT NULL
);

CREATE TABLE audit_log (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    patient_id TEXT,
    subject TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (clinic_id, seq)
);
