//! The transactional outbox. A service writes its state change and the
//! encoded event in one transaction ([`insert_pg`], [`insert_sqlite`]); the
//! [`OutboxRelay`] publishes committed rows in id order and deletes each
//! once the bus has acknowledged it. A crash between publish and delete
//! publishes the event again, which JetStream drops by its `Nats-Msg-Id`.
//!
//! On PostgreSQL several replicas may run a relay over the same table: each
//! pass locks its rows with `FOR UPDATE SKIP LOCKED`, so no row is published
//! by two relays at once. Rows locked by different replicas may then go out
//! in parallel, so order holds per relay pass, not across replicas.
//!
//! The relay does not care what a row holds: an [`OutboxSink`] delivers it.
//! Events go to the bus ([`OutboxRelay::new`]); mails that a service owes go
//! to the mailer from a second table of the same shape
//! ([`crate::mail`]), so a mailer outage never holds events back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message;
use roster_proto::v1::Event;
use sqlx::{PgConnection, Row, SqliteConnection};
use tokio::sync::Notify;

use super::EventsConfig;
use super::bus::EventBus;
use crate::db::Db;

/// Serialises `install_schema` across services sharing one PostgreSQL
/// database: concurrent `CREATE TABLE IF NOT EXISTS` can fail on the
/// catalog's unique index. The value is arbitrary but fixed.
const SCHEMA_LOCK: i64 = 0x726f_7374_6572_6f62; // "rosterob"

/// The table of events waiting for the bus.
pub const EVENTS_TABLE: &str = "roster_outbox";

const POSTGRES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS {table} (
    id BIGSERIAL PRIMARY KEY,
    unique_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    last_error TEXT
)";

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    unique_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT
)";

/// Every outbox table: one per kind of sink.
const TABLES: [&str; 2] = [EVENTS_TABLE, crate::mail::OUTBOX_TABLE];

/// The first retry waits this long; each further one twice as long.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Retries never wait longer, so events flow soon after NATS comes back.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Passes the relay makes on shutdown at most, so a busy outbox cannot hold
/// a stopping process forever; what is left goes out at the next start.
const SHUTDOWN_PASSES: usize = 10;

/// Creates the outbox tables (events and mails) if they are missing. Called by
/// [`Migrations::run`](crate::db::Migrations::run) after every service's
/// migrations.
pub async fn install_schema(db: &Db) -> anyhow::Result<()> {
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SCHEMA_LOCK)
                .execute(&mut *tx)
                .await?;
            for table in TABLES {
                sqlx::query(&POSTGRES_SCHEMA.replace("{table}", table))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Db::Sqlite(pool) => {
            for table in TABLES {
                sqlx::query(&SQLITE_SCHEMA.replace("{table}", table))
                    .execute(pool)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Adds `event` to the outbox. Call it inside the transaction that makes
/// the change the event describes (`insert_pg(&mut *tx, &event)`), then
/// [`notify_one`](Notify::notify_one) the relay's [waker](OutboxRelay::waker)
/// after committing.
pub async fn insert_pg(conn: &mut PgConnection, event: &Event) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO roster_outbox (unique_id, name, payload) VALUES ($1, $2, $3)")
        .bind(&event.unique_id)
        .bind(&event.name)
        .bind(event.encode_to_vec())
        .execute(conn)
        .await?;
    Ok(())
}

/// As [`insert_pg`], for SQLite.
pub async fn insert_sqlite(conn: &mut SqliteConnection, event: &Event) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO roster_outbox (unique_id, name, payload) VALUES (?1, ?2, ?3)")
        .bind(&event.unique_id)
        .bind(&event.name)
        .bind(event.encode_to_vec())
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes `events` to the outbox in `tx`, commits, and wakes the relay if
/// there were any: the one way a store commits a change with its events.
pub async fn commit_pg(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    events: &[Event],
    relay: &Notify,
) -> Result<(), sqlx::Error> {
    for event in events {
        insert_pg(&mut tx, event).await?;
    }
    tx.commit().await?;
    if !events.is_empty() {
        relay.notify_one();
    }
    Ok(())
}

/// [`commit_pg`] for SQLite.
pub async fn commit_sqlite(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    events: &[Event],
    relay: &Notify,
) -> Result<(), sqlx::Error> {
    for event in events {
        insert_sqlite(&mut tx, event).await?;
    }
    tx.commit().await?;
    if !events.is_empty() {
        relay.notify_one();
    }
    Ok(())
}

/// How many events wait in the outbox, due or backing off.
pub async fn pending(db: &Db) -> anyhow::Result<i64> {
    count_rows(db, EVENTS_TABLE).await
}

/// How many rows wait in outbox `table`.
async fn count_rows(db: &Db, table: &'static str) -> anyhow::Result<i64> {
    Ok(waiting_rows(db, table).await?.0)
}

/// How many rows wait in outbox `table`, and when the oldest was written.
async fn waiting_rows(
    db: &Db,
    table: &'static str,
) -> anyhow::Result<(i64, Option<DateTime<Utc>>)> {
    let sql = format!("SELECT COUNT(*), MIN(created_at) FROM {table}");
    let waiting = match db {
        Db::Postgres(pool) => sqlx::query_as(&sql).fetch_one(pool).await?,
        Db::Sqlite(pool) => sqlx::query_as(&sql).fetch_one(pool).await?,
    };
    Ok(waiting)
}

/// Where the relay delivers the rows of its table.
#[async_trait::async_trait]
pub trait OutboxSink: Send + Sync + 'static {
    /// What one row is, for logs (`event`, `mail`).
    fn noun(&self) -> &'static str;

    /// Delivers one row. A [`SinkError::Retry`] keeps the row and stops the
    /// pass (later rows do not overtake it); a [`SinkError::Drop`] deletes
    /// the row, which can never be delivered. Neither may quote a secret.
    async fn deliver(&self, row: &OutboxRow) -> Result<(), SinkError>;

    /// Delivers `rows` in order and returns one result per row it tried,
    /// a prefix of `rows`. This default delivers one after the other and
    /// stops after the first [`SinkError::Retry`]; a sink that can have
    /// several rows in flight at once overrides it.
    async fn deliver_batch(&self, rows: &[OutboxRow]) -> Vec<Result<(), SinkError>> {
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let result = self.deliver(row).await;
            let retry = matches!(result, Err(SinkError::Retry(_)));
            results.push(result);
            if retry {
                break;
            }
        }
        results
    }
}

/// Why a row was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// Try again after a backoff.
    Retry(String),
    /// Never deliverable: delete the row and log the reason.
    Drop(String),
}

/// Publishes events to the bus.
struct BusSink(Arc<dyn EventBus>);

#[async_trait::async_trait]
impl OutboxSink for BusSink {
    fn noun(&self) -> &'static str {
        "event"
    }

    async fn deliver(&self, row: &OutboxRow) -> Result<(), SinkError> {
        let event = decode_event(row)?;
        self.0
            .publish(&event)
            .await
            .map_err(|e| SinkError::Retry(e.to_string()))
    }

    async fn deliver_batch(&self, rows: &[OutboxRow]) -> Vec<Result<(), SinkError>> {
        // The rows before the first undecodable one go out together; that
        // one then fails as it would alone.
        let mut events = Vec::with_capacity(rows.len());
        let mut undecodable = None;
        for row in rows {
            match decode_event(row) {
                Ok(event) => events.push(event),
                Err(error) => {
                    undecodable = Some(error);
                    break;
                }
            }
        }
        let mut results: Vec<_> = self
            .0
            .publish_batch(&events)
            .await
            .into_iter()
            .map(|result| result.map_err(|e| SinkError::Retry(e.to_string())))
            .collect();
        if let Some(error) = undecodable
            && results.len() == events.len()
        {
            results.push(Err(error));
        }
        results
    }
}

/// The event an outbox row holds.
fn decode_event(row: &OutboxRow) -> Result<Event, SinkError> {
    Event::decode(row.payload.as_slice()).map_err(|error| {
        // Only a foreign writer can cause this; it needs an operator, and
        // retrying keeps it visible in the logs and the table.
        tracing::error!(
            outbox_id = row.id,
            unique_id = %row.unique_id,
            %error,
            "outbox row does not hold an event"
        );
        SinkError::Retry(format!("undecodable payload: {error}"))
    })
}

/// Delivers committed outbox rows: events to the bus, or whatever its
/// [`OutboxSink`] takes.
pub struct OutboxRelay {
    db: Db,
    sink: Arc<dyn OutboxSink>,
    sql: RelaySql,
    batch: usize,
    interval: Duration,
    waker: Arc<Notify>,
    /// The `service` label of the waiting-rows gauge.
    service: &'static str,
}

/// The relay's statements for its table and backend.
struct RelaySql {
    table: &'static str,
    select: String,
    /// Deletes the delivered rows, given as an array of IDs.
    delete: String,
    fail: String,
}

impl RelaySql {
    fn new(db: &Db, table: &'static str) -> Self {
        match db {
            Db::Postgres(_) => Self {
                table,
                select: format!(
                    "SELECT id, unique_id, name, payload, attempts, next_attempt_at, created_at \
                     FROM {table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
                ),
                delete: format!("DELETE FROM {table} WHERE id = ANY($1)"),
                fail: format!(
                    "UPDATE {table} SET attempts = $2, next_attempt_at = $3, last_error = $4 \
                     WHERE id = $1"
                ),
            },
            Db::Sqlite(_) => Self {
                table,
                select: format!(
                    "SELECT id, unique_id, name, payload, attempts, next_attempt_at, created_at \
                     FROM {table} ORDER BY id LIMIT ?1"
                ),
                delete: format!(
                    "DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?1))"
                ),
                fail: format!(
                    "UPDATE {table} SET attempts = ?2, next_attempt_at = ?3, last_error = ?4 \
                     WHERE id = ?1"
                ),
            },
        }
    }
}

/// One outbox row as the relay sees it.
#[derive(Debug)]
pub struct OutboxRow {
    pub id: i64,
    /// The event's unique ID, or the mail's idempotency key.
    pub unique_id: String,
    /// The event name, or the mail template.
    pub name: String,
    pub payload: Vec<u8>,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

type Pending = OutboxRow;

impl Pending {
    fn from_row<R>(row: &R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'r> &'r str: sqlx::ColumnIndex<R>,
        for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<DateTime<Utc>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(Pending {
            id: row.try_get("id")?,
            unique_id: row.try_get("unique_id")?,
            name: row.try_get("name")?,
            payload: row.try_get("payload")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Rows that never failed are due at once, whatever the clocks of the
    /// inserting and relaying hosts say.
    fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.attempts == 0 || self.next_attempt_at.is_none_or(|at| at <= now)
    }
}

/// What to write back after a failed publish.
struct Failure {
    id: i64,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    error: String,
}

/// What one pass did.
struct Pass {
    /// Rows the pass selected.
    seen: usize,
    published: usize,
    /// The pass stopped early (a failure, or a row still backing off).
    stopped: bool,
    /// The pass saw as many rows as it asked for: more may be waiting.
    full: bool,
    /// When the oldest row the pass left in the table was written.
    oldest_left: Option<DateTime<Utc>>,
}

impl Pass {
    fn more_waiting(&self) -> bool {
        self.full && !self.stopped
    }
}

impl OutboxRelay {
    /// A relay publishing the events of [`EVENTS_TABLE`] to `bus`.
    pub fn new(db: Db, bus: Arc<dyn EventBus>, config: &EventsConfig) -> Self {
        Self::with_sink(db, EVENTS_TABLE, Arc::new(BusSink(bus)), config)
    }

    /// A relay delivering the rows of `table` (created by
    /// [`install_schema`]) to `sink`.
    pub fn with_sink(
        db: Db,
        table: &'static str,
        sink: Arc<dyn OutboxSink>,
        config: &EventsConfig,
    ) -> Self {
        Self {
            sql: RelaySql::new(&db, table),
            db,
            sink,
            batch: config.relay_batch.max(1),
            interval: Duration::from_millis(config.relay_interval_ms.max(1)),
            waker: Arc::new(Notify::new()),
            service: "",
        }
    }

    /// Names the service whose outbox this is, in the metrics.
    pub fn for_service(mut self, service: &'static str) -> Self {
        self.service = service;
        self
    }

    /// Wakes the relay at once instead of at its next interval. Stores call
    /// `notify_one()` after committing a transaction that inserted events;
    /// a wake-up while the relay is busy is kept, not lost.
    pub fn waker(&self) -> Arc<Notify> {
        self.waker.clone()
    }

    /// Publishes due rows until `shutdown` resolves, then makes a last
    /// attempt to drain the outbox and returns.
    #[tracing::instrument(skip_all, fields(backend = self.db.backend(), rows = self.sink.noun()))]
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let more = self.pass_logged().await;
            if more {
                // A full batch went out: go on without waiting, unless asked
                // to stop.
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    _ = std::future::ready(()) => continue,
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.waker.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        for _ in 0..SHUTDOWN_PASSES {
            if !self.pass_logged().await {
                break;
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    /// Makes one pass over the outbox and returns how many events it
    /// published. A failed publish is recorded on its row and ends the pass
    /// without an error; only database errors are returned.
    pub async fn publish_due(&self) -> anyhow::Result<usize> {
        Ok(self.pass().await?.published)
    }

    /// One pass, with errors logged; whether more rows may be waiting.
    async fn pass_logged(&self) -> bool {
        match self.pass().await {
            Ok(pass) => {
                self.report_waiting(&pass).await;
                pass.more_waiting()
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "outbox relay pass failed");
                false
            }
        }
    }

    /// Sets the waiting-rows and oldest-row gauges. A pass that saw fewer
    /// rows than it asked for saw them all, in id order, so only after a
    /// full batch does the table need counting: an idle relay costs no
    /// extra query.
    async fn report_waiting(&self, pass: &Pass) {
        let (waiting, oldest) = if pass.full {
            match waiting_rows(&self.db, self.sql.table).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::debug!(%error, "counting the outbox failed");
                    return;
                }
            }
        } else {
            ((pass.seen - pass.published) as i64, pass.oldest_left)
        };
        // The database's clock stamped the row; a clock slightly ahead of
        // this host's must not show a negative age.
        let age = oldest.map_or(0.0, |at| {
            ((Utc::now() - at).num_milliseconds() as f64 / 1000.0).max(0.0)
        });
        let rows = self.sink.noun();
        crate::metrics::outbox_waiting(self.service, rows, waiting as f64);
        crate::metrics::outbox_oldest_age(self.service, rows, age);
    }

    #[tracing::instrument(skip_all)]
    async fn pass(&self) -> anyhow::Result<Pass> {
        let limit = i64::try_from(self.batch).unwrap_or(i64::MAX);
        match &self.db {
            Db::Postgres(pool) => {
                // The transaction holds the row locks while publishing, so
                // other relays skip these rows until they are deleted.
                let mut tx = pool.begin().await?;
                let rows = sqlx::query(&self.sql.select)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(Pending::from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let outcome = self.deliver(&rows).await;
                if !outcome.delivered.is_empty() {
                    sqlx::query(&self.sql.delete)
                        .bind(&outcome.delivered)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(failure) = &outcome.failure {
                    sqlx::query(&self.sql.fail)
                        .bind(failure.id)
                        .bind(failure.attempts)
                        .bind(failure.next_attempt_at)
                        .bind(&failure.error)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(outcome.into_pass(&rows, self.batch))
            }
            Db::Sqlite(pool) => {
                // No transaction: it would hold SQLite's single write lock
                // for as long as the bus takes to answer.
                let rows = sqlx::query(&self.sql.select)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(Pending::from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let outcome = self.deliver(&rows).await;
                if !outcome.delivered.is_empty() {
                    sqlx::query(&self.sql.delete)
                        .bind(serde_json::to_string(&outcome.delivered)?)
                        .execute(pool)
                        .await?;
                }
                if let Some(failure) = &outcome.failure {
                    sqlx::query(&self.sql.fail)
                        .bind(failure.id)
                        .bind(failure.attempts)
                        .bind(failure.next_attempt_at)
                        .bind(&failure.error)
                        .execute(pool)
                        .await?;
                }
                Ok(outcome.into_pass(&rows, self.batch))
            }
        }
    }

    /// Delivers the due rows at the head of `rows` (a row still backing off
    /// stops there rather than being skipped, so later rows do not overtake
    /// it) as one batch, and says which to delete and which failed.
    async fn deliver(&self, rows: &[Pending]) -> Outcome {
        let now = Utc::now();
        let due = rows.iter().take_while(|row| row.is_due(now)).count();
        let results = self.sink.deliver_batch(&rows[..due]).await;
        let mut outcome = Outcome {
            stopped: due < rows.len() || results.len() < due,
            delivered: Vec::with_capacity(results.len()),
            failure: None,
        };
        let noun = self.sink.noun();
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) => {
                    tracing::debug!(unique_id = %row.unique_id, name = %row.name, "{noun} delivered");
                    outcome.delivered.push(row.id);
                }
                Err(SinkError::Drop(error)) => {
                    tracing::error!(
                        unique_id = %row.unique_id,
                        name = %row.name,
                        %error,
                        "{noun} can never be delivered; dropped"
                    );
                    outcome.delivered.push(row.id);
                }
                // A row the bus refused while later rows of the batch went
                // out: it backs off; those are delivered, and go.
                Err(SinkError::Retry(error)) if outcome.failure.is_none() => {
                    let attempts = row.attempts.saturating_add(1);
                    let delay = retry_delay(attempts);
                    tracing::warn!(
                        unique_id = %row.unique_id,
                        name = %row.name,
                        attempts,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "{noun} delivery failed; will retry"
                    );
                    outcome.stopped = true;
                    outcome.failure = Some(Failure {
                        id: row.id,
                        attempts,
                        next_attempt_at: now
                            + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                        error,
                    });
                }
                // A second failure in one batch: left as it is, tried again
                // after the first one.
                Err(SinkError::Retry(error)) => {
                    tracing::debug!(unique_id = %row.unique_id, %error, "{noun} delivery failed too");
                }
            }
        }
        outcome
    }
}

/// What delivering one pass's rows came to.
struct Outcome {
    /// Rows delivered, or dropped for good: they go.
    delivered: Vec<i64>,
    /// The first row that failed, to back off.
    failure: Option<Failure>,
    /// Rows were left behind: one still backing off, or a failure.
    stopped: bool,
}

impl Outcome {
    fn into_pass(self, rows: &[Pending], batch: usize) -> Pass {
        let delivered: std::collections::HashSet<i64> = self.delivered.iter().copied().collect();
        let oldest_left = rows
            .iter()
            .filter(|row| !delivered.contains(&row.id))
            .map(|row| row.created_at)
            .min();
        Pass {
            seen: rows.len(),
            published: self.delivered.len(),
            stopped: self.stopped,
            full: rows.len() == batch,
            oldest_left,
        }
    }
}

/// The wait before retry number `attempts` (counting from 1): doubling from
/// [`FIRST_RETRY`], capped at [`MAX_RETRY`].
fn retry_delay(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{MemoryBus, new_event};
    use futures::StreamExt;

    #[test]
    fn retries_back_off_exponentially_up_to_thirty_seconds() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(2));
        assert_eq!(retry_delay(7), Duration::from_secs(30));
        assert_eq!(retry_delay(i32::MAX), Duration::from_secs(30));
        assert_eq!(retry_delay(0), Duration::from_millis(500));
    }

    async fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("outbox.db"), 2)
            .await
            .unwrap();
        install_schema(&db).await.unwrap();
        install_schema(&db).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn committed_events_go_out_in_order_and_leave_the_outbox() {
        let (_dir, db) = sqlite().await;
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let events: Vec<Event> = (0..5)
            .map(|i| new_event(&format!("user.e{i}"), vec![], None))
            .collect();
        let mut tx = pool.begin().await.unwrap();
        for event in &events {
            insert_sqlite(&mut tx, event).await.unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(pending(&db).await.unwrap(), 5);

        let bus = Arc::new(MemoryBus::new());
        let mut sub = bus.subscribe(">").await.unwrap();
        let config = EventsConfig {
            relay_batch: 2,
            ..Default::default()
        };
        let relay = OutboxRelay::new(db.clone(), bus, &config);
        assert_eq!(relay.publish_due().await.unwrap(), 2);
        assert_eq!(relay.publish_due().await.unwrap(), 2);
        assert_eq!(relay.publish_due().await.unwrap(), 1);
        assert_eq!(pending(&db).await.unwrap(), 0);
        for event in &events {
            assert_eq!(&sub.next().await.unwrap(), event);
        }
    }

    struct FailingBus;

    #[async_trait::async_trait]
    impl EventBus for FailingBus {
        async fn publish(&self, _: &Event) -> Result<(), crate::events::BusError> {
            Err(crate::events::BusError::Publish("down".into()))
        }
        async fn subscribe(
            &self,
            _: &str,
        ) -> Result<crate::events::EventStream, crate::events::BusError> {
            Err(crate::events::BusError::Subscribe("down".into()))
        }
        async fn consume(
            &self,
            _: &str,
            _: &[&str],
        ) -> Result<crate::events::DeliveryStream, crate::events::BusError> {
            Err(crate::events::BusError::Subscribe("down".into()))
        }
    }

    #[tokio::test]
    async fn a_failed_publish_is_recorded_and_backs_off() {
        let (_dir, db) = sqlite().await;
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let mut conn = pool.acquire().await.unwrap();
        insert_sqlite(&mut conn, &new_event("user.a", vec![], None))
            .await
            .unwrap();
        insert_sqlite(&mut conn, &new_event("user.b", vec![], None))
            .await
            .unwrap();
        drop(conn);

        let relay = OutboxRelay::new(db.clone(), Arc::new(FailingBus), &EventsConfig::default());
        assert_eq!(relay.publish_due().await.unwrap(), 0);
        // Backing off: the next pass does not even try.
        assert_eq!(relay.publish_due().await.unwrap(), 0);
        let (attempts, error): (i64, Option<String>) =
            sqlx::query_as("SELECT attempts, last_error FROM roster_outbox ORDER BY id LIMIT 1")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(attempts, 1);
        assert!(error.unwrap().contains("down"));
        let untouched: i64 =
            sqlx::query_scalar("SELECT attempts FROM roster_outbox ORDER BY id DESC LIMIT 1")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(untouched, 0);
        assert_eq!(pending(&db).await.unwrap(), 2);
    }

    /// Refuses the events named `user.refused`, publishes the rest.
    struct Picky(MemoryBus);

    #[async_trait::async_trait]
    impl EventBus for Picky {
        async fn publish(&self, event: &Event) -> Result<(), crate::events::BusError> {
            if event.name == "user.refused" {
                return Err(crate::events::BusError::Publish("refused".into()));
            }
            self.0.publish(event).await
        }
        async fn publish_batch(
            &self,
            events: &[Event],
        ) -> Vec<Result<(), crate::events::BusError>> {
            // As JetStream does: every event is tried.
            let mut results = Vec::new();
            for event in events {
                results.push(self.publish(event).await);
            }
            results
        }
        async fn subscribe(
            &self,
            pattern: &str,
        ) -> Result<crate::events::EventStream, crate::events::BusError> {
            self.0.subscribe(pattern).await
        }
        async fn consume(
            &self,
            durable: &str,
            patterns: &[&str],
        ) -> Result<crate::events::DeliveryStream, crate::events::BusError> {
            self.0.consume(durable, patterns).await
        }
    }

    #[tokio::test]
    async fn rows_a_batch_delivered_past_a_refused_one_go_and_it_backs_off_alone() {
        let (_dir, db) = sqlite().await;
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let names = ["user.a", "user.refused", "user.c", "user.d"];
        let mut conn = pool.acquire().await.unwrap();
        for name in names {
            insert_sqlite(&mut conn, &new_event(name, vec![], None))
                .await
                .unwrap();
        }
        drop(conn);
        let bus = Arc::new(Picky(MemoryBus::new()));
        let mut sub = bus.subscribe(">").await.unwrap();
        let relay = OutboxRelay::new(db.clone(), bus, &EventsConfig::default());

        assert_eq!(relay.publish_due().await.unwrap(), 3);
        for name in ["user.a", "user.c", "user.d"] {
            assert_eq!(sub.next().await.unwrap().name, name);
        }
        let left: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, attempts FROM roster_outbox ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(left, [("user.refused".to_string(), 1)]);
        // Backing off, it stops the next pass: nothing overtakes it again.
        let mut conn = pool.acquire().await.unwrap();
        insert_sqlite(&mut conn, &new_event("user.e", vec![], None))
            .await
            .unwrap();
        drop(conn);
        assert_eq!(relay.publish_due().await.unwrap(), 0);
        assert_eq!(pending(&db).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn the_relay_drains_on_shutdown() {
        let (_dir, db) = sqlite().await;
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let mut conn = pool.acquire().await.unwrap();
        let event = new_event("user.create", vec![], None);
        insert_sqlite(&mut conn, &event).await.unwrap();
        drop(conn);

        let bus = Arc::new(MemoryBus::new());
        let mut sub = bus.subscribe(">").await.unwrap();
        let relay = OutboxRelay::new(db.clone(), bus, &EventsConfig::default());
        relay.run(std::future::ready(())).await;
        assert_eq!(sub.next().await.unwrap(), event);
        assert_eq!(pending(&db).await.unwrap(), 0);
    }

    /// Refuses every row for good.
    struct Refusing;

    #[async_trait::async_trait]
    impl OutboxSink for Refusing {
        fn noun(&self) -> &'static str {
            "test row"
        }
        async fn deliver(&self, _: &OutboxRow) -> Result<(), SinkError> {
            Err(SinkError::Drop("never deliverable".into()))
        }
    }

    #[tokio::test]
    async fn a_row_the_sink_can_never_take_is_dropped_and_does_not_block_the_rest() {
        let (_dir, db) = sqlite().await;
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let mail = crate::mail::OutgoingMail::new("login_token", "a@example.com", "");
        let mut conn = pool.acquire().await.unwrap();
        crate::mail::queue_sqlite(&mut conn, &mail).await.unwrap();
        crate::mail::queue_sqlite(&mut conn, &mail).await.unwrap();
        drop(conn);
        assert_eq!(crate::mail::pending(&db).await.unwrap(), 2);
        // The event outbox is a different table.
        assert_eq!(pending(&db).await.unwrap(), 0);

        let relay = OutboxRelay::with_sink(
            db.clone(),
            crate::mail::OUTBOX_TABLE,
            Arc::new(Refusing),
            &EventsConfig::default(),
        );
        assert_eq!(relay.publish_due().await.unwrap(), 2);
        assert_eq!(crate::mail::pending(&db).await.unwrap(), 0);
    }
}
