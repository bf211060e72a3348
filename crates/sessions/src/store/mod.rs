//! The sessions service's storage: one trait, [`SessionStore`], with a
//! PostgreSQL and a SQLite implementation generated from the same SQL (see
//! `sql.rs`). Every method that changes state takes the events announcing
//! the change and writes them to the outbox in the same transaction.

mod sql;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::db::{Db, Migrations};
use roster_proto::v1::Event;
use tokio::sync::Notify;

pub use sql::{PostgresSessionStore, SqliteSessionStore};

/// The migrations of this service, for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// Opens the store that fits `db`. `relay` is woken after every commit that
/// wrote events.
pub fn open(db: &Db, relay: Arc<Notify>) -> Arc<dyn SessionStore> {
    match db {
        Db::Postgres(pool) => Arc::new(PostgresSessionStore::new(pool.clone(), relay)),
        Db::Sqlite(pool) => Arc::new(SqliteSessionStore::new(pool.clone(), relay)),
    }
}

/// A session as stored. `Debug` leaves the digest out.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub remote_ip: String,
    pub user_agent: String,
    pub password_update_only: bool,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("remote_ip", &self.remote_ip)
            .field("password_update_only", &self.password_update_only)
            .finish_non_exhaustive()
    }
}

/// A login waiting for its second factor. `Debug` leaves the digest out.
#[derive(Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: String,
    pub user_id: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Codes tried (and mailed) against it.
    pub attempts: i32,
    /// The AuthenticationMethodType numbers it may complete with.
    pub methods: Vec<i32>,
    /// `password` or `login_token`.
    pub first_factor: String,
    pub password_update_only: bool,
}

impl fmt::Debug for ChallengeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChallengeRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How to order a list of sessions. The session ID breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOrder {
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
}

/// One page of a user's sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionQuery<'a> {
    pub user_id: &'a str,
    pub order: SessionOrder,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an ID collided")]
    AlreadyExists,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The sessions service's data.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session. Sessions of the user that expired before
    /// `prune_before` are deleted.
    async fn insert_session(
        &self,
        session: &SessionRecord,
        prune_before: DateTime<Utc>,
        events: &[Event],
    ) -> Result<(), StoreError>;

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// A page of the user's sessions and the user's total number of them.
    async fn list_sessions(
        &self,
        query: SessionQuery<'_>,
    ) -> Result<(Vec<SessionRecord>, u64), StoreError>;

    /// Every session ID of the user.
    async fn session_ids_of(&self, user_id: &str) -> Result<Vec<String>, StoreError>;

    /// Deletes those of `ids` that are the user's; returns how many went.
    /// The events are written only when at least one did.
    async fn delete_sessions(
        &self,
        user_id: &str,
        ids: &[String],
        events: &[Event],
    ) -> Result<u64, StoreError>;

    /// Writes events that go with no change of this store's data (a login
    /// refused for a reason that changes nothing) to the outbox.
    async fn record_events(&self, events: &[Event]) -> Result<(), StoreError>;

    /// Stores a new login challenge; challenges that expired before
    /// `prune_before` go.
    async fn insert_challenge(
        &self,
        challenge: &ChallengeRecord,
        prune_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Counts one attempt against a live challenge with fewer than
    /// `max_attempts` and returns it as it was before; `None` for an
    /// unknown, expired or used-up challenge.
    async fn attempt_challenge(
        &self,
        id: &str,
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<ChallengeRecord>, StoreError>;

    /// Deletes the challenge and stores the session it led to, in one
    /// transaction with `events`; false (nothing written) when the
    /// challenge was used meanwhile.
    async fn complete_challenge(
        &self,
        challenge_id: &str,
        session: &SessionRecord,
        prune_before: DateTime<Utc>,
        events: &[Event],
    ) -> Result<bool, StoreError>;
}
