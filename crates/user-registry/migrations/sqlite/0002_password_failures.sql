-- Recent wrong passwords per account (`counter` = '*') and per account
-- and client address (`counter` = 'client:<address>'), each a sliding
-- window, and the lock they led to. Moved here from the sessions service:
-- the service that checks passwords counts the wrong ones.

CREATE TABLE password_failures (
    user_id TEXT NOT NULL,
    counter TEXT NOT NULL,
    recent_failures TEXT NOT NULL DEFAULT '',
    locked_until TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, counter)
);
