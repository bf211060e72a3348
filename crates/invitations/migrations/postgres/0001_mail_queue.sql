-- The mail queue: every mail Roster owes somebody, stored before it is
-- sent and delivered by a worker with retries.

CREATE TABLE mail_queue (
    id TEXT COLLATE "C" PRIMARY KEY,
    -- Makes enqueuing safe to retry: one mail per key.
    idempotency_key TEXT COLLATE "C" UNIQUE,
    template TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_name TEXT NOT NULL DEFAULT '',
    -- The template variables as a JSON object; `secret_*` values are
    -- removed once the mail is delivered.
    data TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- When a worker may next try: a failed attempt backs off, and a worker
    -- sending a mail pushes this forward as its lease.
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    -- Delivery was refused for good (a permanent SMTP error).
    given_up_at TIMESTAMPTZ
);
CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at) WHERE sent_at IS NULL AND given_up_at IS NULL;
