-- Every invitation to an address, accepted or not: `get_by_email` and List
-- ordered by address read through it. `invitations_open_email` covers only
-- the unaccepted ones.
CREATE INDEX invitations_by_email ON invitations (email_key);
