-- Invitations to register. The token is stored only as a keyed digest
-- (see roster_core::token::TokenHasher); its ID part finds the row.

CREATE TABLE invitations (
    id TEXT COLLATE "C" PRIMARY KEY,
    -- The address as the sender wrote it, and lowercased: addresses are
    -- compared case-insensitively. "C" so that `email` orders the same way
    -- on both backends.
    email TEXT NOT NULL,
    email_key TEXT COLLATE "C" NOT NULL,
    token_id TEXT COLLATE "C" NOT NULL UNIQUE,
    token_hash TEXT NOT NULL,
    -- The user who sent it; empty when another Roster service did.
    sent_by TEXT COLLATE "C" NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    accepted_at TIMESTAMPTZ,
    accepted_by TEXT COLLATE "C",
    -- A registration in progress (InvitationTokens.Claim); kept after the
    -- invitation is accepted, so that Accept can be repeated.
    claim_id TEXT COLLATE "C",
    claimed_by TEXT COLLATE "C",
    claimed_at TIMESTAMPTZ
);
-- At most one invitation per address that is not accepted (pending or
-- expired); accepted ones stay as history.
CREATE UNIQUE INDEX invitations_open_email ON invitations (email_key) WHERE accepted_at IS NULL;
CREATE INDEX invitations_by_sender ON invitations (sent_by);
