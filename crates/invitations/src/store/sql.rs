//! The SQL behind [`MailStore`](super::MailStore), written once and
//! expanded for PostgreSQL and SQLite by a macro. The backends differ only
//! in how concurrent workers skip each other's mails.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{MailRecord, MailStore, StoreError, WaitingMails, without_secrets};

pub(super) const MAIL_COLUMNS: &str = "id, idempotency_key, template, recipient, recipient_name, data, \
    attempts, next_attempt_at, last_error, created_at, sent_at, given_up_at";

pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(super) fn encode(data: &BTreeMap<String, String>) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".into())
}

fn decode(text: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt("mail data".into()))
}

macro_rules! mail_store {
    ($store:ident, $db:ty, $pool:ty, skip_locked = $skip:literal) => {
        /// The mail queue on this backend.
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
        }

        impl $store {
            pub fn new(pool: $pool) -> Self {
                Self { pool }
            }

            fn mail_from_row(row: &<$db as sqlx::Database>::Row) -> Result<MailRecord, StoreError> {
                let data: String = row.try_get("data")?;
                let attempts: i32 = row.try_get("attempts")?;
                Ok(MailRecord {
                    id: row.try_get("id")?,
                    idempotency_key: row.try_get("idempotency_key")?,
                    template: row.try_get("template")?,
                    recipient: row.try_get("recipient")?,
                    recipient_name: row.try_get("recipient_name")?,
                    data: decode(&data)?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    last_error: row.try_get("last_error")?,
                    created_at: row.try_get("created_at")?,
                    sent_at: row.try_get("sent_at")?,
                    given_up_at: row.try_get("given_up_at")?,
                })
            }

            async fn finish(
                &self,
                id: &str,
                column: &str,
                at: DateTime<Utc>,
                error: Option<&str>,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                // Write first: the row is then held (PostgreSQL) or the one
                // write lock taken (SQLite, where reading first and writing
                // after another writer's commit fails at once).
                let data: Option<String> = sqlx::query_scalar(&format!(
                    "UPDATE mail_queue SET {column} = $1, \
                     last_error = COALESCE($2, last_error) WHERE id = $3 RETURNING data"
                ))
                .bind(at)
                .bind(error)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(data) = data else {
                    return Ok(());
                };
                let kept = encode(&without_secrets(&decode(&data)?));
                sqlx::query("UPDATE mail_queue SET data = $1 WHERE id = $2")
                    .bind(kept)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl MailStore for $store {
            async fn enqueue(&self, mail: &MailRecord) -> Result<String, StoreError> {
                let inserted = sqlx::query(&format!(
                    "INSERT INTO mail_queue ({MAIL_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(&mail.id)
                .bind(&mail.idempotency_key)
                .bind(&mail.template)
                .bind(&mail.recipient)
                .bind(&mail.recipient_name)
                .bind(encode(&mail.data))
                .bind(i32::try_from(mail.attempts).unwrap_or(i32::MAX))
                .bind(mail.next_attempt_at)
                .bind(&mail.last_error)
                .bind(mail.created_at)
                .bind(mail.sent_at)
                .bind(mail.given_up_at)
                .execute(&self.pool)
                .await;
                match inserted {
                    Ok(_) => Ok(mail.id.clone()),
                    Err(err) if is_unique_violation(&err) && mail.idempotency_key.is_some() => {
                        let existing: String = sqlx::query_scalar(
                            "SELECT id FROM mail_queue WHERE idempotency_key = $1",
                        )
                        .bind(&mail.idempotency_key)
                        .fetch_one(&self.pool)
                        .await?;
                        Ok(existing)
                    }
                    Err(err) => Err(err.into()),
                }
            }

            async fn claim_due(
                &self,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<MailRecord>, StoreError> {
                let rows = sqlx::query(&format!(
                    "UPDATE mail_queue SET next_attempt_at = $1, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM mail_queue \
                         WHERE sent_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= $2 \
                         ORDER BY next_attempt_at LIMIT $3{}) \
                     RETURNING {MAIL_COLUMNS}",
                    $skip
                ))
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::mail_from_row).collect()
            }

            async fn mark_sent(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
                self.finish(id, "sent_at", at, None).await
            }

            async fn mark_failed(
                &self,
                id: &str,
                error: &str,
                next_attempt_at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE mail_queue SET last_error = $1, next_attempt_at = $2 WHERE id = $3",
                )
                .bind(error)
                .bind(next_attempt_at)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn give_up(
                &self,
                id: &str,
                error: &str,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                self.finish(id, "given_up_at", at, Some(error)).await
            }

            async fn get(&self, id: &str) -> Result<Option<MailRecord>, StoreError> {
                let row = sqlx::query(&format!("SELECT {MAIL_COLUMNS} FROM mail_queue WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::mail_from_row).transpose()
            }

            async fn pending(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM mail_queue WHERE sent_at IS NULL AND given_up_at IS NULL",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn waiting(&self) -> Result<WaitingMails, StoreError> {
                // The rows the partial index of mails still due covers.
                let (all, failed): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COUNT(last_error) FROM mail_queue \
                     WHERE sent_at IS NULL AND given_up_at IS NULL",
                )
                .fetch_one(&self.pool)
                .await?;
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok(WaitingMails {
                    pending: count(all - failed),
                    retrying: count(failed),
                })
            }
        }
    };
}

// PostgreSQL: workers on several replicas skip the rows another one holds.
mail_store!(
    PostgresMailStore,
    sqlx::Postgres,
    sqlx::PgPool,
    skip_locked = " FOR UPDATE SKIP LOCKED"
);

// SQLite: one writer at a time, so the claiming UPDATE is atomic as it is.
mail_store!(
    SqliteMailStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    skip_locked = ""
);
