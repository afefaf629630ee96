-- Konsult schema, PostgreSQL dialect: a secretary account (books and sees the
-- day, no clinical data). The role column keeps its CHECK of the first
-- release (SQLite cannot change it without rebuilding a table that many
-- others reference), so a secretary is role 'therapist' without clinical
-- access. Keep in step with ../sqlite/0008_secretary.sql.
ALTER TABLE therapists ADD COLUMN clinical BIGINT NOT NULL DEFAULT 1;
