//! The SQL behind [`SessionStore`](super::SessionStore), written once and
//! expanded for PostgreSQL and SQLite by a macro. The backends differ only
//! in the outbox insert.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_proto::v1::Event;
use sqlx::Row;
use tokio::sync::Notify;

use super::{ChallengeRecord, SessionOrder, SessionQuery, SessionRecord, SessionStore, StoreError};

const CHALLENGE_COLUMNS: &str = "id, user_id, secret_hash, created_at, expires_at, attempts, \
    methods, first_factor, password_update_only";

const SESSION_COLUMNS: &str = "id, user_id, secret_hash, created_at, updated_at, expires_at, \
    remote_ip, user_agent, password_update_only";

fn order_by(order: SessionOrder, descending: bool) -> String {
    let dir = if descending { "DESC" } else { "ASC" };
    let column = match order {
        SessionOrder::CreatedAt => "created_at",
        SessionOrder::UpdatedAt => "updated_at",
        SessionOrder::ExpiresAt => "expires_at",
    };
    format!("{column} {dir}, id ASC")
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

macro_rules! session_store {
    (
        $store:ident,
        $db:ty,
        $pool:ty,
        commit = $commit:path
    ) => {
        /// The session store on this backend.
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
            relay: Arc<Notify>,
        }

        impl $store {
            pub fn new(pool: $pool, relay: Arc<Notify>) -> Self {
                Self { pool, relay }
            }

            fn session_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<SessionRecord, StoreError> {
                Ok(SessionRecord {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    secret_hash: row.try_get("secret_hash")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    expires_at: row.try_get("expires_at")?,
                    remote_ip: row.try_get("remote_ip")?,
                    user_agent: row.try_get("user_agent")?,
                    password_update_only: row.try_get("password_update_only")?,
                })
            }
        }

        impl $store {
            fn challenge_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<ChallengeRecord, StoreError> {
                let methods: String = row.try_get("methods")?;
                Ok(ChallengeRecord {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    secret_hash: row.try_get("secret_hash")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    attempts: row.try_get("attempts")?,
                    methods: methods.split(',').filter_map(|m| m.parse().ok()).collect(),
                    first_factor: row.try_get("first_factor")?,
                    password_update_only: row.try_get("password_update_only")?,
                })
            }
        }

        #[async_trait::async_trait]
        impl SessionStore for $store {
            async fn insert_challenge(
                &self,
                challenge: &ChallengeRecord,
                prune_before: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                let methods = challenge
                    .methods
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let inserted = sqlx::query(&format!(
                    "INSERT INTO login_challenges ({CHALLENGE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(&challenge.id)
                .bind(&challenge.user_id)
                .bind(&challenge.secret_hash)
                .bind(challenge.created_at)
                .bind(challenge.expires_at)
                .bind(challenge.attempts)
                .bind(methods)
                .bind(&challenge.first_factor)
                .bind(challenge.password_update_only)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists),
                    other => other?,
                };
                sqlx::query("DELETE FROM login_challenges WHERE expires_at < $1")
                    .bind(prune_before)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn attempt_challenge(
                &self,
                id: &str,
                now: DateTime<Utc>,
                max_attempts: i32,
            ) -> Result<Option<ChallengeRecord>, StoreError> {
                let mut tx = self.pool.begin().await?;
                // The update comes first, so concurrent attempts count one
                // after the other and never exceed the bound.
                let counted = sqlx::query(
                    "UPDATE login_challenges SET attempts = attempts + 1 \
                     WHERE id = $1 AND expires_at > $2 AND attempts < $3",
                )
                .bind(id)
                .bind(now)
                .bind(max_attempts)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if counted == 0 {
                    return Ok(None);
                }
                let row = sqlx::query(&format!(
                    "SELECT {CHALLENGE_COLUMNS} FROM login_challenges WHERE id = $1"
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                let mut challenge = Self::challenge_from_row(&row)?;
                challenge.attempts -= 1;
                Ok(Some(challenge))
            }

            async fn complete_challenge(
                &self,
                challenge_id: &str,
                session: &SessionRecord,
                prune_before: DateTime<Utc>,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let used = sqlx::query("DELETE FROM login_challenges WHERE id = $1")
                    .bind(challenge_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if used == 0 {
                    return Ok(false);
                }
                sqlx::query(&format!(
                    "INSERT INTO sessions ({SESSION_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(&session.id)
                .bind(&session.user_id)
                .bind(&session.secret_hash)
                .bind(session.created_at)
                .bind(session.updated_at)
                .bind(session.expires_at)
                .bind(&session.remote_ip)
                .bind(&session.user_agent)
                .bind(session.password_update_only)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND expires_at < $2")
                    .bind(&session.user_id)
                    .bind(prune_before)
                    .execute(&mut *tx)
                    .await?;
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn insert_session(
                &self,
                session: &SessionRecord,
                prune_before: DateTime<Utc>,
                events: &[Event],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(&format!(
                    "INSERT INTO sessions ({SESSION_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(&session.id)
                .bind(&session.user_id)
                .bind(&session.secret_hash)
                .bind(session.created_at)
                .bind(session.updated_at)
                .bind(session.expires_at)
                .bind(&session.remote_ip)
                .bind(&session.user_agent)
                .bind(session.password_update_only)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists),
                    other => other?,
                };
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND expires_at < $2")
                    .bind(&session.user_id)
                    .bind(prune_before)
                    .execute(&mut *tx)
                    .await?;
                $commit(tx, events, &self.relay).await?;
                Ok(())
            }

            async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::session_from_row).transpose()
            }

            async fn list_sessions(
                &self,
                query: SessionQuery<'_>,
            ) -> Result<(Vec<SessionRecord>, u64), StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY {} \
                     LIMIT $2 OFFSET $3",
                    order_by(query.order, query.descending)
                ))
                .bind(query.user_id)
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(&self.pool)
                .await?;
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id = $1")
                        .bind(query.user_id)
                        .fetch_one(&self.pool)
                        .await?;
                let sessions = rows
                    .iter()
                    .map(Self::session_from_row)
                    .collect::<Result<_, _>>()?;
                Ok((sessions, u64::try_from(total).unwrap_or(0)))
            }

            async fn session_ids_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
                Ok(
                    sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1 ORDER BY id")
                        .bind(user_id)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn delete_sessions(
                &self,
                user_id: &str,
                ids: &[String],
                events: &[Event],
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut deleted = 0;
                for id in ids {
                    deleted += sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
                        .bind(id)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                if deleted == 0 {
                    return Ok(0);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(deleted)
            }

            async fn record_events(&self, events: &[Event]) -> Result<(), StoreError> {
                let tx = self.pool.begin().await?;
                $commit(tx, events, &self.relay).await?;
                Ok(())
            }
        }
    };
}

session_store!(
    PostgresSessionStore,
    sqlx::Postgres,
    sqlx::PgPool,
    commit = roster_core::events::outbox::commit_pg
);

session_store!(
    SqliteSessionStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    commit = roster_core::events::outbox::commit_sqlite
);
