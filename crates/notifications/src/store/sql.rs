//! The SQL behind [`NotificationStore`](super::NotificationStore), written
//! once and expanded for PostgreSQL and SQLite by a macro. The backends
//! differ only in how the outbox rows (events and mails) are written.
//!
//! Every transaction writes before it reads: on SQLite the first write
//! takes the one write lock (waiting out the busy timeout), while a
//! transaction that read first fails at once when another writer commits
//! in between.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost::Message;
use roster_core::db::{decode_ints, encode_ints};
use roster_core::mail::OutgoingMail;
use roster_proto::v1::Event;
use sqlx::Row;
use tokio::sync::Notify;

use super::{
    Entity, NotificationRecord, NotificationStore, ReceivedNotification, ReceiverQuery,
    ReceiverRecord, StatusEvents, StoreError,
};

const NOTIFICATION_COLUMNS: &str = "id, created_at, entity_kind, entity_id, notification_type, \
    data, sender_id, receivers, email";

/// The same columns, of the `notifications` table aliased `n`.
const JOINED_COLUMNS: &str = "n.id, n.created_at, n.entity_kind, n.entity_id, \
    n.notification_type, n.data, n.sender_id, n.receivers, n.email, \
    r.status, r.status_updated_at";

/// `AND r.status IN (…)` for the statuses, which are numbers the service
/// validated, so they are written into the statement; empty: no condition.
fn status_filter(statuses: &[i32]) -> String {
    if statuses.is_empty() {
        return String::new();
    }
    let list: Vec<String> = statuses.iter().map(i32::to_string).collect();
    format!(" AND r.status IN ({})", list.join(", "))
}

/// `$first, $first+1, …` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode_data(bytes: Option<Vec<u8>>) -> Result<Option<prost_types::Any>, StoreError> {
    bytes
        .map(|b| {
            prost_types::Any::decode(b.as_slice())
                .map_err(|_| StoreError::Corrupt("notification data".into()))
        })
        .transpose()
}

macro_rules! notification_store {
    ($store:ident, $db:ty, $pool:ty, commit = $commit:path, commit_mailing = $commit_mailing:path) => {
        /// Notifications on this backend.
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
            relay: Arc<Notify>,
            mail_relay: Arc<Notify>,
        }

        impl $store {
            /// `relay` and `mail_relay` are woken after commits that wrote
            /// events and mails.
            pub fn new(pool: $pool, relay: Arc<Notify>, mail_relay: Arc<Notify>) -> Self {
                Self {
                    pool,
                    relay,
                    mail_relay,
                }
            }

            fn record_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<NotificationRecord, StoreError> {
                let kind: String = row.try_get("entity_kind")?;
                let entity = Entity::from_parts(&kind, row.try_get("entity_id")?)
                    .ok_or_else(|| StoreError::Corrupt(format!("entity kind `{kind}`")))?;
                let receivers: String = row.try_get("receivers")?;
                Ok(NotificationRecord {
                    id: row.try_get("id")?,
                    created_at: row.try_get("created_at")?,
                    entity,
                    notification_type: row.try_get("notification_type")?,
                    data: decode_data(row.try_get("data")?)?,
                    sender_id: row.try_get("sender_id")?,
                    receivers: decode_ints(&receivers).map_err(StoreError::Corrupt)?,
                    email: row.try_get("email")?,
                })
            }
        }

        #[async_trait::async_trait]
        impl NotificationStore for $store {
            async fn create(
                &self,
                record: &NotificationRecord,
                receivers: &[String],
                events: &[Event],
                mails: &[OutgoingMail],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                // An ID that exists means the notification was made already
                // (a redelivered event): the insert does nothing, and nothing
                // else is written either.
                let inserted = sqlx::query(&format!(
                    "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(&record.id)
                .bind(record.created_at)
                .bind(record.entity.kind())
                .bind(record.entity.value())
                .bind(record.notification_type)
                .bind(record.data.as_ref().map(Message::encode_to_vec))
                .bind(&record.sender_id)
                .bind(encode_ints(&record.receivers))
                .bind(record.email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    return Ok(false);
                }
                for user_id in receivers {
                    sqlx::query(
                        "INSERT INTO notification_receivers \
                         (notification_id, user_id, status, status_updated_at, created_at) \
                         VALUES ($1, $2, 0, NULL, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(&record.id)
                    .bind(user_id)
                    .bind(record.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                $commit_mailing(tx, events, mails, &self.relay, &self.mail_relay).await?;
                Ok(true)
            }

            async fn list(
                &self,
                query: ReceiverQuery<'_>,
            ) -> Result<(Vec<ReceivedNotification>, u64), StoreError> {
                let filter = status_filter(query.statuses);
                let rows = sqlx::query(&format!(
                    "SELECT {JOINED_COLUMNS} FROM notification_receivers r \
                     JOIN notifications n ON n.id = r.notification_id \
                     WHERE r.user_id = $1{filter} \
                     ORDER BY r.created_at DESC, r.notification_id ASC LIMIT $2 OFFSET $3"
                ))
                .bind(query.user_id)
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM notification_receivers r WHERE r.user_id = $1{filter}"
                ))
                .bind(query.user_id)
                .fetch_one(&self.pool)
                .await?;
                let notifications = rows
                    .iter()
                    .map(|row| {
                        Ok(ReceivedNotification {
                            notification: Self::record_from_row(row)?,
                            status: row.try_get("status")?,
                            status_updated_at: row.try_get("status_updated_at")?,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok((notifications, u64::try_from(total).unwrap_or(0)))
            }

            async fn update_status(
                &self,
                user_id: &str,
                ids: &[String],
                status: i32,
                at: DateTime<Utc>,
                events: StatusEvents<'_>,
            ) -> Result<Vec<String>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.pool.begin().await?;
                let sql = format!(
                    "UPDATE notification_receivers SET status = $1, status_updated_at = $2 \
                     WHERE user_id = $3 AND status <> $1 AND notification_id IN ({}) \
                     RETURNING notification_id",
                    placeholders(4, ids.len())
                );
                let mut update = sqlx::query_scalar::<_, String>(&sql)
                    .bind(status)
                    .bind(at)
                    .bind(user_id);
                for id in ids {
                    update = update.bind(id);
                }
                let changed = update.fetch_all(&mut *tx).await?;
                if changed.is_empty() {
                    return Ok(changed);
                }
                $commit(tx, &events(&changed), &self.relay).await?;
                Ok(changed)
            }

            async fn get(&self, id: &str) -> Result<Option<NotificationRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::record_from_row).transpose()
            }

            async fn forget_user(&self, user_id: &str) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                // The first statement writes (see the module comment): on
                // SQLite a transaction that read first could not take the
                // write lock once another writer committed.
                sqlx::query("UPDATE notifications SET sender_id = NULL WHERE sender_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                // What only they received, and what is about them, goes
                // with its status rows (written out: SQLite may not enforce
                // the cascade).
                let doomed = "SELECT r.notification_id FROM notification_receivers r \
                    WHERE r.user_id = $1 AND NOT EXISTS (SELECT 1 FROM notification_receivers o \
                        WHERE o.notification_id = r.notification_id AND o.user_id <> $1) \
                    UNION SELECT id FROM notifications WHERE entity_kind = 'user' AND entity_id = $1";
                let ids: Vec<String> = sqlx::query_scalar(doomed)
                    .bind(user_id)
                    .fetch_all(&mut *tx)
                    .await?;
                for id in &ids {
                    sqlx::query("DELETE FROM notification_receivers WHERE notification_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM notifications WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                // What others received too stays theirs, without this user.
                sqlx::query("DELETE FROM notification_receivers WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
            }

            async fn receivers(&self, id: &str) -> Result<Vec<ReceiverRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT user_id, status, status_updated_at FROM notification_receivers \
                     WHERE notification_id = $1 ORDER BY user_id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(ReceiverRecord {
                            user_id: row.try_get("user_id")?,
                            status: row.try_get("status")?,
                            status_updated_at: row.try_get("status_updated_at")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

notification_store!(
    PostgresNotificationStore,
    sqlx::Postgres,
    sqlx::PgPool,
    commit = roster_core::events::outbox::commit_pg,
    commit_mailing = roster_core::mail::commit_pg
);

notification_store!(
    SqliteNotificationStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    commit = roster_core::events::outbox::commit_sqlite,
    commit_mailing = roster_core::mail::commit_sqlite
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_from_the_first() {
        assert_eq!(placeholders(4, 3), "$4, $5, $6");
        assert_eq!(placeholders(1, 1), "$1");
    }

    #[test]
    fn a_status_filter_lists_the_numbers() {
        assert_eq!(status_filter(&[]), "");
        assert_eq!(status_filter(&[0, 2]), " AND r.status IN (0, 2)");
    }
}
