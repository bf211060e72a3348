-- Machine users (`UserType`): 0 a person, 1 a machine. A machine has no
-- password (`password_hash` empty, which verifies nothing) and no primary
-- email address (both address columns empty), so the uniqueness of live
-- addresses leaves empty ones out.
ALTER TABLE users ADD COLUMN user_type INTEGER NOT NULL DEFAULT 0;

DROP INDEX users_live_email;
CREATE UNIQUE INDEX users_live_email ON users (email_normalized)
    WHERE deleted_at IS NULL AND email_normalized <> '';

-- The type filter of List and SearchUsers, and the statistics' count of
-- machines: machines are expected to be few.
CREATE INDEX users_machines ON users (user_id) WHERE user_type = 1;
