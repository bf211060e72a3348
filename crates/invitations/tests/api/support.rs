//! Shared helpers for the invitations service's tests: environments with a
//! real SMTP server, requests, reading the mail queue behind the service's
//! back, and bounded waits.

use std::future::Future;
use std::time::{Duration, Instant};

use roster_core::db::Db;
use roster_invitations::MailConfig;
use roster_invitations::store::{self, MailRecord};
use roster_proto::v1::EnqueueMailRequest;
use roster_proto::v1::mailer_client::MailerClient;
use roster_test_support::{Backend, TestConfig, TestEnv, TestSmtp, with_cluster_key};
use tonic::Status;

/// How long a test waits for something that should happen soon.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where links in mails point by default (`mail.base_url`).
pub const BASE_URL: &str = "http://localhost:8080";

pub(crate) use roster_test_support::on_both_backends;
pub use roster_test_support::{assert_invalid_field, expect_code};

/// Mail settings delivering to `smtp`, retrying quickly.
pub fn smtp_config(smtp: &TestSmtp) -> MailConfig {
    MailConfig {
        smtp_url: smtp.url(),
        timeout_secs: 5,
        retry_initial_ms: 20,
        retry_max_ms: 200,
        ..MailConfig::default()
    }
}

/// The services on `backend`, mailing through `smtp`.
pub async fn start_with_smtp(backend: Backend, smtp: &TestSmtp) -> TestEnv {
    TestEnv::start_configured(
        backend,
        TestConfig {
            mail: smtp_config(smtp),
            ..TestConfig::default()
        },
    )
    .await
}

/// A unique secret-looking value (never occurs by chance in a mail or row).
pub fn secret(label: &str) -> String {
    format!("{label}{}", uuid::Uuid::new_v4().simple())
}

/// An invitation for `recipient` with `token`, no idempotency key.
pub fn invitation(recipient: &str, token: &str) -> EnqueueMailRequest {
    EnqueueMailRequest {
        template: "invitation".into(),
        recipient: recipient.into(),
        recipient_name: String::new(),
        data: [
            ("secret_token".to_string(), token.to_string()),
            ("expires_at".to_string(), "2030-01-31 12:00 UTC".to_string()),
        ]
        .into(),
        idempotency_key: String::new(),
    }
}

/// Mailer.Enqueue as a cluster caller.
pub async fn enqueue(env: &TestEnv, request: EnqueueMailRequest) -> Result<String, Status> {
    MailerClient::new(env.channel())
        .enqueue(with_cluster_key(request))
        .await
        .map(|r| r.into_inner().mail_id)
}

/// Mailer.Enqueue as a cluster caller; panics when refused.
pub async fn enqueue_ok(env: &TestEnv, request: EnqueueMailRequest) -> String {
    enqueue(env, request)
        .await
        .unwrap_or_else(|s| panic!("enqueue: {s:?}"))
}

/// Mailer.Enqueue as a cluster caller, then waits until the mail is marked
/// sent. Tests queuing several mails use it to keep one mail's enqueue out
/// of another's `mark_sent`/`give_up`: on SQLite those fail when a write
/// commits in the middle of them (see
/// `store::finishing_a_mail_succeeds_while_other_writes_commit`).
pub async fn enqueue_and_wait_sent(env: &TestEnv, request: EnqueueMailRequest) -> String {
    let id = enqueue_ok(env, request).await;
    wait_for_record(&env.invitations_db, &id, "sent", |m| m.sent_at.is_some()).await;
    id
}

/// The queue row of `id`, read through the store.
pub async fn record(db: &Db, id: &str) -> MailRecord {
    store::open(db)
        .get(id)
        .await
        .expect("read the mail queue")
        .unwrap_or_else(|| panic!("mail {id} is not in the queue"))
}

/// Waits (at most [`WAIT`]) until the row of `id` satisfies `done`.
pub async fn wait_for_record(
    db: &Db,
    id: &str,
    what: &str,
    done: impl Fn(&MailRecord) -> bool,
) -> MailRecord {
    let deadline = Instant::now() + WAIT;
    loop {
        let mail = record(db, id).await;
        if done(&mail) {
            return mail;
        }
        assert!(
            Instant::now() < deadline,
            "mail {id}: not {what} within {WAIT:?}: {mail:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most [`WAIT`]) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "not {what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Mails neither delivered nor given up.
pub async fn pending(db: &Db) -> u64 {
    store::open(db).pending().await.expect("count the queue")
}

/// Every stored column of the row of `id` as text, read behind the store's
/// back (for "the secret is nowhere in the row").
pub async fn raw_row(db: &Db, id: &str) -> String {
    let sql = "SELECT id, COALESCE(idempotency_key, ''), template, recipient, recipient_name, \
               data, COALESCE(last_error, '') FROM mail_queue WHERE id = $1";
    type Row = (String, String, String, String, String, String, String);
    let row: Row = match db {
        Db::Postgres(pool) => sqlx::query_as(sql).bind(id).fetch_one(pool).await,
        Db::Sqlite(pool) => sqlx::query_as(sql).bind(id).fetch_one(pool).await,
    }
    .expect("read the row");
    [row.0, row.1, row.2, row.3, row.4, row.5, row.6].join("\u{1f}")
}
