-- Users' metadata (UserMetadata): key → opaque bytes, beside the user.
-- `value_digest` is the SHA-256 of the value, so a filter on a key and a
-- value finds its rows through an index of bounded width whatever the
-- value's size (`value` is compared too, so a digest collision cannot
-- match).
CREATE TABLE user_metadata (
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    value_digest BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE INDEX user_metadata_key_value ON user_metadata (key, value_digest, user_id);
