//! Second factors in storage: [`FactorStore`], with a PostgreSQL and a
//! SQLite implementation generated from the same SQL. Secrets are stored
//! sealed or as keyed digests (see `factor_keys`); each change that
//! announces itself writes its events in the same transaction, and the
//! single-use rules (a TOTP step, a recovery code, a mailed code) are
//! conditional updates, so two concurrent uses of one code cannot both win.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::db::Db;
use roster_core::mail::OutgoingMail;
use roster_proto::v1::Event;
use sqlx::Row;
use tokio::sync::Notify;

use super::StoreError;

/// The kinds of second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorKind {
    Totp,
    OtpEmail,
    RecoveryCodes,
}

impl FactorKind {
    pub const ALL: [FactorKind; 3] = [Self::Totp, Self::OtpEmail, Self::RecoveryCodes];

    /// Its name in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::OtpEmail => "otp_email",
            Self::RecoveryCodes => "recovery_codes",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown second factor kind {text}")))
    }
}

/// A user's factor of one kind. `Debug` leaves the secrets out.
#[derive(Clone, PartialEq, Eq)]
pub struct FactorRecord {
    pub user_id: String,
    pub kind: FactorKind,
    pub created_at: DateTime<Utc>,
    /// When it became active; empty for a pending TOTP registration.
    pub verified_at: Option<DateTime<Utc>>,
    /// TOTP: the sealed secret.
    pub secret_sealed: Option<String>,
    /// TOTP: the last time step accepted.
    pub last_step: i64,
    /// OTP email: the pending code's digest and expiry.
    pub code_hash: Option<String>,
    pub code_expires_at: Option<DateTime<Utc>>,
    /// Recovery codes: how many are unused (filled in by reads).
    pub remaining_codes: u32,
}

impl FactorRecord {
    /// A new factor of `kind`, active at once unless it is a TOTP (which
    /// waits for its first code).
    pub fn new(user_id: &str, kind: FactorKind, at: DateTime<Utc>) -> Self {
        Self {
            user_id: user_id.to_string(),
            kind,
            created_at: at,
            verified_at: (kind != FactorKind::Totp).then_some(at),
            secret_sealed: None,
            last_step: 0,
            code_hash: None,
            code_expires_at: None,
            remaining_codes: 0,
        }
    }

    pub fn is_active(&self) -> bool {
        self.verified_at.is_some()
            && (self.kind != FactorKind::RecoveryCodes || self.remaining_codes > 0)
    }
}

impl fmt::Debug for FactorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactorRecord")
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("verified_at", &self.verified_at)
            .field("remaining_codes", &self.remaining_codes)
            .finish_non_exhaustive()
    }
}

/// Opens the factor store that fits `db`, waking the same relays as the
/// user store.
pub fn open(db: &Db, relay: Arc<Notify>, mail_relay: Arc<Notify>) -> Arc<dyn FactorStore> {
    match db {
        Db::Postgres(pool) => Arc::new(PostgresFactorStore {
            pool: pool.clone(),
            relay,
            mail_relay,
        }),
        Db::Sqlite(pool) => Arc::new(SqliteFactorStore {
            pool: pool.clone(),
            relay,
            mail_relay,
        }),
    }
}

/// Second factors.
#[async_trait::async_trait]
pub trait FactorStore: Send + Sync + 'static {
    /// The user's factors, pending ones included, in kind order.
    async fn factors(&self, user_id: &str) -> Result<Vec<FactorRecord>, StoreError>;

    /// Stores `factor`, replacing a pending one of its kind; false (and
    /// nothing written) when an active one of its kind exists.
    async fn put_factor(&self, factor: &FactorRecord, events: &[Event])
    -> Result<bool, StoreError>;

    /// Activates the user's pending factor of `kind` at `at`, remembering
    /// `last_step`; false when none is pending.
    async fn activate_factor(
        &self,
        user_id: &str,
        kind: FactorKind,
        at: DateTime<Utc>,
        last_step: i64,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Removes the user's factor of `kind` (and, for recovery codes, the
    /// codes); false when there was none.
    async fn remove_factor(
        &self,
        user_id: &str,
        kind: FactorKind,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Records `step` as the last accepted step of the user's active TOTP,
    /// if it is later than the one recorded; false otherwise (the code was
    /// used already, or a later one was).
    async fn accept_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;

    /// Replaces the user's recovery codes by `hashes`, the factor made
    /// active at `at`.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        at: DateTime<Utc>,
        hashes: &[String],
        events: &[Event],
    ) -> Result<(), StoreError>;

    /// The digests of the user's unused recovery codes.
    async fn unused_recovery_codes(&self, user_id: &str) -> Result<Vec<String>, StoreError>;

    /// Marks a recovery code used; false when it was used already.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &str,
        at: DateTime<Utc>,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Stores a mailed code's digest for the user's active OTP email
    /// factor and queues its mail, replacing a pending code only if that
    /// one expires by `replace_until` (so one was not just sent); false
    /// (nothing queued) when the user has no such factor or the pending
    /// code is too fresh.
    async fn set_email_code(
        &self,
        user_id: &str,
        hash: &str,
        expires_at: DateTime<Utc>,
        replace_until: DateTime<Utc>,
        mails: &[OutgoingMail],
    ) -> Result<bool, StoreError>;

    /// Uses up the pending mailed code whose digest is `hash`; false when
    /// it is no longer the pending one.
    async fn use_email_code(
        &self,
        user_id: &str,
        hash: &str,
        events: &[Event],
    ) -> Result<bool, StoreError>;

    /// Live users with at least one active factor.
    async fn users_with_active_factor(&self) -> Result<u64, StoreError>;
}

const FACTOR_COLUMNS: &str = "f.user_id, f.kind, f.created_at, f.verified_at, f.secret_sealed, \
    f.last_step, f.code_hash, f.code_expires_at";

macro_rules! factor_store {
    (
        $store:ident,
        $db:ty,
        $pool:ty,
        commit = $commit:path,
        commit_mailing = $commit_mailing:path
    ) => {
        /// The factor store on this backend.
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
            relay: Arc<Notify>,
            mail_relay: Arc<Notify>,
        }

        impl $store {
            fn factor_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<FactorRecord, StoreError> {
                let remaining: i64 = row.try_get("remaining")?;
                Ok(FactorRecord {
                    user_id: row.try_get("user_id")?,
                    kind: FactorKind::parse(row.try_get::<String, _>("kind")?.as_str())?,
                    created_at: row.try_get("created_at")?,
                    verified_at: row.try_get("verified_at")?,
                    secret_sealed: row.try_get("secret_sealed")?,
                    last_step: row.try_get("last_step")?,
                    code_hash: row.try_get("code_hash")?,
                    code_expires_at: row.try_get("code_expires_at")?,
                    remaining_codes: u32::try_from(remaining).unwrap_or(0),
                })
            }
        }

        #[async_trait::async_trait]
        impl FactorStore for $store {
            async fn factors(&self, user_id: &str) -> Result<Vec<FactorRecord>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {FACTOR_COLUMNS}, \
                     (SELECT COUNT(*) FROM recovery_codes r \
                      WHERE r.user_id = f.user_id AND r.used_at IS NULL) AS remaining \
                     FROM second_factors f WHERE f.user_id = $1 ORDER BY f.kind"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::factor_from_row).collect()
            }

            async fn put_factor(
                &self,
                factor: &FactorRecord,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                // The delete takes the write lock (SQLite) or the row lock
                // (PostgreSQL) before the check, so two registrations
                // cannot both find the place free.
                let active: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
                    "DELETE FROM second_factors WHERE user_id = $1 AND kind = $2 \
                     RETURNING verified_at",
                )
                .bind(&factor.user_id)
                .bind(factor.kind.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if matches!(active, Some(Some(_))) {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO second_factors (user_id, kind, created_at, verified_at, \
                     secret_sealed, last_step, code_hash, code_expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&factor.user_id)
                .bind(factor.kind.as_str())
                .bind(factor.created_at)
                .bind(factor.verified_at)
                .bind(&factor.secret_sealed)
                .bind(factor.last_step)
                .bind(&factor.code_hash)
                .bind(factor.code_expires_at)
                .execute(&mut *tx)
                .await?;
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn activate_factor(
                &self,
                user_id: &str,
                kind: FactorKind,
                at: DateTime<Utc>,
                last_step: i64,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE second_factors SET verified_at = $1, last_step = $2 \
                     WHERE user_id = $3 AND kind = $4 AND verified_at IS NULL",
                )
                .bind(at)
                .bind(last_step)
                .bind(user_id)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn remove_factor(
                &self,
                user_id: &str,
                kind: FactorKind,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let removed =
                    sqlx::query("DELETE FROM second_factors WHERE user_id = $1 AND kind = $2")
                        .bind(user_id)
                        .bind(kind.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if removed == 0 {
                    return Ok(false);
                }
                if kind == FactorKind::RecoveryCodes {
                    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn accept_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE second_factors SET last_step = $1 WHERE user_id = $2 \
                     AND kind = 'totp' AND verified_at IS NOT NULL AND last_step < $1",
                )
                .bind(step)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(done == 1)
            }

            async fn replace_recovery_codes(
                &self,
                user_id: &str,
                at: DateTime<Utc>,
                hashes: &[String],
                events: &[Event],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "DELETE FROM second_factors WHERE user_id = $1 AND kind = 'recovery_codes'",
                )
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO second_factors (user_id, kind, created_at, verified_at) \
                     VALUES ($1, 'recovery_codes', $2, $2)",
                )
                .bind(user_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                for hash in hashes {
                    sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                        .bind(user_id)
                        .bind(hash)
                        .execute(&mut *tx)
                        .await?;
                }
                $commit(tx, events, &self.relay).await?;
                Ok(())
            }

            async fn unused_recovery_codes(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT code_hash FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn use_recovery_code(
                &self,
                user_id: &str,
                hash: &str,
                at: DateTime<Utc>,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1 \
                     WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                )
                .bind(at)
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn set_email_code(
                &self,
                user_id: &str,
                hash: &str,
                expires_at: DateTime<Utc>,
                replace_until: DateTime<Utc>,
                mails: &[OutgoingMail],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE second_factors SET code_hash = $1, code_expires_at = $2 \
                     WHERE user_id = $3 AND kind = 'otp_email' AND verified_at IS NOT NULL \
                     AND (code_expires_at IS NULL OR code_expires_at <= $4)",
                )
                .bind(hash)
                .bind(expires_at)
                .bind(user_id)
                .bind(replace_until)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    return Ok(false);
                }
                $commit_mailing(tx, &[], mails, &self.relay, &self.mail_relay).await?;
                Ok(true)
            }

            async fn use_email_code(
                &self,
                user_id: &str,
                hash: &str,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE second_factors SET code_hash = NULL, code_expires_at = NULL \
                     WHERE user_id = $1 AND kind = 'otp_email' AND code_hash = $2",
                )
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn users_with_active_factor(&self) -> Result<u64, StoreError> {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(DISTINCT f.user_id) FROM second_factors f \
                     JOIN users u ON u.user_id = f.user_id \
                     WHERE u.deleted_at IS NULL AND f.verified_at IS NOT NULL \
                     AND (f.kind <> 'recovery_codes' OR EXISTS (SELECT 1 FROM recovery_codes r \
                          WHERE r.user_id = f.user_id AND r.used_at IS NULL))",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(count).unwrap_or(0))
            }
        }
    };
}

factor_store!(
    PostgresFactorStore,
    sqlx::Postgres,
    sqlx::PgPool,
    commit = roster_core::events::outbox::commit_pg,
    commit_mailing = roster_core::mail::commit_pg
);

factor_store!(
    SqliteFactorStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    commit = roster_core::events::outbox::commit_sqlite,
    commit_mailing = roster_core::mail::commit_sqlite
);
