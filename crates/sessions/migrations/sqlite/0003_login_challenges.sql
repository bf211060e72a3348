-- Logins waiting for their second factor. Like a session, a challenge is
-- found by its ID and proven by its secret, of which only a keyed digest
-- is stored. `attempts` counts the codes tried (and codes mailed) against
-- it; the row goes when the login completes, so it is used once.
CREATE TABLE login_challenges (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Comma-separated AuthenticationMethodType numbers it may complete with.
    methods TEXT NOT NULL,
    -- How the first step was proven: `password` or `login_token`.
    first_factor TEXT NOT NULL,
    password_update_only BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX login_challenges_by_expiry ON login_challenges (expires_at);
