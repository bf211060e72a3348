-- Users, their attributes and their links to external identities.
-- SQLite's LIKE is case-insensitive for ASCII, which search relies on.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    primary_email_address TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    primary_email_address_validated_at TEXT,
    password_hash TEXT NOT NULL,
    password_updated_at TEXT NOT NULL,
    require_password_update INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL,
    state_description TEXT NOT NULL DEFAULT '',
    admin INTEGER NOT NULL DEFAULT 0,
    temporary_password_hash TEXT,
    temporary_password_created_at TEXT,
    temporary_password_expires_at TEXT,
    -- A pending validation of the primary email address: the SHA-256 of
    -- the secret mailed to it, and when that secret expires.
    email_validation_hash TEXT,
    email_validation_expires_at TEXT,
    profile_picture BLOB,
    email_notification_types TEXT NOT NULL DEFAULT '',
    universal_rights TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT
);

CREATE UNIQUE INDEX users_live_email ON users (email_normalized) WHERE deleted_at IS NULL;
CREATE INDEX users_created_at ON users (created_at);

CREATE TABLE user_attributes (
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE external_users (
    provider_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (provider_id, external_id),
    UNIQUE (provider_id, user_id)
);
