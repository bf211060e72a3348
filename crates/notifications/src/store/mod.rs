//! The notifications service's storage, behind one trait,
//! [`NotificationStore`], with a PostgreSQL and a SQLite implementation
//! generated from the same SQL (`sql.rs`). A notification is one row of
//! `notifications` plus one status row per receiver in
//! `notification_receivers`. Every method that changes something takes the
//! events announcing the change (and the mails it owes) and writes them to
//! the outboxes in the same transaction.

mod sql;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::db::{Db, Migrations};
use roster_core::mail::OutgoingMail;
use roster_proto::v1::Event;
use tokio::sync::Notify;

pub use sql::{PostgresNotificationStore, SqliteNotificationStore};

/// The migrations of this service, for both backends.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// Opens the store that fits `db`. `relay` and `mail_relay` are woken after
/// commits that wrote events and mails.
pub fn open(db: &Db, relay: Arc<Notify>, mail_relay: Arc<Notify>) -> Arc<dyn NotificationStore> {
    match db {
        Db::Postgres(pool) => Arc::new(PostgresNotificationStore::new(
            pool.clone(),
            relay,
            mail_relay,
        )),
        Db::Sqlite(pool) => Arc::new(SqliteNotificationStore::new(
            pool.clone(),
            relay,
            mail_relay,
        )),
    }
}

/// The entity a notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// A user, by user ID.
    User(String),
    /// An invitation, by the address it was sent to.
    InvitationEmail(String),
}

impl Entity {
    /// The kind as stored in `entity_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Entity::User(_) => "user",
            Entity::InvitationEmail(_) => "invitation_email",
        }
    }

    /// The value as stored in `entity_id`.
    pub fn value(&self) -> &str {
        match self {
            Entity::User(id) | Entity::InvitationEmail(id) => id,
        }
    }

    /// What [`kind`](Self::kind) and [`value`](Self::value) wrote; `None`
    /// for an unknown kind.
    pub fn from_parts(kind: &str, value: String) -> Option<Entity> {
        match kind {
            "user" => Some(Entity::User(value)),
            "invitation_email" => Some(Entity::InvitationEmail(value)),
            _ => None,
        }
    }
}

/// A notification as stored, shared by all its receivers.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    /// A UUID.
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub entity: Entity,
    /// `NotificationType` as its number.
    pub notification_type: i32,
    /// Type-specific details; never a secret.
    pub data: Option<prost_types::Any>,
    /// The user whose action caused it; `None` for the system.
    pub sender_id: Option<String>,
    /// The `NotificationReceiver` kinds it was addressed to.
    pub receivers: Vec<i32>,
    /// A mail was queued for at least one receiver.
    pub email: bool,
}

/// Where a notification stands for one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverRecord {
    pub user_id: String,
    /// `NotificationStatus` as its number.
    pub status: i32,
    pub status_updated_at: Option<DateTime<Utc>>,
}

/// A notification as one receiver sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedNotification {
    pub notification: NotificationRecord,
    /// `NotificationStatus` as its number.
    pub status: i32,
    pub status_updated_at: Option<DateTime<Utc>>,
}

/// One page of a receiver's notifications, newest first (`created_at`
/// descending, the ID ascending breaking ties).
#[derive(Debug, Clone, Copy)]
pub struct ReceiverQuery<'a> {
    pub user_id: &'a str,
    /// Only these statuses; empty: any.
    pub statuses: &'a [i32],
    pub limit: i64,
    pub offset: i64,
}

/// Builds the events of a status change from the IDs it changed.
pub type StatusEvents<'a> = &'a (dyn Fn(&[String]) -> Vec<Event> + Send + Sync);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Notifications and their receivers.
#[async_trait::async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Stores `record` with one `NOTIFICATION_STATUS_UNSEEN` row per user of
    /// `receivers` (distinct), `events` and `mails`, in one transaction.
    /// When a notification with `record.id` exists already, nothing at all
    /// is written and the answer is false.
    async fn create(
        &self,
        record: &NotificationRecord,
        receivers: &[String],
        events: &[Event],
        mails: &[OutgoingMail],
    ) -> Result<bool, StoreError>;

    /// A page of the receiver's notifications with their status, and how
    /// many match in all.
    async fn list(
        &self,
        query: ReceiverQuery<'_>,
    ) -> Result<(Vec<ReceivedNotification>, u64), StoreError>;

    /// Sets `status` and `status_updated_at = at` on the rows of `user_id`
    /// among the notifications `ids` whose status differs, and writes the
    /// events `events` makes of the IDs changed (when there are any) in the
    /// same transaction. IDs that are not the receiver's are ignored.
    /// Returns the IDs changed, in no particular order.
    async fn update_status(
        &self,
        user_id: &str,
        ids: &[String],
        status: i32,
        at: DateTime<Utc>,
        events: StatusEvents<'_>,
    ) -> Result<Vec<String>, StoreError>;

    /// The notification, without any receiver's status.
    async fn get(&self, id: &str) -> Result<Option<NotificationRecord>, StoreError>;

    /// Every receiver of the notification, by user ID.
    async fn receivers(&self, id: &str) -> Result<Vec<ReceiverRecord>, StoreError>;

    /// Forgets a purged user: their status rows, the notifications about
    /// them (whoever received those), the notifications nobody receives any
    /// more, and their name as a sender. Returns how many notifications
    /// went.
    async fn forget_user(&self, user_id: &str) -> Result<u64, StoreError>;
}
