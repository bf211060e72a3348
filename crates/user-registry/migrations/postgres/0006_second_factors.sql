-- Second factors. One row per user and kind: 'totp' (an authenticator
-- app; `secret_sealed` is the secret sealed with XChaCha20-Poly1305 under
-- `user_registry.second_factor_keys`, `verified_at` empty while the
-- registration is pending, `last_step` the last time step accepted, so no
-- code is accepted twice), 'otp_email' (mailed codes; the pending code's
-- keyed digest and expiry) and 'recovery_codes' (the batch is in
-- `recovery_codes`).
CREATE TABLE second_factors (
    user_id TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    verified_at TIMESTAMPTZ,
    secret_sealed TEXT,
    last_step BIGINT NOT NULL DEFAULT 0,
    code_hash TEXT,
    code_expires_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, kind)
);

-- Recovery codes as keyed digests; `used_at` set once one is used.
CREATE TABLE recovery_codes (
    user_id TEXT COLLATE "C" NOT NULL,
    code_hash TEXT COLLATE "C" NOT NULL,
    used_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);
