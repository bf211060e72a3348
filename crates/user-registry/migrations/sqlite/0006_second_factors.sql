-- Second factors; see the PostgreSQL migration for the notes.
CREATE TABLE second_factors (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    verified_at TEXT,
    secret_sealed TEXT,
    last_step BIGINT NOT NULL DEFAULT 0,
    code_hash TEXT,
    code_expires_at TEXT,
    PRIMARY KEY (user_id, kind)
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at TEXT,
    PRIMARY KEY (user_id, code_hash)
);
