-- The consultation's call as the server observed it, and the state a
-- signaling room needs to survive a restart. Same in both dialects.

-- The detail of a call event: the evidence of `two_way_established`, the
-- reason of `ended` (codes of konsult_domain::lifecycle).
ALTER TABLE consultation_events ADD COLUMN detail TEXT;

-- The strongest evidence of two-way media of the consultation's call
-- (`client_reported`, `relay_observed`); NULL while there is none.
ALTER TABLE consultations ADD COLUMN two_way_evidence TEXT;
UPDATE consultations SET two_way_evidence = 'client_reported' WHERE two_way_at IS NOT NULL;

-- When the consultation became over (ended, completed, cancelled, no-show,
-- technical failure): relay credentials of it are refused for a day after.
ALTER TABLE consultations ADD COLUMN closed_at BIGINT;
UPDATE consultations SET closed_at = COALESCE(completed_at, ended_at, created_at)
    WHERE state IN ('ended', 'completed', 'cancelled', 'no_show', 'technical_failure');

-- What a billing line's two-way evidence rests on.
ALTER TABLE billing_lines ADD COLUMN evidence TEXT NOT NULL DEFAULT 'client_reported';

-- Which evidence of two-way media the clinic accepts for billing
-- (`client_reported`: relay-observed or consistent client reports;
-- `relay_observed`: only media observed by Konsult's relay).
ALTER TABLE clinics ADD COLUMN evidence_policy TEXT NOT NULL DEFAULT 'client_reported';

-- A signaling room's record (konsult_signal::RoomRecord as JSON: resume
-- token hashes, sequence numbers, admission, policies; no message content,
-- no address, no token), written with every change that matters for
-- resuming and deleted when the room closes.
CREATE TABLE signaling_rooms (
    consultation_id TEXT PRIMARY KEY REFERENCES consultations(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    record TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX join_links_revoked ON join_links (revoked_at);
