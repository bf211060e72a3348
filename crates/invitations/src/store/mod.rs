//! The invitations service's storage, behind two traits: [`MailStore`]
//! (the mail queue) and [`InvitationStore`] (invitations, which queue their
//! mails in the same transaction). Each has a PostgreSQL and a SQLite
//! implementation generated from the same SQL (`sql.rs`,
//! `invitation_sql.rs`). Every method that changes an invitation takes the
//! events announcing the change and writes them to the outbox in the same
//! transaction.

mod invitation_sql;
mod sql;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::db::{Db, Migrations};
use roster_proto::v1::Event;
use tokio::sync::Notify;

pub use invitation_sql::{PostgresInvitationStore, SqliteInvitationStore};
pub use sql::{PostgresMailStore, SqliteMailStore};

/// The migrations of this service, for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// Opens the store that fits `db`.
pub fn open(db: &Db) -> std::sync::Arc<dyn MailStore> {
    match db {
        Db::Postgres(pool) => std::sync::Arc::new(PostgresMailStore::new(pool.clone())),
        Db::Sqlite(pool) => std::sync::Arc::new(SqliteMailStore::new(pool.clone())),
    }
}

/// Opens the invitation store that fits `db`. `relay` is woken after every
/// commit that wrote events.
pub fn open_invitations(db: &Db, relay: Arc<Notify>) -> Arc<dyn InvitationStore> {
    match db {
        Db::Postgres(pool) => Arc::new(PostgresInvitationStore::new(pool.clone(), relay)),
        Db::Sqlite(pool) => Arc::new(SqliteInvitationStore::new(pool.clone(), relay)),
    }
}

/// Template variables whose key starts with this are secrets: never logged,
/// and deleted from the queue once the mail is delivered.
pub use roster_core::mail::SECRET_PREFIX;

/// A queued mail. `Debug` hides secret variables.
#[derive(Clone, PartialEq, Eq)]
pub struct MailRecord {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub template: String,
    pub recipient: String,
    pub recipient_name: String,
    pub data: BTreeMap<String, String>,
    /// Delivery attempts started so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Delivery was refused for good (a permanent SMTP error).
    pub given_up_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for MailRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data: BTreeMap<&str, &str> = self
            .data
            .iter()
            .map(|(k, v)| {
                let shown = if k.starts_with(SECRET_PREFIX) {
                    "<secret>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("MailRecord")
            .field("id", &self.id)
            .field("template", &self.template)
            .field("recipient", &self.recipient)
            .field("data", &data)
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("sent_at", &self.sent_at)
            .field("given_up_at", &self.given_up_at)
            .finish_non_exhaustive()
    }
}

/// Builds the `invitation.delete` event of an expired invitation that a
/// `send` replaces, from the invitation as it was.
pub type ReplacedEvent<'a> = &'a (dyn Fn(&InvitationRecord) -> Event + Send + Sync);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An address of a `send` already has a live (unexpired, unaccepted)
    /// invitation; the address is the one the new invitation was for.
    #[error("an invitation to this address is pending")]
    InvitationPending(String),
    #[error("an ID collided")]
    AlreadyExists,
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The mail queue.
#[async_trait::async_trait]
pub trait MailStore: Send + Sync + 'static {
    /// Stores `mail` unless one with its idempotency key exists; returns the
    /// ID of the stored mail (the existing one's when the key was taken).
    async fn enqueue(&self, mail: &MailRecord) -> Result<String, StoreError>;

    /// Takes up to `limit` mails due at `now` for delivery: their attempt
    /// count goes up and their next attempt moves to `lease_until`, so no
    /// other worker takes them meanwhile (and a worker that dies holding
    /// them only delays them).
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<MailRecord>, StoreError>;

    /// The mail was delivered: its secret variables are deleted.
    async fn mark_sent(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// The attempt failed; try again at `next_attempt_at`.
    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The mail cannot be delivered at all; its secrets are deleted.
    async fn give_up(&self, id: &str, error: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn get(&self, id: &str) -> Result<Option<MailRecord>, StoreError>;

    /// Mails neither delivered nor given up.
    async fn pending(&self) -> Result<u64, StoreError>;

    /// Mails neither delivered nor given up, split by whether an attempt
    /// failed yet.
    async fn waiting(&self) -> Result<WaitingMails, StoreError>;
}

/// The mails waiting in the queue (see [`MailStore::waiting`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitingMails {
    /// No attempt failed yet (never tried, or being sent the first time).
    pub pending: u64,
    /// An attempt failed (or the worker handed the mail back): waiting
    /// for the next one.
    pub retrying: u64,
}

/// `data` without its secret variables.
pub fn without_secrets(data: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    data.iter()
        .filter(|(k, _)| !k.starts_with(SECRET_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A registration holding an invitation (InvitationTokens.Claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    /// Names the claim; Accept and Release must present it.
    pub id: String,
    /// The user about to be created with the invitation.
    pub user_id: String,
    pub at: DateTime<Utc>,
}

/// An invitation as stored. `Debug` leaves the token digest out.
#[derive(Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    pub id: String,
    /// The address as the sender wrote it.
    pub email: String,
    /// The address lowercased: at most one invitation per key is not
    /// accepted.
    pub email_key: String,
    /// The ID part of the current token, which finds the row.
    pub token_id: String,
    /// `TokenHasher::hash` of the current token.
    pub token_hash: String,
    /// The user who sent it; empty when another service did.
    pub sent_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<String>,
    /// The registration holding it; kept after acceptance.
    pub claim: Option<ClaimRecord>,
}

impl InvitationRecord {
    /// Neither accepted nor expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.accepted_at.is_none() && self.expires_at > now
    }

    /// The claim's ID, if any.
    pub fn claim_id(&self) -> Option<&str> {
        self.claim.as_ref().map(|c| c.id.as_str())
    }
}

impl fmt::Debug for InvitationRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvitationRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("token_id", &self.token_id)
            .field("sent_by", &self.sent_by)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("expires_at", &self.expires_at)
            .field("accepted_at", &self.accepted_at)
            .field("accepted_by", &self.accepted_by)
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

/// How to order a list of invitations. The ID breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationOrder {
    /// By the lowercased address.
    Email,
    CreatedAt,
    ExpiresAt,
    /// Pending invitations come last when ascending, first descending.
    AcceptedAt,
}

/// One page of invitations.
#[derive(Debug, Clone, Copy)]
pub struct InvitationQuery<'a> {
    /// Only the invitations this user sent; `None`: every invitation.
    pub sent_by: Option<&'a str>,
    pub order: InvitationOrder,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// Invitations.
#[async_trait::async_trait]
pub trait InvitationStore: Send + Sync + 'static {
    /// Stores every invitation with its mail, all or nothing. An expired,
    /// unaccepted invitation to the same address (`email_key`) as one of
    /// them is deleted first (replaced), and the event `replaced` builds
    /// from it is written ahead of `events`; a live one fails the whole call
    /// with [`StoreError::InvitationPending`] naming the new invitation's
    /// address (the first taken one in `email_key` order).
    async fn send(
        &self,
        batch: &[(InvitationRecord, MailRecord)],
        now: DateTime<Utc>,
        events: &[Event],
        replaced: ReplacedEvent<'_>,
    ) -> Result<(), StoreError>;

    async fn get(&self, id: &str) -> Result<Option<InvitationRecord>, StoreError>;

    /// The invitation whose current token has this ID.
    async fn get_by_token_id(&self, token_id: &str)
    -> Result<Option<InvitationRecord>, StoreError>;

    /// The invitation to `email_key` that is not accepted (pending or
    /// expired) if there is one, else the one accepted last, if any.
    async fn get_by_email(&self, email_key: &str) -> Result<Option<InvitationRecord>, StoreError>;

    /// A page of invitations and their total number.
    async fn list(
        &self,
        query: InvitationQuery<'_>,
    ) -> Result<(Vec<InvitationRecord>, u64), StoreError>;

    /// Deletes the invitation, provided it is not accepted and its claim is
    /// still `expected_claim` (`None`: none). False otherwise, and nothing
    /// changes.
    async fn delete(
        &self,
        id: &str,
        expected_claim: Option<&str>,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Writes the new token, expiry and `updated_at` of `updated` (found by
    /// ID), drops its claim, and queues `mail`, provided the invitation is
    /// not accepted and its claim is still `expected_claim` (`None`: none).
    /// False otherwise, and nothing changes.
    async fn resend(
        &self,
        updated: &InvitationRecord,
        expected_claim: Option<&str>,
        mail: &MailRecord,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Gives the invitation to `claim`, provided its current token is still
    /// `token_id` (the one the caller verified; not replaced by a resend
    /// since), at `claim.at` it is not accepted, not expired, and its claim
    /// is still `expected_claim` (`None`: none), which must be unclaimed or
    /// claimed at or before `stale_before`. One statement, so of concurrent
    /// claims exactly one wins. False otherwise.
    async fn claim(
        &self,
        id: &str,
        token_id: &str,
        claim: &ClaimRecord,
        expected_claim: Option<&str>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Accepts the invitation at `at` for the user of the claim `claim_id`,
    /// provided that claim holds it and it is not accepted yet. False
    /// otherwise.
    async fn accept(
        &self,
        id: &str,
        claim_id: &str,
        at: DateTime<Utc>,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Drops the claim `claim_id` if it holds the unaccepted invitation.
    /// False when it did not.
    async fn release(&self, id: &str, claim_id: &str) -> Result<bool, StoreError>;
}
