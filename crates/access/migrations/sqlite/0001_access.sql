-- API keys and login tokens; see the PostgreSQL migration for the notes.
-- Timestamps are RFC 3339 text, compared in Rust rather than in SQL.

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    rights TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, id);

CREATE TABLE login_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX login_tokens_by_user ON login_tokens (user_id);
