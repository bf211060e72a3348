-- The mail queue; see the PostgreSQL migration for the notes.

CREATE TABLE mail_queue (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    template TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_name TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    -- Delivery was refused for good (a permanent SMTP error).
    given_up_at TEXT
);
CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at) WHERE sent_at IS NULL AND given_up_at IS NULL;
