//! The invitations service's storage: for now the mail queue, behind one
//! trait, [`MailStore`], with a PostgreSQL and a SQLite implementation
//! generated from the same SQL (see `sql.rs`).

mod sql;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use roster_core::db::{Db, Migrations};

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

/// Template variables whose key starts with this are secrets: never logged,
/// and deleted from the queue once the mail is delivered.
pub const SECRET_PREFIX: &str = "secret_";

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
}

/// `data` without its secret variables.
pub fn without_secrets(data: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    data.iter()
        .filter(|(k, _)| !k.starts_with(SECRET_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
