//! The SQL behind [`InvitationStore`](super::InvitationStore), written once
//! and expanded for PostgreSQL and SQLite by a macro. The backends differ
//! only in how the outbox rows are written.
//!
//! Every transaction writes before it reads: on SQLite the first write
//! takes the one write lock (waiting out the busy timeout), while a
//! transaction that read first fails at once when another writer commits
//! in between.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_proto::v1::Event;
use sqlx::Row;
use tokio::sync::Notify;

use super::sql::{MAIL_COLUMNS, encode, is_unique_violation};
use super::{
    ClaimRecord, InvitationOrder, InvitationQuery, InvitationRecord, InvitationStore, MailRecord,
    ReplacedEvent, StoreError,
};

const INVITATION_COLUMNS: &str = "id, email, email_key, token_id, token_hash, sent_by, \
    created_at, updated_at, expires_at, accepted_at, accepted_by, claim_id, claimed_by, claimed_at";

/// The unique index that keeps one unaccepted invitation per address.
const OPEN_EMAIL_INDEX: &str = "invitations_open_email";

fn order_by(order: InvitationOrder, descending: bool) -> String {
    let dir = if descending { "DESC" } else { "ASC" };
    match order {
        InvitationOrder::Email => format!("email_key {dir}, id ASC"),
        InvitationOrder::CreatedAt => format!("created_at {dir}, id ASC"),
        InvitationOrder::ExpiresAt => format!("expires_at {dir}, id ASC"),
        // Both backends sort `false` before `true`: pending invitations come
        // last ascending and first descending, on either backend.
        InvitationOrder::AcceptedAt => {
            format!("(accepted_at IS NULL) {dir}, accepted_at {dir}, id ASC")
        }
    }
}

/// Whether `err` is the violation of [`OPEN_EMAIL_INDEX`]: PostgreSQL names
/// the index, SQLite the column.
fn violates_open_email(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            db.constraint() == Some(OPEN_EMAIL_INDEX)
                || db.message().contains("invitations.email_key")
        }
        _ => false,
    }
}

macro_rules! invitation_store {
    ($store:ident, $db:ty, $pool:ty, commit = $commit:path) => {
        /// Invitations on this backend.
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
            relay: Arc<Notify>,
        }

        impl $store {
            pub fn new(pool: $pool, relay: Arc<Notify>) -> Self {
                Self { pool, relay }
            }

            fn from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<InvitationRecord, StoreError> {
                let claim_id: Option<String> = row.try_get("claim_id")?;
                let claimed_by: Option<String> = row.try_get("claimed_by")?;
                let claimed_at: Option<DateTime<Utc>> = row.try_get("claimed_at")?;
                let claim = match (claim_id, claimed_by, claimed_at) {
                    (Some(id), Some(user_id), Some(at)) => Some(ClaimRecord { id, user_id, at }),
                    (None, None, None) => None,
                    _ => return Err(StoreError::Corrupt("invitation claim".into())),
                };
                Ok(InvitationRecord {
                    id: row.try_get("id")?,
                    email: row.try_get("email")?,
                    email_key: row.try_get("email_key")?,
                    token_id: row.try_get("token_id")?,
                    token_hash: row.try_get("token_hash")?,
                    sent_by: row.try_get("sent_by")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    expires_at: row.try_get("expires_at")?,
                    accepted_at: row.try_get("accepted_at")?,
                    accepted_by: row.try_get("accepted_by")?,
                    claim,
                })
            }

            async fn one(
                &self,
                condition: &str,
                value: &str,
            ) -> Result<Option<InvitationRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {INVITATION_COLUMNS} FROM invitations WHERE {condition}"
                ))
                .bind(value)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::from_row).transpose()
            }

            async fn queue_mail(
                conn: &mut <$db as sqlx::Database>::Connection,
                mail: &MailRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(&format!(
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
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl InvitationStore for $store {
            async fn send(
                &self,
                batch: &[(InvitationRecord, MailRecord)],
                now: DateTime<Utc>,
                events: &[Event],
                replaced: ReplacedEvent<'_>,
            ) -> Result<(), StoreError> {
                // Addresses in one order for every caller, so two sends that
                // share addresses wait for each other instead of deadlocking
                // (PostgreSQL); the refusal then names the first taken
                // address in that order.
                let mut ordered: Vec<&(InvitationRecord, MailRecord)> = batch.iter().collect();
                ordered.sort_by(|a, b| a.0.email_key.cmp(&b.0.email_key));
                let mut tx = self.pool.begin().await?;
                // The events of the replaced invitations, then `events`.
                let mut written = Vec::with_capacity(events.len());
                for (invitation, mail) in ordered {
                    // An expired invitation is replaced, announced as
                    // deleted; a live one stays, and the insert below trips
                    // over it.
                    let gone = sqlx::query(&format!(
                        "DELETE FROM invitations \
                         WHERE email_key = $1 AND accepted_at IS NULL AND expires_at <= $2 \
                         RETURNING {INVITATION_COLUMNS}"
                    ))
                    .bind(&invitation.email_key)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                    for row in &gone {
                        written.push(replaced(&Self::from_row(row)?));
                    }
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO invitations ({INVITATION_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                    ))
                    .bind(&invitation.id)
                    .bind(&invitation.email)
                    .bind(&invitation.email_key)
                    .bind(&invitation.token_id)
                    .bind(&invitation.token_hash)
                    .bind(&invitation.sent_by)
                    .bind(invitation.created_at)
                    .bind(invitation.updated_at)
                    .bind(invitation.expires_at)
                    .bind(invitation.accepted_at)
                    .bind(&invitation.accepted_by)
                    .bind(invitation.claim.as_ref().map(|c| c.id.as_str()))
                    .bind(invitation.claim.as_ref().map(|c| c.user_id.as_str()))
                    .bind(invitation.claim.as_ref().map(|c| c.at))
                    .execute(&mut *tx)
                    .await;
                    match inserted {
                        Err(err) if violates_open_email(&err) => {
                            return Err(StoreError::InvitationPending(invitation.email.clone()));
                        }
                        Err(err) if is_unique_violation(&err) => {
                            return Err(StoreError::AlreadyExists);
                        }
                        other => other?,
                    };
                    Self::queue_mail(&mut tx, mail).await?;
                }
                written.extend_from_slice(events);
                $commit(tx, &written, &self.relay).await?;
                Ok(())
            }

            async fn get(&self, id: &str) -> Result<Option<InvitationRecord>, StoreError> {
                self.one("id = $1", id).await
            }

            async fn get_by_token_id(
                &self,
                token_id: &str,
            ) -> Result<Option<InvitationRecord>, StoreError> {
                self.one("token_id = $1", token_id).await
            }

            async fn get_by_email(
                &self,
                email_key: &str,
            ) -> Result<Option<InvitationRecord>, StoreError> {
                // Both backends sort `true` after `false`: the unaccepted
                // one (at most one) first, then the latest accepted.
                self.one(
                    "email_key = $1 ORDER BY (accepted_at IS NULL) DESC, accepted_at DESC LIMIT 1",
                    email_key,
                )
                .await
            }

            async fn list(
                &self,
                query: InvitationQuery<'_>,
            ) -> Result<(Vec<InvitationRecord>, u64), StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {INVITATION_COLUMNS} FROM invitations \
                     WHERE ($1 IS NULL OR sent_by = $1) ORDER BY {} LIMIT $2 OFFSET $3",
                    order_by(query.order, query.descending)
                ))
                .bind(query.sent_by)
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM invitations WHERE ($1 IS NULL OR sent_by = $1)",
                )
                .bind(query.sent_by)
                .fetch_one(&self.pool)
                .await?;
                let invitations = rows
                    .iter()
                    .map(Self::from_row)
                    .collect::<Result<_, _>>()?;
                Ok((invitations, u64::try_from(total).unwrap_or(0)))
            }

            async fn delete(
                &self,
                id: &str,
                expected_claim: Option<&str>,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let deleted = sqlx::query(
                    "DELETE FROM invitations \
                     WHERE id = $1 AND accepted_at IS NULL AND COALESCE(claim_id, '') = $2",
                )
                .bind(id)
                .bind(expected_claim.unwrap_or_default())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn resend(
                &self,
                updated: &InvitationRecord,
                expected_claim: Option<&str>,
                mail: &MailRecord,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let changed = sqlx::query(
                    "UPDATE invitations SET token_id = $1, token_hash = $2, expires_at = $3, \
                     updated_at = $4, claim_id = NULL, claimed_by = NULL, claimed_at = NULL \
                     WHERE id = $5 AND accepted_at IS NULL AND COALESCE(claim_id, '') = $6",
                )
                .bind(&updated.token_id)
                .bind(&updated.token_hash)
                .bind(updated.expires_at)
                .bind(updated.updated_at)
                .bind(&updated.id)
                .bind(expected_claim.unwrap_or_default())
                .execute(&mut *tx)
                .await;
                let changed = match changed {
                    Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists),
                    other => other?.rows_affected(),
                };
                if changed == 0 {
                    return Ok(false);
                }
                Self::queue_mail(&mut tx, mail).await?;
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn claim(
                &self,
                id: &str,
                token_id: &str,
                claim: &ClaimRecord,
                expected_claim: Option<&str>,
                stale_before: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                // One statement: the row's lock (PostgreSQL, which re-checks
                // the condition on the row a concurrent claim or resend just
                // wrote) or the one write lock (SQLite) lets exactly one of
                // concurrent claims through, and none with a token a resend
                // replaced after the caller verified it.
                let claimed = sqlx::query(
                    "UPDATE invitations SET claim_id = $1, claimed_by = $2, claimed_at = $3 \
                     WHERE id = $4 AND token_id = $5 AND accepted_at IS NULL AND expires_at > $3 \
                     AND COALESCE(claim_id, '') = $6 \
                     AND (claim_id IS NULL OR claimed_at <= $7)",
                )
                .bind(&claim.id)
                .bind(&claim.user_id)
                .bind(claim.at)
                .bind(id)
                .bind(token_id)
                .bind(expected_claim.unwrap_or_default())
                .bind(stale_before)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(claimed > 0)
            }

            async fn accept(
                &self,
                id: &str,
                claim_id: &str,
                at: DateTime<Utc>,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let accepted = sqlx::query(
                    "UPDATE invitations SET accepted_at = $1, accepted_by = claimed_by, \
                     updated_at = $1 WHERE id = $2 AND claim_id = $3 AND accepted_at IS NULL",
                )
                .bind(at)
                .bind(id)
                .bind(claim_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if accepted == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }

            async fn release(&self, id: &str, claim_id: &str) -> Result<bool, StoreError> {
                let released = sqlx::query(
                    "UPDATE invitations SET claim_id = NULL, claimed_by = NULL, claimed_at = NULL \
                     WHERE id = $1 AND claim_id = $2 AND accepted_at IS NULL",
                )
                .bind(id)
                .bind(claim_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(released > 0)
            }
        }
    };
}

invitation_store!(
    PostgresInvitationStore,
    sqlx::Postgres,
    sqlx::PgPool,
    commit = roster_core::events::outbox::commit_pg
);

invitation_store!(
    SqliteInvitationStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    commit = roster_core::events::outbox::commit_sqlite
);
