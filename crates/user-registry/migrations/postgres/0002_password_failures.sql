-- Recent wrong passwords per account (`counter` = '*') and per account
-- and client address (`counter` = 'client:<address>'), each a sliding
-- window, and the lock they led to. Moved here from the sessions service:
-- the service that checks passwords counts the wrong ones.

CREATE TABLE password_failures (
    user_id TEXT COLLATE "C" NOT NULL,
    counter TEXT COLLATE "C" NOT NULL,
    -- When the failures within the window happened: comma-separated
    -- microseconds since the epoch, oldest first.
    recent_failures TEXT NOT NULL DEFAULT '',
    locked_until TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, counter)
);
