-- Konsult schema, SQLite dialect: the clinic's phone number, shown to
-- patients on every error and end page (whom to call). The clinic's own
-- business number, not personal data. Keep in step with
-- ../postgres/0006_clinic_phone.sql.
ALTER TABLE clinics ADD COLUMN phone TEXT;
