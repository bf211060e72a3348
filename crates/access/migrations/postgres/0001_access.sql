-- API keys and login tokens. Secrets are stored only as keyed digests
-- (see roster_core::token::TokenHasher); the ID is the public part of the
-- token and finds the row.

CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL,
    secret_hash TEXT NOT NULL,
    name TEXT COLLATE "C" NOT NULL DEFAULT '',
    -- The rights as written (RIGHT_USER_ALL stays itself, so the key gains
    -- user rights added later): comma-separated enum numbers.
    rights TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, id);

CREATE TABLE login_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX login_tokens_by_user ON login_tokens (user_id);
