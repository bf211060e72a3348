-- Invitations to register; see the PostgreSQL migration for the notes.
-- Timestamps are RFC 3339 text in UTC, which compare correctly as text.

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    token_id TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    accepted_at TEXT,
    accepted_by TEXT,
    claim_id TEXT,
    claimed_by TEXT,
    claimed_at TEXT
);
CREATE UNIQUE INDEX invitations_open_email ON invitations (email_key) WHERE accepted_at IS NULL;
CREATE INDEX invitations_by_sender ON invitations (sent_by);
