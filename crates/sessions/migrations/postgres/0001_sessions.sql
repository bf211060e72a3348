-- Login sessions and failed-login counters. A session's secret is stored
-- only as a keyed digest (roster_core::token::TokenHasher); its ID is the
-- public part of the session token.

CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    remote_ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    -- The user had to change the password when logging in: the session
    -- carries no rights.
    password_update_only BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

-- Recent failed password logins per user (a sliding window), and the lock
-- they led to.
CREATE TABLE login_failures (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    -- When the failures within the window happened: comma-separated
    -- microseconds since the epoch, oldest first, at most the lock limit.
    recent_failures TEXT NOT NULL DEFAULT '',
    locked_until TIMESTAMPTZ
);
