//! The access service's storage: one trait, [`AccessStore`], with a
//! PostgreSQL and a SQLite implementation generated from the same SQL (see
//! `sql.rs`). Every method that changes state takes the events announcing
//! the change and writes them to the outbox in the same transaction.

mod sql;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::db::{Db, Migrations};
use roster_core::mail::OutgoingMail;
use roster_proto::v1::Event;
use tokio::sync::Notify;

pub use sql::{PostgresAccessStore, SqliteAccessStore};

/// The migrations of this service, for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// Opens the store that fits `db`. `relay` is woken after every commit that
/// wrote events, `mail_relay` after every commit that queued mails.
pub fn open(db: &Db, relay: Arc<Notify>, mail_relay: Arc<Notify>) -> Arc<dyn AccessStore> {
    match db {
        Db::Postgres(pool) => Arc::new(PostgresAccessStore::new(pool.clone(), relay, mail_relay)),
        Db::Sqlite(pool) => Arc::new(SqliteAccessStore::new(pool.clone(), relay, mail_relay)),
    }
}

/// An API key as stored. `Debug` leaves the digest out.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub user_id: String,
    pub secret_hash: String,
    pub name: String,
    /// The rights as written (enum numbers, `RIGHT_USER_ALL` unexpanded).
    pub rights: Vec<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("rights", &self.rights)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A login token as stored. `Debug` leaves the digest out.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginTokenRecord {
    pub id: String,
    pub user_id: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

impl LoginTokenRecord {
    /// Unused and not yet expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.used_at.is_none() && self.expires_at > now
    }
}

impl fmt::Debug for LoginTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginTokenRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// How to order a list of API keys. The key ID breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    Id,
    Name,
    CreatedAt,
    /// Keys that never expire come last when ascending.
    ExpiresAt,
}

/// One page of a user's API keys.
#[derive(Debug, Clone, Copy)]
pub struct KeyQuery<'a> {
    pub user_id: &'a str,
    pub order: KeyOrder,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user already holds the most live login tokens allowed.
    #[error("too many live login tokens")]
    TooManyLoginTokens,
    #[error("an ID collided")]
    AlreadyExists,
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The access service's data.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + 'static {
    async fn insert_api_key(&self, key: &ApiKeyRecord, events: &[Event]) -> Result<(), StoreError>;

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// A page of the user's keys and the user's total number of keys.
    async fn list_api_keys(
        &self,
        query: KeyQuery<'_>,
    ) -> Result<(Vec<ApiKeyRecord>, u64), StoreError>;

    /// Writes name, rights, expiry and `updated_at` of `key` (found by ID
    /// and user). False when there is no such key.
    async fn update_api_key(
        &self,
        key: &ApiKeyRecord,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// False when the user has no key with that ID.
    async fn delete_api_key(
        &self,
        user_id: &str,
        id: &str,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Deletes every API key and login token of the user (after a purge).
    /// Returns how many rows went.
    async fn delete_user_credentials(&self, user_id: &str) -> Result<u64, StoreError>;

    /// Stores a login token unless the user already has `max_live` live
    /// ones at `token.created_at` ([`StoreError::TooManyLoginTokens`]).
    /// Used and expired tokens of the user are deleted on the way. `mails`
    /// (the token's mail) are queued in the same transaction.
    async fn insert_login_token(
        &self,
        token: &LoginTokenRecord,
        max_live: u32,
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<(), StoreError>;

    async fn get_login_token(&self, id: &str) -> Result<Option<LoginTokenRecord>, StoreError>;

    /// Marks the token used at `now` if nobody did before. False when it
    /// was already used (or is gone): of two concurrent calls, one wins.
    async fn use_login_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
        events: &[Event],
    ) -> Result<bool, StoreError>;
}

pub(crate) use roster_core::db::encode_ints;

/// The integers of a stored list; corrupt text is a [`StoreError::Corrupt`].
pub(crate) fn decode_ints(text: &str) -> Result<Vec<i32>, StoreError> {
    roster_core::db::decode_ints(text).map_err(StoreError::Corrupt)
}

/// Now, at the precision both backends keep (microseconds), so a value
/// reads back equal to what was written.
pub fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

/// `at` at microsecond precision.
pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}
