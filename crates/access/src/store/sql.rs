//! The SQL behind [`AccessStore`](super::AccessStore), written once and
//! expanded for PostgreSQL and SQLite by a macro. The backends differ only
//! in how the login-token cap serialises concurrent writers and in the
//! outbox insert.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_proto::v1::Event;
use sqlx::Row;
use tokio::sync::Notify;

use roster_core::mail::OutgoingMail;

use super::{
    AccessStore, ApiKeyRecord, KeyOrder, KeyQuery, LoginTokenRecord, StoreError, decode_ints,
    encode_ints,
};

const KEY_COLUMNS: &str =
    "id, user_id, secret_hash, name, rights, created_at, updated_at, expires_at";
const TOKEN_COLUMNS: &str = "id, user_id, secret_hash, created_at, expires_at, used_at";

fn order_by(order: KeyOrder, descending: bool) -> String {
    let dir = if descending { "DESC" } else { "ASC" };
    match order {
        KeyOrder::Id => format!("id {dir}"),
        KeyOrder::Name => format!("name {dir}, id ASC"),
        KeyOrder::CreatedAt => format!("created_at {dir}, id ASC"),
        // Both backends sort `false` before `true`: keys without an expiry
        // come last ascending and first descending, on either backend.
        KeyOrder::ExpiresAt => format!("(expires_at IS NULL) {dir}, expires_at {dir}, id ASC"),
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

macro_rules! access_store {
    (
        $store:ident,
        $db:ty,
        $pool:ty,
        lock_user = $lock_user:expr,
        commit = $commit:path,
        commit_mailing = $commit_mailing:path
    ) => {
        /// The access store on this backend.
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

            fn key_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<ApiKeyRecord, StoreError> {
                let rights: String = row.try_get("rights")?;
                Ok(ApiKeyRecord {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    secret_hash: row.try_get("secret_hash")?,
                    name: row.try_get("name")?,
                    rights: decode_ints(&rights)?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    expires_at: row.try_get("expires_at")?,
                })
            }

            fn token_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<LoginTokenRecord, StoreError> {
                Ok(LoginTokenRecord {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    secret_hash: row.try_get("secret_hash")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    used_at: row.try_get("used_at")?,
                })
            }
        }

        #[async_trait::async_trait]
        impl AccessStore for $store {
            async fn insert_api_key(
                &self,
                key: &ApiKeyRecord,
                events: &[Event],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(&format!(
                    "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(&key.id)
                .bind(&key.user_id)
                .bind(&key.secret_hash)
                .bind(&key.name)
                .bind(encode_ints(&key.rights))
                .bind(key.created_at)
                .bind(key.updated_at)
                .bind(key.expires_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists),
                    other => other?,
                };
                $commit(tx, events, &self.relay).await?;
                Ok(())
            }

            async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
                let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::key_from_row).transpose()
            }

            async fn list_api_keys(
                &self,
                query: KeyQuery<'_>,
            ) -> Result<(Vec<ApiKeyRecord>, u64), StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY {} \
                     LIMIT $2 OFFSET $3",
                    order_by(query.order, query.descending)
                ))
                .bind(query.user_id)
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(&self.pool)
                .await?;
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE user_id = $1")
                        .bind(query.user_id)
                        .fetch_one(&self.pool)
                        .await?;
                let keys = rows
                    .iter()
                    .map(Self::key_from_row)
                    .collect::<Result<_, _>>()?;
                Ok((keys, u64::try_from(total).unwrap_or(0)))
            }

            async fn update_api_key(
                &self,
                key: &ApiKeyRecord,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let updated = sqlx::query(
                    "UPDATE api_keys SET name = $1, rights = $2, expires_at = $3, updated_at = $4 \
                     WHERE id = $5 AND user_id = $6",
                )
                .bind(&key.name)
                .bind(encode_ints(&key.rights))
                .bind(key.expires_at)
                .bind(key.updated_at)
                .bind(&key.id)
                .bind(&key.user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn delete_api_key(
                &self,
                user_id: &str,
                id: &str,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let deleted = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn delete_user_credentials(&self, user_id: &str) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let keys = sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let tokens = sqlx::query("DELETE FROM login_tokens WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(keys + tokens)
            }

            async fn insert_login_token(
                &self,
                token: &LoginTokenRecord,
                max_live: u32,
                events: &[Event],
                mails: &[OutgoingMail],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if let Some(lock) = $lock_user {
                    sqlx::query(lock)
                        .bind(&token.user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                // Write first, then look: on SQLite the write takes the one
                // write lock, so the read that follows sees every other
                // writer's committed tokens.
                let inserted = sqlx::query(&format!(
                    "INSERT INTO login_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                ))
                .bind(&token.id)
                .bind(&token.user_id)
                .bind(&token.secret_hash)
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(token.used_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists),
                    other => other?,
                };
                let rows = sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM login_tokens WHERE user_id = $1"
                ))
                .bind(&token.user_id)
                .fetch_all(&mut *tx)
                .await?;
                let mut live = 0u32;
                let mut spent = Vec::new();
                for row in &rows {
                    let existing = Self::token_from_row(row)?;
                    if existing.is_live(token.created_at) {
                        live += 1;
                    } else {
                        spent.push(existing.id);
                    }
                }
                if live > max_live {
                    tx.rollback().await?;
                    return Err(StoreError::TooManyLoginTokens);
                }
                for id in spent {
                    sqlx::query("DELETE FROM login_tokens WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                $commit_mailing(tx, events, mails, &self.relay, &self.mail_relay).await?;
                Ok(())
            }

            async fn get_login_token(
                &self,
                id: &str,
            ) -> Result<Option<LoginTokenRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM login_tokens WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::token_from_row).transpose()
            }

            async fn use_login_token(
                &self,
                id: &str,
                now: DateTime<Utc>,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let used = sqlx::query(
                    "UPDATE login_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if used == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }
        }
    };
}

// PostgreSQL: a transaction-scoped advisory lock per user serialises the
// token cap's write-then-count, so concurrent requests cannot both slip
// under it.
access_store!(
    PostgresAccessStore,
    sqlx::Postgres,
    sqlx::PgPool,
    lock_user = Some("SELECT pg_advisory_xact_lock(hashtext('login_tokens:' || $1))"),
    commit = roster_core::events::outbox::commit_pg,
    commit_mailing = roster_core::mail::commit_pg
);

// SQLite: one writer at a time, so the write-then-count needs no lock.
access_store!(
    SqliteAccessStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    lock_user = None::<&str>,
    commit = roster_core::events::outbox::commit_sqlite,
    commit_mailing = roster_core::mail::commit_sqlite
);
