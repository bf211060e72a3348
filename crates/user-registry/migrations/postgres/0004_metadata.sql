-- Users' metadata (UserMetadata): key → opaque bytes, beside the user.
-- `value_digest` is the SHA-256 of the value, so a filter on a key and a
-- value finds its rows through an index of bounded width whatever the
-- value's size (`value` is compared too, so a digest collision cannot
-- match). IDs and keys compare byte by byte (`COLLATE "C"`), as in
-- `users`, so keys sort as on SQLite and joins on `user_id` use the keys.
CREATE TABLE user_metadata (
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    value_digest BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE INDEX user_metadata_key_value ON user_metadata (key, value_digest, user_id);
