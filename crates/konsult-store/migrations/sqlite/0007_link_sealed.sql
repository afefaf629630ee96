-- Konsult schema, SQLite dialect: a join link can be shown again. The
-- token is kept sealed (AES-256-GCM under the data-at-rest key, bound to
-- its row) while the link works, so the clinic can show or send the same
-- link again without invalidating it; revoking the link removes it. Links
-- issued before this migration have none and can only be replaced. Keep
-- in step with ../postgres/0007_link_sealed.sql.
ALTER TABLE join_links ADD COLUMN token_enc BLOB;
