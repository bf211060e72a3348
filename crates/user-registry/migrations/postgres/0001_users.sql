-- Users, their attributes and their links to external identities.
-- Search on user ID and name uses trigram indexes, so substring search stays
-- fast with millions of users.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Text that is ordered, searched or compared uses the "C" collation: byte
-- order, with lower() and ILIKE folding ASCII letters only. That is what
-- SQLite does, so listings and search matches agree between the two
-- backends instead of following the database's locale (an en_US.UTF-8
-- database sorts 'ab' before 'a-b' and 'b' before 'B', and folds 'É' to
-- 'é'). Indexes inherit the collation of their columns, and the columns
-- referencing users.user_id share its collation so they compare alike.

CREATE TABLE users (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL DEFAULT '',
    description TEXT COLLATE "C" NOT NULL DEFAULT '',
    primary_email_address TEXT COLLATE "C" NOT NULL,
    email_normalized TEXT COLLATE "C" NOT NULL,
    primary_email_address_validated_at TIMESTAMPTZ,
    password_hash TEXT NOT NULL,
    password_updated_at TIMESTAMPTZ NOT NULL,
    require_password_update BOOLEAN NOT NULL DEFAULT FALSE,
    state INTEGER NOT NULL,
    state_description TEXT NOT NULL DEFAULT '',
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    temporary_password_hash TEXT,
    temporary_password_created_at TIMESTAMPTZ,
    temporary_password_expires_at TIMESTAMPTZ,
    -- A pending validation of the primary email address: the SHA-256 of
    -- the secret mailed to it, and when that secret expires.
    email_validation_hash TEXT,
    email_validation_expires_at TIMESTAMPTZ,
    profile_picture BYTEA,
    email_notification_types TEXT NOT NULL DEFAULT '',
    universal_rights TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ
);

-- Emails are unique among live users only: deleting a user frees its email.
CREATE UNIQUE INDEX users_live_email ON users (email_normalized) WHERE deleted_at IS NULL;
CREATE INDEX users_user_id_trgm ON users USING gin (user_id gin_trgm_ops);
CREATE INDEX users_name_trgm ON users USING gin (lower(name) gin_trgm_ops);
CREATE INDEX users_description_trgm ON users USING gin (description gin_trgm_ops);
CREATE INDEX users_created_at ON users (created_at);
CREATE INDEX users_name ON users (name);
CREATE INDEX users_admins ON users (user_id) WHERE admin AND deleted_at IS NULL;

CREATE TABLE user_attributes (
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX user_attributes_key ON user_attributes (key);

CREATE TABLE external_users (
    provider_id TEXT COLLATE "C" NOT NULL,
    external_id TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider_id, external_id),
    UNIQUE (provider_id, user_id)
);
