//! The SQL behind [`UserStore`](super::UserStore), written once and
//! expanded for PostgreSQL and SQLite by a macro. The backends differ only
//! in the case-insensitive match operator, in how the last-admin guard
//! serialises concurrent writers, and in the outbox insert.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use roster_core::mail::OutgoingMail;
use roster_proto::v1::Event;
use sqlx::{QueryBuilder, Row};
use tokio::sync::Notify;

use crate::lockout::{
    ACCOUNT, Counters, FACTOR_ACCOUNT, FailurePolicy, FailureWindow, Failures, Forget, GuessState,
    Secret,
};

use super::{
    ExternalUserRecord, FailureEvents, Lifecycle, MetadataRecord, OrderValue, StoreError,
    UserCounts, UserQuery, UserRecord, UserStore, contains_pattern, decode_ints, encode_ints,
    unique_violation, value_digest,
};

const USER_COLUMNS: &str = "user_id, name, description, primary_email_address, email_normalized, \
    primary_email_address_validated_at, password_hash, password_updated_at, \
    require_password_update, state, state_description, admin, temporary_password_hash, \
    temporary_password_created_at, temporary_password_expires_at, email_validation_hash, \
    email_validation_expires_at, profile_picture, \
    email_notification_types, universal_rights, created_at, updated_at, deleted_at, \
    locked_at, lock_reason, deactivated_at, deactivation_reason, required_actions, \
    sessions_ended_at, user_type";

/// What makes an admin count for the last-admin guard: a live human (a
/// machine has no way back in once its keys are gone), approved (or
/// flagged), neither locked nor deactivated, and without `universal_rights`
/// restricting what it may do.
const EFFECTIVE_ADMIN: &str = "admin AND deleted_at IS NULL AND state IN (1, 3) \
    AND universal_rights IS NULL AND locked_at IS NULL AND deactivated_at IS NULL \
    AND user_type = 0";

/// Every count of `GetUserStatistics` in one pass over `users` (the same
/// SQL on both backends: SQLite has aggregate FILTER since 3.30), plus the
/// account-wide locks after wrong passwords of live users no administrator
/// locked (those count once, above), from the `password_failures` primary
/// key.
const USER_COUNTS: &str = "SELECT \
    count(*) FILTER (WHERE deleted_at IS NULL) AS total, \
    count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted, \
    count(*) FILTER (WHERE deleted_at IS NULL AND state = 0) AS state_0, \
    count(*) FILTER (WHERE deleted_at IS NULL AND state = 1) AS state_1, \
    count(*) FILTER (WHERE deleted_at IS NULL AND state = 2) AS state_2, \
    count(*) FILTER (WHERE deleted_at IS NULL AND state = 3) AS state_3, \
    count(*) FILTER (WHERE deleted_at IS NULL AND state = 4) AS state_4, \
    count(*) FILTER (WHERE deleted_at IS NULL AND admin) AS admins, \
    count(*) FILTER (WHERE deleted_at IS NULL AND locked_at IS NOT NULL) AS admin_locked, \
    count(*) FILTER (WHERE deleted_at IS NULL AND deactivated_at IS NOT NULL) AS deactivated, \
    count(*) FILTER (WHERE deleted_at IS NULL AND user_type = 0 \
        AND primary_email_address_validated_at IS NULL) AS email_unvalidated, \
    count(*) FILTER (WHERE deleted_at IS NULL AND user_type = 1) AS machines, \
    (SELECT count(DISTINCT p.user_id) FROM password_failures p \
        WHERE p.counter IN ('*', 'factor:*') AND p.locked_until > $1 \
        AND EXISTS (SELECT 1 FROM users u WHERE u.user_id = p.user_id \
            AND u.deleted_at IS NULL AND u.locked_at IS NULL)) AS failure_locked \
    FROM users";

/// The end of the account's lock after wrong passwords or codes, as the
/// column `failure_locked_until` of a query on `users`; binds `$2` to
/// [`ACCOUNT`] and `$3` to [`FACTOR_ACCOUNT`].
const FAILURE_LOCK: &str = "(SELECT MAX(p.locked_until) FROM password_failures AS p \
    WHERE p.user_id = users.user_id AND p.counter IN ($2, $3)) AS failure_locked_until";

/// How many live users, in storage order, a capped count of a search
/// looks at before counting on the trigram indexes: matches dense enough to
/// reach the cap there are counted by a scan that stops early.
const COUNT_WINDOW: i64 = 2_000;

/// How many live users, in the order asked for, a broad search (more
/// matches than the count cap) walks before taking its page from the
/// trigram indexes: dense matches fill a page long before, matches that all
/// sort late do not.
const PAGE_WINDOW: i64 = 1_000;

/// The orders with an index to walk (`users_pkey`, `users_name`,
/// `users_created_at`).
const WALKABLE_ORDERS: &[&str] = &["user_id", "name", "created_at"];

/// How long PostgreSQL may spend on the planner's own plan for a search
/// before the statement runs again on the trigram indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchBudgets {
    /// For the capped count.
    pub count_ms: u64,
    /// For the ordered walk that finds a page of a broad search.
    pub page_ms: u64,
}

impl Default for SearchBudgets {
    fn default() -> Self {
        Self {
            count_ms: 25,
            page_ms: 50,
        }
    }
}

/// Trigram patterns defeat the planner's estimates, and each of its two
/// plans for a substring search has a bad case: walking an ordered index (or
/// the table) reads every non-matching row before the matches when they all
/// sort late, while a bitmap of the trigram indexes reads every match when
/// nearly every row matches. So the planner's own plan runs first within a
/// short budget (it is the fast one whenever matches are dense), and when
/// the budget runs out the statement runs again with only the bitmap plan
/// allowed, whose cost is bounded by the matches. `$run` (an awaited
/// result) is evaluated once per attempt, with `$tx` bound to that
/// attempt's transaction.
macro_rules! budgeted {
    ($store:expr, $budget_ms:expr, |$tx:ident| $run:expr) => {{
        let pool = &$store.pool;
        let mut $tx = pool.begin().await?;
        let timeout = format!("SET LOCAL statement_timeout = {}", $budget_ms);
        sqlx::query(&timeout).execute(&mut *$tx).await?;
        match $run {
            Ok(value) => {
                $tx.commit().await?;
                value
            }
            Err(err) if is_query_canceled(&err) => {
                $tx.rollback().await?;
                $store
                    .plan_fallbacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                bitmap_only!(pool, |$tx| $run)
            }
            Err(err) => return Err(err.into()),
        }
    }};
}

/// Runs `$run` (an awaited result, with `$tx` bound to its transaction)
/// with only the bitmap (trigram index) plan allowed.
macro_rules! bitmap_only {
    ($pool:expr, |$tx:ident| $run:expr) => {{
        let mut $tx = $pool.begin().await?;
        for setting in [
            "SET LOCAL enable_seqscan = off",
            "SET LOCAL enable_indexscan = off",
        ] {
            sqlx::query(setting).execute(&mut *$tx).await?;
        }
        let value = $run?;
        $tx.commit().await?;
        value
    }};
}

/// Whether a statement was cancelled by its `statement_timeout`.
fn is_query_canceled(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"))
}

macro_rules! user_store {
    (
        $store:ident,
        $db:ty,
        $pool:ty,
        like = $like:literal,
        trigram = $trigram:literal,
        lock_admins = $lock_admins:expr,
        for_update = $for_update:literal,
        commit = $commit:path,
        commit_mailing = $commit_mailing:path,
        attributes_json = $attributes_json:literal
    ) => {
        /// The user store on this backend.
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
            relay: Arc<Notify>,
            mail_relay: Arc<Notify>,
            budgets: SearchBudgets,
            plan_fallbacks: Arc<std::sync::atomic::AtomicU64>,
        }

        impl $store {
            /// `relay` and `mail_relay` are woken after commits that wrote
            /// events and mails.
            pub fn new(pool: $pool, relay: Arc<Notify>, mail_relay: Arc<Notify>) -> Self {
                Self {
                    pool,
                    relay,
                    mail_relay,
                    budgets: SearchBudgets::default(),
                    plan_fallbacks: Arc::default(),
                }
            }

            /// The same store with other search budgets (PostgreSQL).
            pub fn with_search_budgets(mut self, budgets: SearchBudgets) -> Self {
                self.budgets = budgets;
                self
            }

            /// How many search statements ran out of their budget and ran
            /// again on the trigram indexes.
            pub fn plan_fallbacks(&self) -> u64 {
                self.plan_fallbacks.load(std::sync::atomic::Ordering::Relaxed)
            }

            fn user_from_row(row: &<$db as sqlx::Database>::Row) -> Result<UserRecord, StoreError> {
                let notification_types: String = row.try_get("email_notification_types")?;
                let universal: Option<String> = row.try_get("universal_rights")?;
                let required_actions: String = row.try_get("required_actions")?;
                Ok(UserRecord {
                    user_id: row.try_get("user_id")?,
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                    attributes: BTreeMap::new(),
                    primary_email_address: row.try_get("primary_email_address")?,
                    email_normalized: row.try_get("email_normalized")?,
                    primary_email_address_validated_at: row
                        .try_get("primary_email_address_validated_at")?,
                    password_hash: row.try_get("password_hash")?,
                    password_updated_at: row.try_get("password_updated_at")?,
                    require_password_update: row.try_get("require_password_update")?,
                    state: row.try_get("state")?,
                    state_description: row.try_get("state_description")?,
                    admin: row.try_get("admin")?,
                    temporary_password_hash: row.try_get("temporary_password_hash")?,
                    temporary_password_created_at: row.try_get("temporary_password_created_at")?,
                    temporary_password_expires_at: row.try_get("temporary_password_expires_at")?,
                    email_validation_hash: row.try_get("email_validation_hash")?,
                    email_validation_expires_at: row.try_get("email_validation_expires_at")?,
                    profile_picture: row.try_get("profile_picture")?,
                    email_notification_types: decode_ints(&notification_types)?,
                    universal_rights: universal.as_deref().map(decode_ints).transpose()?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    deleted_at: row.try_get("deleted_at")?,
                    lifecycle: Lifecycle {
                        locked_at: row.try_get("locked_at")?,
                        lock_reason: row.try_get("lock_reason")?,
                        deactivated_at: row.try_get("deactivated_at")?,
                        deactivation_reason: row.try_get("deactivation_reason")?,
                        required_actions: decode_ints(&required_actions)?,
                        sessions_ended_at: row.try_get("sessions_ended_at")?,
                    },
                    user_type: row.try_get("user_type")?,
                })
            }

            fn external_from_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<ExternalUserRecord, StoreError> {
                Ok(ExternalUserRecord {
                    provider_id: row.try_get("provider_id")?,
                    external_id: row.try_get("external_id")?,
                    user_id: row.try_get("user_id")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            /// The WHERE clause of a list or search.
            fn filters(qb: &mut QueryBuilder<'_, $db>, query: &UserQuery) {
                qb.push(if query.deleted {
                    " WHERE deleted_at IS NOT NULL"
                } else {
                    " WHERE deleted_at IS NULL"
                });
                if let Some(text) = &query.id_or_name {
                    let pattern = contains_pattern(text);
                    // User IDs are lowercase ASCII, so a case-sensitive
                    // LIKE of the lowercased pattern finds what ILIKE
                    // would, with a cheaper recheck of each candidate.
                    qb.push(" AND (user_id LIKE ");
                    qb.push_bind(pattern.to_ascii_lowercase());
                    qb.push(concat!(" ESCAPE '\\' OR lower(name) ", $like, " "));
                    // ASCII only, like SQLite's lower(): lowering
                    // `É` here but not in the column would make an
                    // exact spelling miss. ILIKE folds the rest.
                    qb.push_bind(pattern.to_ascii_lowercase());
                    qb.push(" ESCAPE '\\')");
                }
                for (column, like, value) in [
                    ("user_id", "LIKE", &query.id_contains),
                    ("lower(name)", $like, &query.name_contains),
                    ("description", $like, &query.description_contains),
                ] {
                    if let Some(value) = value {
                        qb.push(format!(" AND {column} {like} "));
                        let mut pattern = contains_pattern(value);
                        if like == "LIKE" || column.starts_with("lower") {
                            pattern = pattern.to_ascii_lowercase();
                        }
                        qb.push_bind(pattern);
                        qb.push(" ESCAPE '\\'");
                    }
                }
                for (key, value) in &query.attributes {
                    qb.push(
                        " AND EXISTS (SELECT 1 FROM user_attributes a \
                         WHERE a.user_id = users.user_id AND a.key = ",
                    );
                    qb.push_bind(key.clone());
                    qb.push(concat!(" AND a.value ", $like, " "));
                    qb.push_bind(contains_pattern(value));
                    qb.push(" ESCAPE '\\')");
                }
                // Exact matches, each an indexed probe of `user_metadata`.
                for filter in &query.metadata {
                    qb.push(
                        " AND EXISTS (SELECT 1 FROM user_metadata m \
                         WHERE m.user_id = users.user_id AND m.key = ",
                    );
                    qb.push_bind(filter.key.clone());
                    if let Some(value) = &filter.value {
                        qb.push(" AND m.value_digest = ");
                        qb.push_bind(value_digest(value));
                        qb.push(" AND m.value = ");
                        qb.push_bind(value.clone());
                    }
                    qb.push(")");
                }
                if !query.states.is_empty() {
                    qb.push(" AND state IN (");
                    let mut sep = qb.separated(", ");
                    for s in &query.states {
                        sep.push_bind(*s);
                    }
                    qb.push(")");
                }
                if !query.types.is_empty() {
                    qb.push(" AND user_type IN (");
                    let mut sep = qb.separated(", ");
                    for t in &query.types {
                        sep.push_bind(*t);
                    }
                    qb.push(")");
                }
            }


            /// Counts the matches of `query`, up to `cap` when given.
            fn count_query(query: &UserQuery, cap: Option<i64>) -> QueryBuilder<'_, $db> {
                let mut count: QueryBuilder<$db> = QueryBuilder::new(match cap {
                    Some(_) => "SELECT COUNT(*) FROM (SELECT 1 FROM users",
                    None => "SELECT COUNT(*) FROM users",
                });
                Self::filters(&mut count, query);
                if let Some(cap) = cap {
                    count.push(" LIMIT ");
                    count.push_bind(cap);
                    count.push(") AS matches");
                }
                count
            }

            /// The order of `query` as SQL: the column and the direction.
            fn order_of(query: &UserQuery) -> (&'static str, &'static str) {
                let order = super::ORDER_FIELDS
                    .iter()
                    .find(|f| **f == query.order)
                    .copied()
                    .unwrap_or("user_id");
                (order, if query.descending { "DESC" } else { "ASC" })
            }

            /// ` ORDER BY …`, the user ID breaking ties.
            fn push_order(qb: &mut QueryBuilder<'_, $db>, query: &UserQuery) {
                let (order, direction) = Self::order_of(query);
                qb.push(format!(" ORDER BY {order} {direction}"));
                if order != "user_id" {
                    qb.push(format!(", user_id {direction}"));
                }
            }

            /// ` AND` the rows after the keyset of `query`, if any, in its
            /// order (a row comparison, so an index on the order column
            /// can start there).
            fn push_keyset(qb: &mut QueryBuilder<'_, $db>, query: &UserQuery) {
                let Some(after) = &query.after else { return };
                let (order, _) = Self::order_of(query);
                let op = if query.descending { "<" } else { ">" };
                if order == "user_id" {
                    qb.push(format!(" AND user_id {op} "));
                    qb.push_bind(after.user_id.clone());
                    return;
                }
                qb.push(format!(" AND ({order}, user_id) {op} ("));
                match &after.value {
                    OrderValue::None => qb.push("NULL"),
                    OrderValue::Text(v) => qb.push_bind(v.clone()),
                    OrderValue::Int(v) => qb.push_bind(*v),
                    OrderValue::Bool(v) => qb.push_bind(*v),
                    OrderValue::Time(v) => qb.push_bind(*v),
                };
                qb.push(", ");
                qb.push_bind(after.user_id.clone());
                qb.push(")");
            }

            /// One page of the matches of `query`, each row with its
            /// attributes as one JSON object (evaluated for the page's rows
            /// only, after the sort). With `window`, only the first
            /// `window` live (or deleted) users in the order are looked at:
            /// a walk of the order's index that stops there.
            fn page_query(query: &UserQuery, window: Option<i64>) -> QueryBuilder<'_, $db> {
                let mut select: QueryBuilder<$db> = QueryBuilder::new(format!(
                    "SELECT {USER_COLUMNS}, {} AS attributes_json FROM ",
                    $attributes_json
                ));
                match window {
                    Some(rows) => {
                        select.push(if query.deleted {
                            "(SELECT * FROM users WHERE deleted_at IS NOT NULL"
                        } else {
                            "(SELECT * FROM users WHERE deleted_at IS NULL"
                        });
                        Self::push_keyset(&mut select, query);
                        Self::push_order(&mut select, query);
                        select.push(" LIMIT ");
                        select.push_bind(rows);
                        select.push(") AS users");
                        Self::filters(&mut select, query);
                    }
                    None => {
                        select.push("users");
                        Self::filters(&mut select, query);
                        Self::push_keyset(&mut select, query);
                    }
                }
                Self::push_order(&mut select, query);
                select.push(" LIMIT ");
                select.push_bind(query.limit);
                select.push(" OFFSET ");
                select.push_bind(query.offset);
                select
            }

            /// A user and its attributes from a row of [`Self::page_query`]
            /// or `get_user`.
            fn user_with_attributes(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<UserRecord, StoreError> {
                let mut user = Self::user_from_row(row)?;
                // No attributes: NULL on PostgreSQL, `{}` on SQLite.
                let attributes: Option<String> = row.try_get("attributes_json")?;
                if let Some(json) = attributes {
                    user.attributes = serde_json::from_str(&json).map_err(|e| {
                        StoreError::Corrupt(format!("attributes of {}: {e}", user.user_id))
                    })?;
                }
                Ok(user)
            }

            /// Counts, up to `cap`, the matches of `query` among the first
            /// [`COUNT_WINDOW`] live users in storage order (a scan that
            /// stops there).
            async fn fetch_window_count(
                pool: &$pool,
                query: &UserQuery,
                cap: i64,
            ) -> Result<i64, sqlx::Error> {
                let mut count: QueryBuilder<$db> = QueryBuilder::new(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM (SELECT user_id, name, description, \
                     state, user_type, deleted_at FROM users WHERE deleted_at IS NULL LIMIT ",
                );
                count.push_bind(COUNT_WINDOW);
                count.push(") AS users");
                Self::filters(&mut count, query);
                count.push(" LIMIT ");
                count.push_bind(cap);
                count.push(") AS matches");
                count.build_query_scalar().persistent(false).fetch_one(pool).await
            }

            /// Runs the count of [`Self::count_query`]. Not a prepared
            /// statement: a cached generic plan cannot see how selective a
            /// pattern is.
            async fn fetch_count<'c, E>(
                executor: E,
                query: &UserQuery,
                cap: Option<i64>,
            ) -> Result<i64, sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                let mut qb = Self::count_query(query, cap);
                qb.build_query_scalar().persistent(false).fetch_one(executor).await
            }

            /// Runs [`Self::page_query`], not prepared either.
            async fn fetch_page<'c, E>(
                executor: E,
                query: &UserQuery,
                window: Option<i64>,
            ) -> Result<Vec<<$db as sqlx::Database>::Row>, sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                let mut qb = Self::page_query(query, window);
                qb.build().persistent(false).fetch_all(executor).await
            }

            async fn write_attributes(
                tx: &mut sqlx::Transaction<'_, $db>,
                user: &UserRecord,
            ) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM user_attributes WHERE user_id = $1")
                    .bind(&user.user_id)
                    .execute(&mut **tx)
                    .await?;
                for (key, value) in &user.attributes {
                    sqlx::query(
                        "INSERT INTO user_attributes (user_id, key, value) VALUES ($1, $2, $3)",
                    )
                    .bind(&user.user_id)
                    .bind(key)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }


            /// Holds the live user `user_id` for the rest of `tx`, so
            /// concurrent metadata changes of the user count one after the
            /// other; Conflict when there is no such user. A write, not a
            /// read: it locks the row on PostgreSQL, and on SQLite it takes
            /// the write lock first, where a transaction that read first
            /// could not upgrade once another connection wrote.
            async fn hold_live_user(
                tx: &mut sqlx::Transaction<'_, $db>,
                user_id: &str,
            ) -> Result<(), StoreError> {
                let held = sqlx::query(
                    "UPDATE users SET updated_at = updated_at \
                     WHERE user_id = $1 AND deleted_at IS NULL",
                )
                .bind(user_id)
                .execute(&mut **tx)
                .await?;
                if held.rows_affected() == 0 {
                    return Err(StoreError::Conflict);
                }
                Ok(())
            }

            /// Fails with LastAdmin when no live approved admin remains.
            async fn check_admins_remain(
                tx: &mut sqlx::Transaction<'_, $db>,
            ) -> Result<(), StoreError> {
                let remaining: i64 =
                    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users WHERE {EFFECTIVE_ADMIN}"))
                    .fetch_one(&mut **tx)
                    .await?;
                if remaining == 0 {
                    return Err(StoreError::LastAdmin);
                }
                Ok(())
            }

        }

        #[async_trait::async_trait]
        impl UserStore for $store {
            async fn insert_user_mailing(
                &self,
                user: &UserRecord,
                events: &[Event],
                mails: &[OutgoingMail],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                let result = sqlx::query(&format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
                     $24, $25, $26, $27, $28, $29, $30)"
                ))
                .bind(&user.user_id)
                .bind(&user.name)
                .bind(&user.description)
                .bind(&user.primary_email_address)
                .bind(&user.email_normalized)
                .bind(user.primary_email_address_validated_at)
                .bind(&user.password_hash)
                .bind(user.password_updated_at)
                .bind(user.require_password_update)
                .bind(user.state)
                .bind(&user.state_description)
                .bind(user.admin)
                .bind(&user.temporary_password_hash)
                .bind(user.temporary_password_created_at)
                .bind(user.temporary_password_expires_at)
                .bind(&user.email_validation_hash)
                .bind(user.email_validation_expires_at)
                .bind(&user.profile_picture)
                .bind(encode_ints(&user.email_notification_types))
                .bind(user.universal_rights.as_deref().map(encode_ints))
                .bind(user.created_at)
                .bind(user.updated_at)
                .bind(user.deleted_at)
                .bind(user.lifecycle.locked_at)
                .bind(&user.lifecycle.lock_reason)
                .bind(user.lifecycle.deactivated_at)
                .bind(&user.lifecycle.deactivation_reason)
                .bind(encode_ints(&user.lifecycle.required_actions))
                .bind(user.lifecycle.sessions_ended_at)
                .bind(user.user_type)
                .execute(&mut *tx)
                .await;
                if let Err(err) = result {
                    return Err(match unique_violation(&err) {
                        Some(key) => StoreError::AlreadyExists(key),
                        None => err.into(),
                    });
                }
                Self::write_attributes(&mut tx, user).await?;
                $commit_mailing(tx, events, mails, &self.relay, &self.mail_relay).await?;
            Ok(())
            }

            /// One statement, one round trip: the user's row with its
            /// attributes beside it as one JSON object (the row once,
            /// whatever the number of attributes).
            async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {USER_COLUMNS}, {} AS attributes_json FROM users WHERE user_id = $1",
                    $attributes_json
                ))
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::user_with_attributes).transpose()
            }

            /// `get_user`'s statement with the account's lock after wrong
            /// passwords beside it (the `password_failures` primary key).
            async fn get_user_and_lock(
                &self,
                user_id: &str,
                now: DateTime<Utc>,
            ) -> Result<Option<(UserRecord, Option<DateTime<Utc>>)>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {USER_COLUMNS}, {} AS attributes_json, {FAILURE_LOCK} \
                     FROM users WHERE user_id = $1",
                    $attributes_json
                ))
                .bind(user_id)
                .bind(ACCOUNT)
                .bind(FACTOR_ACCOUNT)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let user = Self::user_with_attributes(&row)?;
                let lock: Option<DateTime<Utc>> = row.try_get("failure_locked_until")?;
                Ok(Some((user, lock.filter(|until| *until > now))))
            }

            async fn user_version_and_lock(
                &self,
                user_id: &str,
                now: DateTime<Utc>,
            ) -> Result<Option<(DateTime<Utc>, Option<DateTime<Utc>>)>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT updated_at, {FAILURE_LOCK} FROM users WHERE user_id = $1"
                ))
                .bind(user_id)
                .bind(ACCOUNT)
                .bind(FACTOR_ACCOUNT)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let updated_at: DateTime<Utc> = row.try_get("updated_at")?;
                let lock: Option<DateTime<Utc>> = row.try_get("failure_locked_until")?;
                Ok(Some((updated_at, lock.filter(|until| *until > now))))
            }

            async fn find_live_by_email(
                &self,
                normalized: &str,
            ) -> Result<Option<UserRecord>, StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {USER_COLUMNS}, {} AS attributes_json FROM users \
                     WHERE email_normalized = $1 AND email_normalized <> '' \
                     AND deleted_at IS NULL",
                    $attributes_json
                ))
                .bind(normalized)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::user_with_attributes).transpose()
            }

            async fn update_user_mailing(
                &self,
                user: &UserRecord,
                previous_updated_at: DateTime<Utc>,
                guard_last_admin: bool,
                events: &[Event],
                mails: &[OutgoingMail],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if guard_last_admin {
                    if let Some(lock) = $lock_admins {
                        sqlx::query(lock).execute(&mut *tx).await?;
                    }
                }
                let result = sqlx::query(
                    "UPDATE users SET name = $2, description = $3, primary_email_address = $4, \
                     email_normalized = $5, primary_email_address_validated_at = $6, \
                     password_hash = $7, password_updated_at = $8, require_password_update = $9, \
                     state = $10, state_description = $11, admin = $12, \
                     temporary_password_hash = $13, temporary_password_created_at = $14, \
                     temporary_password_expires_at = $15, email_validation_hash = $16, \
                     email_validation_expires_at = $17, profile_picture = $18, \
                     email_notification_types = $19, universal_rights = $20, updated_at = $21, \
                     deleted_at = $22, locked_at = $24, lock_reason = $25, \
                     deactivated_at = $26, deactivation_reason = $27, required_actions = $28, \
                     sessions_ended_at = $29 \
                     WHERE user_id = $1 AND updated_at = $23",
                )
                .bind(&user.user_id)
                .bind(&user.name)
                .bind(&user.description)
                .bind(&user.primary_email_address)
                .bind(&user.email_normalized)
                .bind(user.primary_email_address_validated_at)
                .bind(&user.password_hash)
                .bind(user.password_updated_at)
                .bind(user.require_password_update)
                .bind(user.state)
                .bind(&user.state_description)
                .bind(user.admin)
                .bind(&user.temporary_password_hash)
                .bind(user.temporary_password_created_at)
                .bind(user.temporary_password_expires_at)
                .bind(&user.email_validation_hash)
                .bind(user.email_validation_expires_at)
                .bind(&user.profile_picture)
                .bind(encode_ints(&user.email_notification_types))
                .bind(user.universal_rights.as_deref().map(encode_ints))
                .bind(user.updated_at)
                .bind(user.deleted_at)
                .bind(previous_updated_at)
                .bind(user.lifecycle.locked_at)
                .bind(&user.lifecycle.lock_reason)
                .bind(user.lifecycle.deactivated_at)
                .bind(&user.lifecycle.deactivation_reason)
                .bind(encode_ints(&user.lifecycle.required_actions))
                .bind(user.lifecycle.sessions_ended_at)
                .execute(&mut *tx)
                .await;
                let done = match result {
                    Ok(done) => done,
                    Err(err) => {
                        return Err(match unique_violation(&err) {
                            Some(key) => StoreError::AlreadyExists(key),
                            None => err.into(),
                        });
                    }
                };
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict);
                }
                Self::write_attributes(&mut tx, user).await?;
                if guard_last_admin {
                    Self::check_admins_remain(&mut tx).await?;
                }
                $commit_mailing(tx, events, mails, &self.relay, &self.mail_relay).await?;
            Ok(())
            }

            async fn purge_user(
                &self,
                user_id: &str,
                guard_last_admin: bool,
                events: &[Event],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if guard_last_admin {
                    if let Some(lock) = $lock_admins {
                        sqlx::query(lock).execute(&mut *tx).await?;
                    }
                }
                for table in [
                    "user_attributes",
                    "user_metadata",
                    "external_users",
                    "password_failures",
                    "second_factors",
                    "recovery_codes",
                ] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                // Read inside the transaction, after the admin rows are
                // locked (PostgreSQL) or the write lock is held (SQLite, by
                // the deletes above): whether the user counts as an admin
                // now, not when the caller looked.
                let was_admin: Option<bool> = sqlx::query_scalar(
                    &format!("SELECT {EFFECTIVE_ADMIN} FROM users WHERE user_id = $1"),
                )
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(was_admin) = was_admin else {
                    return Err(StoreError::Conflict);
                };
                sqlx::query("DELETE FROM users WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                if guard_last_admin && was_admin {
                    Self::check_admins_remain(&mut tx).await?;
                }
                $commit(tx, events, &self.relay).await?;
            Ok(())
            }

            async fn search_users(
                &self,
                query: &UserQuery,
            ) -> Result<(Vec<UserRecord>, u64), StoreError> {
                // Text filters can match most of a big table; counting every
                // match would cost as much as reading them all, so such
                // counts stop at the cap. Statements are not cached: a
                // cached generic plan cannot see how selective a pattern is.
                let capped = query.count_cap.filter(|_| query.has_text_filters());
                // Live users in an order with an index: the walks below can
                // stop after a fixed number of rows.
                let windowed = $trigram && capped.is_some() && !query.deleted;
                let total: i64 = match capped {
                    _ if !query.count => -1,
                    Some(cap) if windowed => {
                        // Dense matches reach the cap within the first rows
                        // of the table; otherwise the trigram indexes count
                        // them, reading at most `cap` rows.
                        let seen = Self::fetch_window_count(&self.pool, query, cap).await?;
                        if seen >= cap {
                            seen
                        } else {
                            bitmap_only!(self.pool, |tx| Self::fetch_count(&mut *tx, query, capped).await)
                        }
                    }
                    Some(_) if $trigram => budgeted!(
                        self,
                        self.budgets.count_ms,
                        |tx| Self::fetch_count(&mut *tx, query, capped).await
                    ),
                    _ => Self::fetch_count(&self.pool, query, capped).await?,
                };

                // With fewer matches than the cap, the trigram indexes find
                // them all and the page is sorted from them. With more,
                // walking the order's index usually finds a page within its
                // first rows; matches that all sort late are taken from the
                // trigram indexes instead.
                let few = capped.is_some_and(|cap| (0..cap).contains(&total));
                let walkable = WALKABLE_ORDERS.contains(&query.order);
                let rows = if $trigram && few {
                    // Known to be few: the trigram indexes find them all at
                    // once, whatever the planner guesses.
                    bitmap_only!(self.pool, |tx| Self::fetch_page(&mut *tx, query, None).await)
                } else if windowed && walkable {
                    let rows =
                        Self::fetch_page(&self.pool, query, Some(PAGE_WINDOW)).await?;
                    if rows.len() as i64 >= query.limit {
                        rows
                    } else {
                        self.plan_fallbacks
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        bitmap_only!(self.pool, |tx| Self::fetch_page(&mut *tx, query, None).await)
                    }
                } else if $trigram && capped.is_some() {
                    budgeted!(
                        self,
                        self.budgets.page_ms,
                        |tx| Self::fetch_page(&mut *tx, query, None).await
                    )
                } else {
                    Self::fetch_page(&self.pool, query, None).await?
                };
                let users = rows
                    .iter()
                    .map(Self::user_with_attributes)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((users, total.max(0) as u64))
            }

            async fn count_effective_admins(&self) -> Result<u64, StoreError> {
                let n: i64 =
                    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users WHERE {EFFECTIVE_ADMIN}"))
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n.max(0) as u64)
            }

            async fn user_counts(&self, now: DateTime<Utc>) -> Result<UserCounts, StoreError> {
                let row = sqlx::query(USER_COUNTS)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                let n = |column: &str| -> Result<u64, StoreError> {
                    let v: i64 = row.try_get(column)?;
                    Ok(v.max(0) as u64)
                };
                Ok(UserCounts {
                    total: n("total")?,
                    by_state: [
                        n("state_0")?,
                        n("state_1")?,
                        n("state_2")?,
                        n("state_3")?,
                        n("state_4")?,
                    ],
                    admins: n("admins")?,
                    deleted: n("deleted")?,
                    locked: n("admin_locked")? + n("failure_locked")?,
                    deactivated: n("deactivated")?,
                    email_unvalidated: n("email_unvalidated")?,
                    machines: n("machines")?,
                })
            }

            async fn append_mailing(
                &self,
                events: &[Event],
                mails: &[OutgoingMail],
            ) -> Result<(), StoreError> {
                let tx = self.pool.begin().await?;
                $commit_mailing(tx, events, mails, &self.relay, &self.mail_relay).await?;
                Ok(())
            }

            async fn guess_state(
                &self,
                user_id: &str,
                counters: &Counters,
                now: DateTime<Utc>,
            ) -> Result<GuessState, StoreError> {
                let locks: Vec<Option<DateTime<Utc>>> = sqlx::query_scalar(
                    "SELECT locked_until FROM password_failures \
                     WHERE user_id = $1 AND counter IN ($2, $3)",
                )
                .bind(user_id)
                .bind(counters.account)
                .bind(&counters.client)
                .fetch_all(&self.pool)
                .await?;
                Ok(GuessState {
                    counted: !locks.is_empty(),
                    locked_until: locks.into_iter().flatten().filter(|u| *u > now).max(),
                })
            }

            async fn record_password_failure(
                &self,
                user_id: &str,
                counters: &Counters,
                policy: &FailurePolicy,
                events: FailureEvents<'_>,
            ) -> Result<Failures, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut windows = Vec::with_capacity(2);
                // The account's counter first, then the client's, in one
                // order for every writer; each row made if missing, then
                // held, so concurrent failures count one after the other
                // (SQLite's write lock already serialises them).
                for (counter, max) in [
                    (counters.account, policy.max_failures),
                    (counters.client.as_str(), policy.max_failures_per_client),
                ] {
                    sqlx::query(
                        "INSERT INTO password_failures (user_id, counter, updated_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (user_id, counter) DO NOTHING",
                    )
                    .bind(user_id)
                    .bind(counter)
                    .bind(policy.now)
                    .execute(&mut *tx)
                    .await?;
                    let row = sqlx::query(concat!(
                        "SELECT recent_failures, locked_until FROM password_failures \
                         WHERE user_id = $1 AND counter = $2",
                        $for_update
                    ))
                    .bind(user_id)
                    .bind(counter)
                    .fetch_one(&mut *tx)
                    .await?;
                    let mut window = FailureWindow::parse(
                        row.try_get::<String, _>("recent_failures")?.as_str(),
                        row.try_get("locked_until")?,
                    );
                    let newly_locked = window.count(policy, max);
                    sqlx::query(
                        "UPDATE password_failures \
                         SET recent_failures = $1, locked_until = $2, updated_at = $3 \
                         WHERE user_id = $4 AND counter = $5",
                    )
                    .bind(window.encode())
                    .bind(window.locked_until)
                    .bind(policy.now)
                    .bind(user_id)
                    .bind(counter)
                    .execute(&mut *tx)
                    .await?;
                    windows.push((window, newly_locked));
                }
                // Counters of other clients whose window and lock have both
                // passed count for nothing: they go, so an account guessed
                // at from many addresses keeps a bounded number of rows.
                sqlx::query(
                    "DELETE FROM password_failures WHERE user_id = $1 \
                     AND counter NOT IN ($2, $3) \
                     AND updated_at < $4 AND (locked_until IS NULL OR locked_until < $5)",
                )
                .bind(user_id)
                .bind(ACCOUNT)
                .bind(FACTOR_ACCOUNT)
                .bind(policy.window_start)
                .bind(policy.now)
                .execute(&mut *tx)
                .await?;
                let (client_window, client_newly_locked) = windows.pop().unwrap_or_default();
                let (account_window, newly_locked) = windows.pop().unwrap_or_default();
                let outcome = Failures {
                    failures: account_window.failures(),
                    client_failures: client_window.failures(),
                    locked_until: [account_window.locked_until, client_window.locked_until]
                        .into_iter()
                        .flatten()
                        .filter(|u| *u > policy.now)
                        .max(),
                    newly_locked,
                    client_newly_locked,
                };
                let events = events(&outcome);
                $commit(tx, &events, &self.relay).await?;
                Ok(outcome)
            }

            async fn clear_password_failures(
                &self,
                user_id: &str,
                forget: Forget<'_>,
            ) -> Result<(), StoreError> {
                let query = match forget {
                    Forget::Guess(counters) => sqlx::query(
                        "DELETE FROM password_failures \
                         WHERE user_id = $1 AND counter IN ($2, $3)",
                    )
                    .bind(user_id)
                    .bind(counters.account)
                    .bind(&counters.client),
                    Forget::Secret(Secret::SecondFactor) => sqlx::query(
                        "DELETE FROM password_failures WHERE user_id = $1 AND counter LIKE $2",
                    )
                    .bind(user_id)
                    .bind(Secret::factor_pattern()),
                    Forget::Secret(Secret::Password) => sqlx::query(
                        "DELETE FROM password_failures \
                         WHERE user_id = $1 AND counter NOT LIKE $2",
                    )
                    .bind(user_id)
                    .bind(Secret::factor_pattern()),
                    Forget::All => {
                        sqlx::query("DELETE FROM password_failures WHERE user_id = $1")
                            .bind(user_id)
                    }
                };
                query.execute(&self.pool).await?;
                Ok(())
            }

            async fn set_metadata(
                &self,
                user_id: &str,
                entries: &[(String, Vec<u8>)],
                at: DateTime<Utc>,
                max_entries: u64,
                events: &[Event],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                Self::hold_live_user(&mut tx, user_id).await?;
                for (key, value) in entries {
                    sqlx::query(
                        "INSERT INTO user_metadata \
                         (user_id, key, value, value_digest, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, key) DO UPDATE \
                         SET value = excluded.value, value_digest = excluded.value_digest, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(user_id)
                    .bind(key)
                    .bind(value)
                    .bind(value_digest(value))
                    .bind(at)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                let count: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM user_metadata WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let count = count.max(0) as u64;
                if count > max_entries {
                    // Dropping the transaction rolls every upsert back.
                    return Err(StoreError::MetadataFull {
                        limit: max_entries,
                        count,
                    });
                }
                $commit(tx, events, &self.relay).await?;
                Ok(())
            }

            async fn list_metadata(
                &self,
                user_id: &str,
                key_prefix: &str,
                limit: i64,
                offset: i64,
            ) -> Result<(Vec<MetadataRecord>, u64), StoreError> {
                // A prefix compared as a prefix, not a LIKE pattern: `%` and
                // `_` in keys mean themselves.
                let prefix_chars = key_prefix.chars().count() as i32;
                let matching = "FROM user_metadata WHERE user_id = $1 \
                    AND ($2 = 0 OR substr(key, 1, $3) = $4)";
                let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {matching}"))
                    .bind(user_id)
                    .bind(prefix_chars)
                    .bind(prefix_chars)
                    .bind(key_prefix)
                    .fetch_one(&self.pool)
                    .await?;
                let rows = sqlx::query(&format!(
                    "SELECT key, value, created_at, updated_at {matching} \
                     ORDER BY key LIMIT $5 OFFSET $6"
                ))
                .bind(user_id)
                .bind(prefix_chars)
                .bind(prefix_chars)
                .bind(key_prefix)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
                let entries = rows
                    .iter()
                    .map(|row| {
                        Ok(MetadataRecord {
                            key: row.try_get("key")?,
                            value: row.try_get("value")?,
                            created_at: row.try_get("created_at")?,
                            updated_at: row.try_get("updated_at")?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok((entries, total.max(0) as u64))
            }

            async fn delete_metadata(
                &self,
                user_id: &str,
                keys: &[String],
                events: &[Event],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                Self::hold_live_user(&mut tx, user_id).await?;
                let mut sorted: Vec<&String> = keys.iter().collect();
                sorted.sort();
                for key in sorted {
                    let done = sqlx::query(
                        "DELETE FROM user_metadata WHERE user_id = $1 AND key = $2",
                    )
                    .bind(user_id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        // Dropping the transaction restores the keys
                        // deleted before this one.
                        return Err(StoreError::MetadataMissing(key.clone()));
                    }
                }
                $commit(tx, events, &self.relay).await?;
                Ok(())
            }

            async fn insert_external_user(
                &self,
                link: &ExternalUserRecord,
                events: &[Event],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                let result = sqlx::query(
                    "INSERT INTO external_users (provider_id, external_id, user_id, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&link.provider_id)
                .bind(&link.external_id)
                .bind(&link.user_id)
                .bind(link.created_at)
                .bind(link.updated_at)
                .execute(&mut *tx)
                .await;
                if let Err(err) = result {
                    return Err(match unique_violation(&err) {
                        // (provider_id, user_id) is unique too: one link per
                        // user and provider.
                        Some(_) if err.to_string().contains("user_id") => {
                            StoreError::AlreadyExists("link of this user to this provider")
                        }
                        Some(_) => StoreError::AlreadyExists("external_id"),
                        None => err.into(),
                    });
                }
                $commit(tx, events, &self.relay).await?;
            Ok(())
            }

            async fn get_external_user_by_user_id(
                &self,
                provider_id: &str,
                user_id: &str,
            ) -> Result<Option<ExternalUserRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT provider_id, external_id, user_id, created_at, updated_at \
                     FROM external_users WHERE provider_id = $1 AND user_id = $2",
                )
                .bind(provider_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::external_from_row).transpose()
            }

            async fn get_external_user_by_external_id(
                &self,
                provider_id: &str,
                external_id: &str,
            ) -> Result<Option<ExternalUserRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT provider_id, external_id, user_id, created_at, updated_at \
                     FROM external_users WHERE provider_id = $1 AND external_id = $2",
                )
                .bind(provider_id)
                .bind(external_id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::external_from_row).transpose()
            }

            async fn delete_external_user(
                &self,
                provider_id: &str,
                external_id: &str,
                events: &[Event],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "DELETE FROM external_users WHERE provider_id = $1 AND external_id = $2",
                )
                .bind(provider_id)
                .bind(external_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                $commit(tx, events, &self.relay).await?;
                Ok(true)
            }
        }
    };
}

// PostgreSQL: ILIKE uses the trigram indexes; the admin rows are locked
// before a guarded change so two concurrent demotions cannot both pass.
user_store!(
    PostgresUserStore,
    sqlx::Postgres,
    sqlx::PgPool,
    like = "ILIKE",
    trigram = true,
    lock_admins = Some("SELECT user_id FROM users WHERE admin AND deleted_at IS NULL FOR UPDATE"),
    for_update = " FOR UPDATE",
    commit = roster_core::events::outbox::commit_pg,
    commit_mailing = roster_core::mail::commit_pg,
    attributes_json = "(SELECT CAST(json_object_agg(a.key, a.value) AS TEXT) \
        FROM user_attributes AS a WHERE a.user_id = users.user_id)"
);

// SQLite: one writer at a time, so the guard's write-then-count needs no
// lock; LIKE is case-insensitive for ASCII.
user_store!(
    SqliteUserStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    like = "LIKE",
    trigram = false,
    lock_admins = None::<&str>,
    for_update = "",
    commit = roster_core::events::outbox::commit_sqlite,
    commit_mailing = roster_core::mail::commit_sqlite,
    attributes_json = "(SELECT json_group_object(a.key, a.value) \
        FROM user_attributes AS a WHERE a.user_id = users.user_id)"
);
