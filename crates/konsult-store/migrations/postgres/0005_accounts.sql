-- Konsult schema, PostgreSQL dialect: accounts that can be removed, clinics
-- added by the operator (issue 10, items 7 and 8). Keep in step with
-- ../sqlite/0005_accounts.sql.

-- A login e-mail is unique within its clinic, not across the installation:
-- an admin of one clinic must not learn, by a refused account, that an
-- address exists in another. login_lookup is the keyed hash of the
-- normalised e-mail (what email_lookup held so far), unique per clinic;
-- login finds every active account with it. email_lookup keeps its old
-- installation-wide UNIQUE constraint (SQLite cannot drop it without
-- rebuilding a table that many others reference), so new accounts put the
-- keyed hash of clinic and e-mail in it, which is unique exactly when
-- (clinic_id, login_lookup) is.
ALTER TABLE therapists ADD COLUMN login_lookup TEXT;
UPDATE therapists SET login_lookup = email_lookup;
CREATE UNIQUE INDEX therapists_one_login_per_clinic ON therapists (clinic_id, login_lookup);
CREATE INDEX therapists_login ON therapists (login_lookup);

-- A setup token either sets up the installation's first clinic (clinic_id
-- NULL, printed at start) or the first admin of a clinic the operator added
-- from the command line. It works for a bounded time after created_at.
ALTER TABLE setup_tokens ADD COLUMN clinic_id TEXT REFERENCES clinics(id);
