//! Delivery when things go wrong: the SMTP server is down, the mailer
//! restarts, a worker dies holding mails, the server refuses a recipient
//! for good or for a while. Every wait is bounded; no sleep is an
//! assertion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_core::db::Db;
use roster_core::time::now;
use roster_invitations::store::{self, MailRecord};
use roster_invitations::transport::SmtpTransport;
use roster_invitations::{MailConfig, Mailer};
use roster_test_support::{Backend, TestDb, TestSmtp};

use crate::support::{
    WAIT, enqueue_and_wait_sent, enqueue_ok, eventually, invitation, on_both_backends, pending,
    raw_row, record, secret, smtp_config, start_with_smtp, wait_for_record,
};

on_both_backends!(
    mails_queued_while_the_smtp_server_is_down_arrive_once_when_it_is_up,
    a_restarted_mailer_delivers_what_was_queued_while_the_server_was_down,
    a_permanent_refusal_gives_the_mail_up_without_retrying,
    a_temporary_refusal_is_retried_and_delivered_later,
);

mod mails_queued_during_deliveries_are_each_delivered_and_marked_sent_once {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres() {
        super::mails_queued_during_deliveries_are_each_delivered_and_marked_sent_once(
            roster_test_support::Backend::Postgres,
        )
        .await;
    }

    /// See `store::finishing_a_mail_succeeds_while_other_writes_commit`:
    /// a mail whose `mark_sent` meets a concurrent enqueue stays claimed
    /// after delivery, until its lease runs out and it is sent again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_sqlite() {
        super::mails_queued_during_deliveries_are_each_delivered_and_marked_sent_once(
            roster_test_support::Backend::Sqlite,
        )
        .await;
    }
}

/// Slow (the SMTP timeout is at least a second): on SQLite only.
///
/// `mail.timeout_secs` reads "how long one SMTP delivery may take", and the
/// lease is sized from it; but `SmtpTransport` hands it to lettre's
/// `AsyncSmtpTransport::timeout`, which on tokio bounds only the TCP
/// connect, not the greeting or any command. A server that accepts and
/// never answers holds the delivery (and the worker, which delivers one
/// mail at a time, with every mail behind it) for as long as the
/// connection stays open.
#[tokio::test]
async fn a_hung_smtp_server_times_out_and_the_mail_arrives_after_it_recovers() {
    hung_server(Backend::Sqlite).await;
}

/// Asserts that `mails` are exactly one mail per id of `ids` (by
/// `Message-ID`), each to its recipient.
#[track_caller]
fn assert_each_once(
    mails: &[roster_test_support::smtp::ReceivedMail],
    ids: &HashMap<String, String>,
) {
    let mut seen = HashMap::new();
    for mail in mails {
        let message_id = mail.header("Message-ID").unwrap_or_default();
        *seen.entry(message_id).or_insert(0) += 1;
    }
    let expected: HashMap<String, i32> =
        ids.keys().map(|id| (format!("<{id}@roster>"), 1)).collect();
    assert_eq!(seen, expected, "every mail exactly once");
    for mail in mails {
        let message_id = mail.header("Message-ID").unwrap_or_default();
        let id = message_id
            .trim_start_matches('<')
            .trim_end_matches("@roster>");
        assert_eq!(mail.to, [ids[id].as_str()], "{id} to its recipient");
    }
}

async fn mails_queued_while_the_smtp_server_is_down_arrive_once_when_it_is_up(backend: Backend) {
    let smtp = TestSmtp::start().await;
    smtp.stop().await;
    assert!(!smtp.is_running());
    let env = start_with_smtp(backend, &smtp).await;
    let db = &env.invitations_db;

    let mut ids = HashMap::new();
    let mut tokens = HashMap::new();
    for i in 0..5 {
        let recipient = format!("down{i}@example.com");
        let token = secret("tok");
        let id = enqueue_ok(&env, invitation(&recipient, &token)).await;
        ids.insert(id.clone(), recipient);
        tokens.insert(id, token);
    }
    // The worker tries, fails, and tries again while the server is down.
    for id in ids.keys() {
        let mail = wait_for_record(db, id, "retried", |m| {
            m.attempts >= 2 && m.last_error.is_some()
        })
        .await;
        assert_eq!(mail.sent_at, None);
        assert_eq!(
            mail.given_up_at, None,
            "a server that is down is not a refusal"
        );
        assert_eq!(
            mail.data.get("secret_token"),
            Some(&tokens[id]),
            "the secret is kept until delivery"
        );
        let error = mail.last_error.unwrap_or_default();
        assert!(!error.contains(&tokens[id]), "{error}");
    }
    assert!(smtp.messages().is_empty(), "nothing arrives while down");
    assert_eq!(smtp.connections(), 0, "nothing listens while down");
    assert_eq!(pending(db).await, 5);

    smtp.start_again().await;
    let mails = smtp.wait_for(5, WAIT).await;
    eventually("all marked sent", || async { pending(db).await == 0 }).await;
    assert_eq!(env.mailer.deliver_due().await.expect("a pass"), 0);
    let mails_after = smtp.messages();
    assert_eq!(
        mails_after.len(),
        5,
        "no mail twice: {:?}",
        mails_after.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    assert_eq!(mails.len(), 5);
    assert_each_once(&mails_after, &ids);
    for (id, recipient) in &ids {
        assert_eq!(smtp.rcpt_attempts(recipient), 1, "{recipient}");
        let mail = record(db, id).await;
        assert!(mail.sent_at.is_some());
        assert!(!mail.data.contains_key("secret_token"), "{mail:?}");
        assert!(!raw_row(db, id).await.contains(&tokens[id]));
    }
}

/// A database that can be opened again, as a restarted process would.
enum Durable {
    Postgres(TestDb),
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
}

impl Durable {
    async fn new(backend: Backend) -> Durable {
        match backend {
            Backend::Postgres => Durable::Postgres(TestDb::new().await),
            Backend::Sqlite => {
                let (dir, path) = roster_test_support::db::sqlite_file();
                Durable::Sqlite { _dir: dir, path }
            }
        }
    }

    async fn open(&self) -> Db {
        match self {
            Durable::Postgres(pg) => pg.pool_for(roster_invitations::NAME).await,
            Durable::Sqlite { path, .. } => Db::open_sqlite(path, 4)
                .await
                .unwrap_or_else(|e| panic!("open {}: {e:#}", path.display())),
        }
    }
}

/// A mailer over `db` delivering to `smtp`, retrying after a millisecond.
fn mailer(db: &Db, smtp: &TestSmtp) -> Mailer {
    let config = MailConfig {
        retry_initial_ms: 1,
        retry_max_ms: 1,
        ..smtp_config(smtp)
    };
    config.validate().expect("valid mail settings");
    let transport = SmtpTransport::new(
        config.smtp_url.expose(),
        Duration::from_secs(config.timeout_secs),
    )
    .expect("an SMTP transport");
    Mailer::new(store::open(db), Arc::new(transport), config).expect("a mailer")
}

fn queued(recipient: &str, token: &str, due: chrono::DateTime<chrono::Utc>) -> MailRecord {
    MailRecord {
        id: uuid::Uuid::new_v4().to_string(),
        idempotency_key: None,
        template: "invitation".into(),
        recipient: recipient.into(),
        recipient_name: String::new(),
        data: BTreeMap::from([("secret_token".to_string(), token.to_string())]),
        attempts: 0,
        next_attempt_at: due,
        last_error: None,
        created_at: due,
        sent_at: None,
        given_up_at: None,
    }
}

/// Runs `mailer` pass after pass until the queue of `db` is empty (at most
/// [`WAIT`]).
async fn drain(mailer: &Mailer, db: &Db) {
    let deadline = Instant::now() + WAIT;
    while pending(db).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the queue did not drain within {WAIT:?}"
        );
        mailer.deliver_due().await.expect("a pass");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_restarted_mailer_delivers_what_was_queued_while_the_server_was_down(backend: Backend) {
    let smtp = TestSmtp::start().await;
    smtp.stop().await;
    let durable = Durable::new(backend).await;
    let mut ids = HashMap::new();
    {
        // The first process: queues 5 mails and tries once, server down.
        let db = durable.open().await;
        store::migrations().run(&db).await.expect("migrations");
        let queue = store::open(&db);
        for i in 0..5 {
            let recipient = format!("restart{i}@example.com");
            let mail = queued(&recipient, &secret("tok"), now());
            queue.enqueue(&mail).await.expect("enqueue");
            ids.insert(mail.id, recipient);
        }
        let first = mailer(&db, &smtp);
        assert_eq!(first.deliver_due().await.expect("a pass"), 5, "all taken");
        for id in ids.keys() {
            let mail = record(&db, id).await;
            assert_eq!(mail.attempts, 1, "{backend:?}");
            assert!(
                mail.last_error.is_some(),
                "{backend:?}: the failure is recorded"
            );
            assert_eq!(mail.sent_at, None);
            assert_eq!(mail.given_up_at, None);
        }
        assert!(smtp.messages().is_empty());
        // A worker of this process takes one more mail and dies during
        // its delivery: the mail is held by its lease for a second.
        let held = queued(
            "held@example.com",
            &secret("tok"),
            now() - chrono::Duration::hours(1),
        );
        queue.enqueue(&held).await.expect("enqueue");
        let t = now();
        let taken = queue
            .claim_due(t, t + chrono::Duration::seconds(1), 1)
            .await
            .expect("claim");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id, held.id, "the longest due first");
        ids.insert(held.id, "held@example.com".to_string());
        // The process ends: mailer, store and pool dropped.
    }

    // The restarted process, the server up.
    smtp.start_again().await;
    let db = durable.open().await;
    store::migrations()
        .run(&db)
        .await
        .expect("migrations again");
    assert_eq!(pending(&db).await, 6, "{backend:?}: the queue survived");
    let second = mailer(&db, &smtp);
    drain(&second, &db).await;
    assert_eq!(
        second.deliver_due().await.expect("a pass"),
        0,
        "nothing more"
    );
    let mails = smtp.messages();
    assert_eq!(mails.len(), 6, "{backend:?}");
    assert_each_once(&mails, &ids);
    for id in ids.keys() {
        let mail = record(&db, id).await;
        assert_eq!(
            mail.attempts, 2,
            "{backend:?}: one failed or lost attempt, one delivery"
        );
        assert!(mail.sent_at.is_some());
        assert!(
            mail.data.is_empty(),
            "{backend:?}: the secret is gone: {mail:?}"
        );
    }
}

async fn a_permanent_refusal_gives_the_mail_up_without_retrying(backend: Backend) {
    let smtp = TestSmtp::start().await;
    smtp.refuse_permanently("gone@example.com");
    let env = start_with_smtp(backend, &smtp).await;
    let db = &env.invitations_db;
    let token = secret("tok");
    // The fine mail first and delivered before the refused one is queued
    // (see `support::enqueue_and_wait_sent`).
    enqueue_and_wait_sent(&env, invitation("fine@example.com", &secret("tok"))).await;
    let gone = enqueue_ok(&env, invitation("gone@example.com", &token)).await;
    let given_up = wait_for_record(db, &gone, "given up", |m| m.given_up_at.is_some()).await;
    assert_eq!(given_up.sent_at, None);
    assert_eq!(given_up.attempts, 1, "not retried");
    let error = given_up
        .last_error
        .clone()
        .expect("the refusal is recorded");
    assert!(error.contains("550"), "{error}");
    assert!(!error.contains(&token), "{error}");
    assert!(
        !given_up.data.contains_key("secret_token"),
        "secrets deleted when given up: {given_up:?}"
    );
    assert!(!raw_row(db, &gone).await.contains(&token));
    assert_eq!(pending(db).await, 0);

    assert_eq!(env.mailer.deliver_due().await.expect("a pass"), 0);
    assert_eq!(smtp.rcpt_attempts("gone@example.com"), 1, "tried once");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["fine@example.com"]);
    assert_eq!(record(db, &gone).await, given_up, "unchanged since");
}

async fn a_temporary_refusal_is_retried_and_delivered_later(backend: Backend) {
    let smtp = TestSmtp::start().await;
    smtp.refuse_temporarily("later@example.com", 3);
    let env = start_with_smtp(backend, &smtp).await;
    let db = &env.invitations_db;
    let token = secret("tok");
    let id = enqueue_ok(&env, invitation("later@example.com", &token)).await;

    let mails = smtp.wait_for(1, WAIT).await;
    let text = mails[0].text().expect("a text part");
    assert!(text.contains(&token), "{text}");
    let sent = wait_for_record(db, &id, "sent", |m| m.sent_at.is_some()).await;
    assert_eq!(sent.attempts, 4, "three refusals, then delivered");
    assert_eq!(sent.given_up_at, None);
    let error = sent.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("451"),
        "the last refusal is recorded: {error:?}"
    );
    assert!(!error.contains(&token));
    assert_eq!(smtp.rcpt_attempts("later@example.com"), 4);
    assert_eq!(env.mailer.deliver_due().await.expect("a pass"), 0);
    assert_eq!(smtp.messages().len(), 1, "delivered once");
    let distinct: HashSet<String> = smtp
        .messages()
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(distinct, HashSet::from([format!("<{id}@roster>")]));
}

async fn hung_server(backend: Backend) {
    let smtp = TestSmtp::start().await;
    smtp.stop().await;
    // Something on the port accepts connections and never says a word.
    let hole = tokio::net::TcpListener::bind(smtp.addr)
        .await
        .expect("bind the SMTP port");
    let hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = hole.accept().await {
            held.push(connection);
        }
    });
    let mut mail = smtp_config(&smtp);
    mail.timeout_secs = 1;
    let env = roster_test_support::TestEnv::start_configured(
        backend,
        roster_test_support::TestConfig {
            mail,
            ..Default::default()
        },
    )
    .await;
    let db = &env.invitations_db;
    let token = secret("tok");
    let id = enqueue_ok(&env, invitation("patient@example.com", &token)).await;
    let failed = wait_for_record(db, &id, "timed out", |m| m.last_error.is_some()).await;
    assert_eq!(failed.sent_at, None);
    assert_eq!(failed.given_up_at, None, "a timeout is not a refusal");
    assert!(!failed.last_error.unwrap_or_default().contains(&token));

    hole.abort();
    let _ = hole.await;
    smtp.start_again().await;
    let mails = smtp.wait_for(1, WAIT).await;
    assert_eq!(mails[0].to, ["patient@example.com"]);
    let sent = wait_for_record(db, &id, "sent", |m| m.sent_at.is_some()).await;
    assert!(sent.attempts >= 2, "{sent:?}");
    assert_eq!(env.mailer.deliver_due().await.expect("a pass"), 0);
    assert_eq!(smtp.messages().len(), 1, "once");
}

/// Eight clients queue 120 mails while the worker delivers: each arrives
/// once and each is marked sent (secrets gone) without waiting for a
/// lease.
async fn mails_queued_during_deliveries_are_each_delivered_and_marked_sent_once(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start_with_smtp(backend, &smtp).await;
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        let channel = env.channel();
        clients.spawn(async move {
            let mut queued = HashMap::new();
            for i in 0..15 {
                let recipient = format!("load{client}-{i}@example.com");
                let id = roster_proto::v1::mailer_client::MailerClient::new(channel.clone())
                    .enqueue(roster_test_support::with_cluster_key(invitation(
                        &recipient,
                        &secret("tok"),
                    )))
                    .await
                    .expect("enqueue")
                    .into_inner()
                    .mail_id;
                queued.insert(id, recipient);
            }
            queued
        });
    }
    let ids: HashMap<String, String> = clients.join_all().await.into_iter().flatten().collect();
    assert_eq!(ids.len(), 120);
    smtp.wait_for(120, WAIT).await;
    let db = &env.invitations_db;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut unsent = Vec::new();
        for id in ids.keys() {
            let mail = record(db, id).await;
            if mail.sent_at.is_none() {
                unsent.push(mail);
            }
        }
        if unsent.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{backend:?}: {} mail(s) delivered but not marked sent within {WAIT:?} \
             (still claimed, secrets kept; sent again when the lease runs out): {:?}",
            unsent.len(),
            unsent.first()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.mailer.deliver_due().await.expect("a pass"), 0);
    assert_each_once(&smtp.messages(), &ids);
}
