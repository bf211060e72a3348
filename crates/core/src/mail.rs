//! Mails a service owes, handed to the mailer as reliably as events reach
//! the bus.
//!
//! A service that must mail a secret it just made (a temporary password, a
//! login token, an email validation code) cannot put it in an event, and
//! must not lose the mail when the mailer is down. So it writes the mail to
//! its own mail outbox ([`OUTBOX_TABLE`]) in the transaction that stores the
//! secret's hash ([`queue_pg`] / [`queue_sqlite`]), and a relay
//! ([`relay`]) hands each row to `Mailer.Enqueue` with the row's unique ID
//! as idempotency key, then deletes the row. The plaintext secret therefore
//! lives in the service's database only until the mailer has it (usually
//! milliseconds), and in the mailer's queue only until delivery.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::resend::ResendingChannel;
use prost::Message;
use roster_proto::v1::mailer_client::MailerClient;
use roster_proto::v1::{EnqueueMailRequest, Event};
use sqlx::{PgConnection, SqliteConnection};
use tokio::sync::Notify;
use tonic::Code;
use tonic::transport::Channel;

use crate::auth::ClusterCredential;
use crate::db::Db;
use crate::events::EventsConfig;
use crate::events::outbox::{OutboxRelay, OutboxRow, OutboxSink, SinkError};

/// The table of mails waiting for the mailer, created with the event
/// outbox by [`install_schema`](crate::events::outbox::install_schema).
pub const OUTBOX_TABLE: &str = "roster_mail_outbox";

/// Template variables whose key starts with this are secrets: the mailer
/// deletes them once the mail is delivered, and nothing logs them.
pub const SECRET_PREFIX: &str = "secret_";

/// A mail to queue. `Debug` hides secret variables.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The mailer's template (`temporary_password`, `login_token`, …).
    pub template: String,
    pub recipient: String,
    pub recipient_name: String,
    pub data: BTreeMap<String, String>,
}

impl OutgoingMail {
    pub fn new(template: &str, recipient: &str, recipient_name: &str) -> Self {
        Self {
            template: template.to_string(),
            recipient: recipient.to_string(),
            recipient_name: recipient_name.to_string(),
            data: BTreeMap::new(),
        }
    }

    /// Adds a template variable.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.data.insert(key.to_string(), value.into());
        self
    }

    fn encode(&self, idempotency_key: &str) -> Vec<u8> {
        EnqueueMailRequest {
            template: self.template.clone(),
            recipient: self.recipient.clone(),
            recipient_name: self.recipient_name.clone(),
            data: self.data.clone().into_iter().collect(),
            idempotency_key: idempotency_key.to_string(),
        }
        .encode_to_vec()
    }
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.data.keys().map(String::as_str).collect();
        f.debug_struct("OutgoingMail")
            .field("template", &self.template)
            .field("recipient", &self.recipient)
            .field("variables", &keys)
            .finish_non_exhaustive()
    }
}

/// A time as mails show it: `2026-11-22 16:05 UTC`.
pub fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Adds `mail` to the mail outbox in the caller's transaction. Wake the
/// [relay](relay)'s waker after committing.
pub async fn queue_pg(conn: &mut PgConnection, mail: &OutgoingMail) -> Result<(), sqlx::Error> {
    let key = uuid::Uuid::new_v4().to_string();
    sqlx::query(&format!(
        "INSERT INTO {OUTBOX_TABLE} (unique_id, name, payload) VALUES ($1, $2, $3)"
    ))
    .bind(&key)
    .bind(&mail.template)
    .bind(mail.encode(&key))
    .execute(conn)
    .await?;
    Ok(())
}

/// [`queue_pg`] for SQLite.
pub async fn queue_sqlite(
    conn: &mut SqliteConnection,
    mail: &OutgoingMail,
) -> Result<(), sqlx::Error> {
    let key = uuid::Uuid::new_v4().to_string();
    sqlx::query(&format!(
        "INSERT INTO {OUTBOX_TABLE} (unique_id, name, payload) VALUES (?1, ?2, ?3)"
    ))
    .bind(&key)
    .bind(&mail.template)
    .bind(mail.encode(&key))
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues `mails` and writes `events` in `tx`, commits, and wakes the relays
/// that have new rows: [`outbox::commit_pg`](crate::events::outbox::commit_pg)
/// for a change that also owes mails.
pub async fn commit_pg(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    events: &[Event],
    mails: &[OutgoingMail],
    relay: &Notify,
    mail_relay: &Notify,
) -> Result<(), sqlx::Error> {
    for mail in mails {
        queue_pg(&mut tx, mail).await?;
    }
    crate::events::outbox::commit_pg(tx, events, relay).await?;
    if !mails.is_empty() {
        mail_relay.notify_one();
    }
    Ok(())
}

/// [`commit_pg`] for SQLite.
pub async fn commit_sqlite(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    events: &[Event],
    mails: &[OutgoingMail],
    relay: &Notify,
    mail_relay: &Notify,
) -> Result<(), sqlx::Error> {
    for mail in mails {
        queue_sqlite(&mut tx, mail).await?;
    }
    crate::events::outbox::commit_sqlite(tx, events, relay).await?;
    if !mails.is_empty() {
        mail_relay.notify_one();
    }
    Ok(())
}

/// How many mails wait in the mail outbox.
pub async fn pending(db: &Db) -> anyhow::Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM {OUTBOX_TABLE}");
    Ok(match db {
        Db::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await?,
        Db::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await?,
    })
}

/// A relay handing the mail outbox of `db` to the mailer at `mailer`,
/// calling as the cluster (`cluster_key`).
pub fn relay(
    db: Db,
    mailer: Channel,
    cluster_key: &str,
    config: &EventsConfig,
) -> anyhow::Result<OutboxRelay> {
    let sink = MailerSink {
        client: MailerClient::new(ResendingChannel::new(mailer)),
        cluster: ClusterCredential::new(cluster_key)?,
    };
    Ok(OutboxRelay::with_sink(
        db,
        OUTBOX_TABLE,
        Arc::new(sink),
        config,
    ))
}

/// Calls `Mailer.Enqueue`.
struct MailerSink {
    client: MailerClient<ResendingChannel>,
    cluster: ClusterCredential,
}

#[async_trait::async_trait]
impl OutboxSink for MailerSink {
    fn noun(&self) -> &'static str {
        "mail"
    }

    async fn deliver(&self, row: &OutboxRow) -> Result<(), SinkError> {
        let mail = EnqueueMailRequest::decode(row.payload.as_slice())
            .map_err(|e| SinkError::Drop(format!("undecodable mail: {e}")))?;
        let request = self.cluster.request(mail);
        match self.client.clone().enqueue(request).await {
            Ok(_) => Ok(()),
            // The mailer refuses what no retry can fix (a template this
            // version does not know, a recipient it cannot parse). Its
            // messages name fields, never values.
            Err(status)
                if matches!(
                    status.code(),
                    Code::InvalidArgument | Code::FailedPrecondition
                ) =>
            {
                Err(SinkError::Drop(format!(
                    "{:?}: {}",
                    status.code(),
                    status.message()
                )))
            }
            Err(status) => Err(SinkError::Retry(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }
}
