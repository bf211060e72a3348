-- Login sessions and failed-login counters; see the PostgreSQL migration
-- for the notes. Timestamps are RFC 3339 text in UTC, which sorts in time
-- order.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    remote_ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    password_update_only BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

CREATE TABLE login_failures (
    user_id TEXT PRIMARY KEY,
    recent_failures TEXT NOT NULL DEFAULT '',
    locked_until TEXT
);
