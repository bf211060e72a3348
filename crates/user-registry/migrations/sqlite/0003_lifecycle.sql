-- An account's lifecycle beyond its review state: an administrator's lock,
-- a deactivation (each with when and why) and the actions the user must
-- complete other than a password change (which stays
-- `require_password_update`), as comma-separated UserRequiredAction numbers.
-- `sessions_ended_at` is when the last deactivation ended the user's
-- sessions: kept after reactivation, so no session made before it works.
ALTER TABLE users ADD COLUMN locked_at TEXT;
ALTER TABLE users ADD COLUMN lock_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN deactivated_at TEXT;
ALTER TABLE users ADD COLUMN deactivation_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN required_actions TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN sessions_ended_at TEXT;
