//! The user registry's storage: one trait, [`UserStore`], with a PostgreSQL
//! and a SQLite implementation generated from the same SQL (see `sql.rs`).
//! Every method that changes state takes the events announcing the change
//! and writes them to the outbox in the same transaction; the ones that can
//! owe a mail (a validation link, a temporary password) queue it in the mail
//! outbox in that transaction too.

pub mod cache;
mod cached;
pub mod factors;
mod sql;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::db::{Db, Migrations};
use roster_core::mail::OutgoingMail;
use roster_proto::v1::Event;
use tokio::sync::Notify;

use crate::lockout::{Counters, FailurePolicy, Failures, Forget, GuessState};

pub use cache::UserCache;
pub use cached::CachedUserStore;
pub use sql::{PostgresUserStore, SearchBudgets, SqliteUserStore};

/// The migrations of this service, for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// Opens the store that fits `db`. `relay` is woken after every commit that
/// wrote events, so they go out at once; `mail_relay` after every commit
/// that queued mails.
pub fn open(db: &Db, relay: Arc<Notify>, mail_relay: Arc<Notify>) -> Arc<dyn UserStore> {
    match db {
        Db::Postgres(pool) => Arc::new(PostgresUserStore::new(pool.clone(), relay, mail_relay)),
        Db::Sqlite(pool) => Arc::new(SqliteUserStore::new(pool.clone(), relay, mail_relay)),
    }
}

/// `store` behind a [`UserCache`] of `max_bytes` keeping users for `ttl`
/// (see `cached.rs`), with the cache; `store` itself when either is 0.
pub fn cached(
    store: Arc<dyn UserStore>,
    max_bytes: u64,
    ttl: std::time::Duration,
) -> (Arc<dyn UserStore>, Option<Arc<UserCache>>) {
    if max_bytes == 0 || ttl.is_zero() {
        return (store, None);
    }
    let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let cache = Arc::new(UserCache::new(max_bytes, ttl));
    let store = Arc::new(CachedUserStore::new(store, cache.clone()));
    (store, Some(cache))
}

/// A user as stored. Secrets are hashes; `Debug` shows none of them.
#[derive(Clone, PartialEq)]
pub struct UserRecord {
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub attributes: BTreeMap<String, String>,
    pub primary_email_address: String,
    /// The lowercased address, unique among live users.
    pub email_normalized: String,
    pub primary_email_address_validated_at: Option<DateTime<Utc>>,
    pub password_hash: String,
    pub password_updated_at: DateTime<Utc>,
    pub require_password_update: bool,
    pub state: i32,
    pub state_description: String,
    pub admin: bool,
    pub temporary_password_hash: Option<String>,
    pub temporary_password_created_at: Option<DateTime<Utc>>,
    pub temporary_password_expires_at: Option<DateTime<Utc>>,
    /// The SHA-256 of the pending email validation secret.
    pub email_validation_hash: Option<String>,
    pub email_validation_expires_at: Option<DateTime<Utc>>,
    /// The encoded `roster.v1.Picture`.
    pub profile_picture: Option<Vec<u8>>,
    pub email_notification_types: Vec<i32>,
    pub universal_rights: Option<Vec<i32>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Locks, deactivation and required actions.
    pub lifecycle: Lifecycle,
    /// The `UserType`: human (0) or machine (1). Set at creation, never
    /// changed.
    pub user_type: i32,
}

/// Where an account stands beyond its review state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// When an administrator locked the account (`LockUser`).
    pub locked_at: Option<DateTime<Utc>>,
    pub lock_reason: String,
    /// When an administrator deactivated the account.
    pub deactivated_at: Option<DateTime<Utc>>,
    pub deactivation_reason: String,
    /// Pending `UserRequiredAction`s other than a password change (that
    /// one is `require_password_update`), sorted.
    pub required_actions: Vec<i32>,
    /// When the last deactivation ended the user's sessions; kept after
    /// reactivation, so that no session made before it works again.
    pub sessions_ended_at: Option<DateTime<Utc>>,
}

impl Lifecycle {
    /// Whether the user's credentials are refused: deactivated, or locked
    /// by an administrator.
    pub fn suspends_credentials(&self) -> bool {
        self.locked_at.is_some() || self.deactivated_at.is_some()
    }
}

/// Counts over all users (`GetUserStatistics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserCounts {
    /// Live users.
    pub total: u64,
    /// Live users by review state number (0 to 4).
    pub by_state: [u64; 5],
    pub admins: u64,
    /// Soft-deleted users.
    pub deleted: u64,
    /// Live users an administrator locked, or locked for everyone after
    /// wrong passwords.
    pub locked: u64,
    pub deactivated: u64,
    /// Live humans whose address is not validated.
    pub email_unvalidated: u64,
    /// Live machine users.
    pub machines: u64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("user_id", &self.user_id)
            .field("state", &self.state)
            .field("admin", &self.admin)
            .field("deleted_at", &self.deleted_at)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    /// The user as answers show it: without the hashes of its password,
    /// temporary password and email validation secret.
    pub fn without_secrets(mut self) -> Self {
        self.password_hash = String::new();
        self.temporary_password_hash = None;
        self.email_validation_hash = None;
        self
    }

    /// A machine user: no password, no address, no login.
    pub fn is_machine(&self) -> bool {
        self.user_type == roster_proto::v1::UserType::Machine as i32
    }

    /// An approved (or flagged) live human admin, neither locked nor
    /// deactivated, whose rights no `universal_rights` restrict: one that
    /// counts for the last-admin guard.
    pub fn is_effective_admin(&self) -> bool {
        self.admin
            && !self.is_machine()
            && self.deleted_at.is_none()
            && !self.lifecycle.suspends_credentials()
            && self.universal_rights.is_none()
            && matches!(
                roster_proto::v1::State::try_from(self.state),
                Ok(roster_proto::v1::State::Approved | roster_proto::v1::State::Flagged)
            )
    }
}

/// A link between a user and an external identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalUserRecord {
    pub provider_id: String,
    pub external_id: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A list or search query over users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// Soft-deleted users instead of live ones.
    pub deleted: bool,
    /// Substring of the user ID or the name.
    pub id_or_name: Option<String>,
    pub id_contains: Option<String>,
    pub name_contains: Option<String>,
    pub description_contains: Option<String>,
    /// (exact key, substring of value).
    pub attributes: Vec<(String, String)>,
    /// Any of these states; empty means any.
    pub states: Vec<i32>,
    /// Metadata entries every match has.
    pub metadata: Vec<MetadataFilter>,
    /// Any of these `UserType`s; empty means any.
    pub types: Vec<i32>,
    /// One of `user_id`, `name`, `primary_email_address`, `state`, `admin`,
    /// `created_at`.
    pub order: &'static str,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
    /// Keyset paging: only rows after this one in the order (the order
    /// value and user ID of the last row of the previous page).
    pub after: Option<Keyset>,
    /// When text filters are given, count matches only up to this many.
    pub count_cap: Option<i64>,
    /// Whether to count the matches at all (a keyset page after the first
    /// does not: the first page said the total).
    pub count: bool,
}

/// Where a keyset page starts: the order value and the user ID of the last
/// row of the page before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub value: OrderValue,
    pub user_id: String,
}

/// A value of one of the [`ORDER_FIELDS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderValue {
    /// `user_id`: the ID alone is the key.
    None,
    Text(String),
    Int(i32),
    Bool(bool),
    Time(DateTime<Utc>),
}

impl OrderValue {
    /// The value of `order` in `user`: what the next page starts after.
    pub fn of(user: &UserRecord, order: &str) -> OrderValue {
        match order {
            "name" => OrderValue::Text(user.name.clone()),
            "primary_email_address" => OrderValue::Text(user.primary_email_address.clone()),
            "state" => OrderValue::Int(user.state),
            "admin" => OrderValue::Bool(user.admin),
            "created_at" => OrderValue::Time(user.created_at),
            _ => OrderValue::None,
        }
    }
}

impl UserQuery {
    /// Whether any substring filter is set (the expensive kind).
    pub fn has_text_filters(&self) -> bool {
        self.id_or_name.is_some()
            || self.id_contains.is_some()
            || self.name_contains.is_some()
            || self.description_contains.is_some()
            || !self.attributes.is_empty()
    }
}

impl Default for UserQuery {
    fn default() -> Self {
        Self {
            deleted: false,
            id_or_name: None,
            id_contains: None,
            name_contains: None,
            description_contains: None,
            attributes: Vec::new(),
            states: Vec::new(),
            metadata: Vec::new(),
            types: Vec::new(),
            order: "user_id",
            descending: false,
            limit: 100,
            offset: 0,
            after: None,
            count_cap: None,
            count: true,
        }
    }
}

/// Users with a metadata entry of this key (and, when given, this value).
/// `Debug` shows the key only: values may be sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct MetadataFilter {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl fmt::Debug for MetadataFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataFilter")
            .field("key", &self.key)
            .field("with_value", &self.value.is_some())
            .finish()
    }
}

/// A metadata entry as stored. `Debug` shows the key only.
#[derive(Clone, PartialEq, Eq)]
pub struct MetadataRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for MetadataRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataRecord")
            .field("key", &self.key)
            .field("value_bytes", &self.value.len())
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of a metadata value: what the `(key, value_digest)` index
/// holds, so that index stays narrow whatever the value's size.
pub(crate) fn value_digest(value: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(value).to_vec()
}

/// The columns a query may order by.
pub const ORDER_FIELDS: &[&str] = &[
    "user_id",
    "name",
    "primary_email_address",
    "state",
    "admin",
    "created_at",
];

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken: `user_id`, `primary_email_address` or
    /// `external_id`.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// The row is gone or was changed since it was read.
    #[error("the record changed or no longer exists")]
    Conflict,
    /// The change would leave no live approved admin.
    #[error("the last admin cannot be removed")]
    LastAdmin,
    /// Setting metadata would leave the user with more than `limit`
    /// entries (`count`).
    #[error("at most {limit} metadata entries per user")]
    MetadataFull { limit: u64, count: u64 },
    /// A metadata key to delete is not set.
    #[error("metadata key {0:?} not found")]
    MetadataMissing(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// Builds the events of a wrong password once its outcome is known.
pub type FailureEvents<'a> = &'a (dyn Fn(&Failures) -> Vec<Event> + Send + Sync);

/// The user registry's storage.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Inserts a new user with its attributes.
    async fn insert_user(&self, user: &UserRecord, events: &[Event]) -> Result<(), StoreError> {
        self.insert_user_mailing(user, events, &[]).await
    }

    /// [`insert_user`](Self::insert_user), queuing `mails` (which may hold
    /// secrets) in the same transaction.
    async fn insert_user_mailing(
        &self,
        user: &UserRecord,
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<(), StoreError>;

    /// A user by ID, live or soft-deleted.
    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError>;

    /// A user by ID, live or soft-deleted, with the end of its
    /// account-wide lock after wrong passwords if one holds at `now`: one
    /// statement.
    async fn get_user_and_lock(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserRecord, Option<DateTime<Utc>>)>, StoreError>;

    /// A user by ID, live or soft-deleted, as answers show it (`Get`): no
    /// secrets. A cache may serve it from memory, as stale as the event of
    /// a change made elsewhere takes to arrive (or, that event lost, its
    /// TTL): never a row to change, nor one to check a password against.
    async fn read_user(&self, user_id: &str) -> Result<Option<Arc<UserRecord>>, StoreError> {
        Ok(self
            .get_user(user_id)
            .await?
            .map(|u| Arc::new(u.without_secrets())))
    }

    /// [`get_user_and_lock`](Self::get_user_and_lock) as answers show it
    /// (`GetWithStatus`): no secrets. A cache may serve the user from
    /// memory only once the table says it has not changed, so it is as
    /// fresh as the table; the lock always comes from its table.
    async fn read_user_and_lock(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Arc<UserRecord>, Option<DateTime<Utc>>)>, StoreError> {
        Ok(self
            .get_user_and_lock(user_id, now)
            .await?
            .map(|(u, lock)| (Arc::new(u.without_secrets()), lock)))
    }

    /// The user's `updated_at` (every change moves it) and the end of its
    /// account-wide lock after wrong passwords if one holds at `now`: one
    /// narrow statement, what a cached user is checked against.
    async fn user_version_and_lock(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, Option<DateTime<Utc>>)>, StoreError>;

    /// The live user with this normalized email.
    async fn find_live_by_email(&self, normalized: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Replaces a user, if it still has `previous_updated_at` (else
    /// [`StoreError::Conflict`]). With `guard_last_admin`, fails with
    /// [`StoreError::LastAdmin`] when no live approved admin would remain.
    async fn update_user(
        &self,
        user: &UserRecord,
        previous_updated_at: DateTime<Utc>,
        guard_last_admin: bool,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.update_user_mailing(user, previous_updated_at, guard_last_admin, events, &[])
            .await
    }

    /// [`update_user`](Self::update_user), queuing `mails` in the same
    /// transaction.
    async fn update_user_mailing(
        &self,
        user: &UserRecord,
        previous_updated_at: DateTime<Utc>,
        guard_last_admin: bool,
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<(), StoreError>;

    /// Deletes a user and everything that hangs off it, for good. With
    /// `guard_last_admin`, fails with [`StoreError::LastAdmin`] when the user
    /// is, at that moment, the last live approved admin.
    async fn purge_user(
        &self,
        user_id: &str,
        guard_last_admin: bool,
        events: &[Event],
    ) -> Result<(), StoreError>;

    /// A page of users matching `query`, and the total that match (0 when
    /// `query.count` is false).
    async fn search_users(&self, query: &UserQuery) -> Result<(Vec<UserRecord>, u64), StoreError>;

    /// Live approved admins.
    async fn count_effective_admins(&self) -> Result<u64, StoreError>;

    /// Counts over every user, in one aggregate query; account-wide locks
    /// after wrong passwords count while they last at `now`.
    async fn user_counts(&self, now: DateTime<Utc>) -> Result<UserCounts, StoreError>;

    /// Writes events that go with no state change (a failed password check).
    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.append_mailing(events, &[]).await
    }

    /// Writes events and queues mails that go with no state change, in one
    /// transaction.
    async fn append_mailing(
        &self,
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<(), StoreError>;

    /// The account's wrong-guess `counters` (one secret's, the account's
    /// and a client's) at `now`.
    async fn guess_state(
        &self,
        user_id: &str,
        counters: &Counters,
        now: DateTime<Utc>,
    ) -> Result<GuessState, StoreError>;

    /// Counts a wrong guess in both `counters`, locking either at its
    /// limit, and writes the events `events` builds from the outcome, all
    /// in one transaction.
    async fn record_password_failure(
        &self,
        user_id: &str,
        counters: &Counters,
        policy: &FailurePolicy,
        events: FailureEvents<'_>,
    ) -> Result<Failures, StoreError>;

    /// Forgets the account's wrong guesses that `forget` names.
    async fn clear_password_failures(
        &self,
        user_id: &str,
        forget: Forget<'_>,
    ) -> Result<(), StoreError>;

    /// Upserts `entries` (key, value) of the live user `user_id` at `at`
    /// and writes `events`, all in one transaction: nothing changes if the
    /// user would end with more than `max_entries` entries
    /// ([`StoreError::MetadataFull`]) or is gone ([`StoreError::Conflict`]).
    async fn set_metadata(
        &self,
        user_id: &str,
        entries: &[(String, Vec<u8>)],
        at: DateTime<Utc>,
        max_entries: u64,
        events: &[Event],
    ) -> Result<(), StoreError>;

    /// A page of the user's entries whose key starts with `key_prefix`,
    /// ordered by key, and how many there are.
    async fn list_metadata(
        &self,
        user_id: &str,
        key_prefix: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<MetadataRecord>, u64), StoreError>;

    /// Deletes the entries of `keys` and writes `events`, all or none: a
    /// key that is not set fails with [`StoreError::MetadataMissing`]
    /// (the first in key order) and deletes nothing.
    async fn delete_metadata(
        &self,
        user_id: &str,
        keys: &[String],
        events: &[Event],
    ) -> Result<(), StoreError>;

    async fn insert_external_user(
        &self,
        link: &ExternalUserRecord,
        events: &[Event],
    ) -> Result<(), StoreError>;

    async fn get_external_user_by_user_id(
        &self,
        provider_id: &str,
        user_id: &str,
    ) -> Result<Option<ExternalUserRecord>, StoreError>;

    async fn get_external_user_by_external_id(
        &self,
        provider_id: &str,
        external_id: &str,
    ) -> Result<Option<ExternalUserRecord>, StoreError>;

    /// Deletes a link; false if there was none.
    async fn delete_external_user(
        &self,
        provider_id: &str,
        external_id: &str,
        events: &[Event],
    ) -> Result<bool, StoreError>;
}

pub(crate) use roster_core::db::encode_ints;

/// The integers of a stored list; corrupt text is a [`StoreError::Corrupt`].
pub(crate) fn decode_ints(text: &str) -> Result<Vec<i32>, StoreError> {
    roster_core::db::decode_ints(text).map_err(StoreError::Corrupt)
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern and wraps
/// the text in `%…%`.
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Which unique key a violation concerns, from the constraint name or
/// message (they differ by backend).
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    if !db.is_unique_violation() {
        return None;
    }
    let text = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
    Some(if text.contains("email") {
        "primary_email_address"
    } else if text.contains("external") {
        "external_id"
    } else {
        "user_id"
    })
}
