//! Shared helpers for the invitations service's tests: environments with a
//! real SMTP server, requests, reading the mail queue behind the service's
//! back, and bounded waits.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use roster_core::db::Db;
use roster_invitations::MailConfig;
use roster_invitations::store::{self, MailRecord};
use roster_proto::v1::invitation_tokens_client::InvitationTokensClient;
use roster_proto::v1::mailer_client::MailerClient;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::{
    ClaimInvitationRequest, ClaimInvitationResponse, EnqueueMailRequest, Invitation,
    ResendInvitationRequest, Right, SendInvitationRequest, SettleInvitationClaimRequest,
};
use roster_test_support::smtp::ReceivedMail;
use roster_test_support::{Backend, TestConfig, TestEnv, TestSmtp, with_cluster_key, with_token};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How long a test waits for something that should happen soon.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where links in mails point by default (`mail.base_url`).
pub const BASE_URL: &str = "http://localhost:8080";

pub(crate) use roster_test_support::on_both_backends;
pub use roster_test_support::{assert_invalid_field, expect_code};

/// Mail settings delivering to `smtp`, retrying quickly.
pub fn smtp_config(smtp: &TestSmtp) -> MailConfig {
    MailConfig {
        smtp_url: smtp.url().into(),
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

// ---- Invitations ----------------------------------------------------------

/// `UserInvitationRegistry` on the services under test.
pub fn registry(env: &TestEnv) -> UserInvitationRegistryClient<Channel> {
    UserInvitationRegistryClient::new(env.channel())
}

/// `InvitationTokens` on the services under test.
pub fn tokens(env: &TestEnv) -> InvitationTokensClient<Channel> {
    InvitationTokensClient::new(env.channel())
}

/// Send with `caller`'s credential, every address in `emails`.
pub async fn send(env: &TestEnv, caller: &str, emails: &[&str]) -> Result<Vec<Invitation>, Status> {
    registry(env)
        .send(with_token(
            SendInvitationRequest {
                email: String::new(),
                emails: emails.iter().map(|e| e.to_string()).collect(),
            },
            caller,
        ))
        .await
        .map(|r| r.into_inner().invitations)
}

/// [`send`] of one address; panics when refused.
pub async fn send_one(env: &TestEnv, caller: &str, email: &str) -> Invitation {
    let mut sent = send(env, caller, &[email])
        .await
        .unwrap_or_else(|s| panic!("send {email}: {s:?}"));
    assert_eq!(sent.len(), 1);
    sent.remove(0)
}

/// InvitationTokens.Claim as a cluster caller.
pub async fn claim(
    env: &TestEnv,
    token: &str,
    user_id: &str,
) -> Result<ClaimInvitationResponse, Status> {
    tokens(env)
        .claim(with_cluster_key(ClaimInvitationRequest {
            token: token.into(),
            user_id: user_id.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

/// [`claim`]; panics when refused.
pub async fn claim_ok(env: &TestEnv, token: &str, user_id: &str) -> ClaimInvitationResponse {
    claim(env, token, user_id)
        .await
        .unwrap_or_else(|s| panic!("claim for {user_id}: {s:?}"))
}

/// The request settling `claim_id` of `invitation_id`.
pub fn settle(invitation_id: &str, claim_id: &str) -> SettleInvitationClaimRequest {
    SettleInvitationClaimRequest {
        invitation_id: invitation_id.into(),
        claim_id: claim_id.into(),
    }
}

/// InvitationTokens.Accept as a cluster caller.
pub async fn accept(
    env: &TestEnv,
    invitation_id: &str,
    claim_id: &str,
) -> Result<Invitation, Status> {
    tokens(env)
        .accept(with_cluster_key(settle(invitation_id, claim_id)))
        .await
        .map(|r| r.into_inner())
}

/// InvitationTokens.Release as a cluster caller.
pub async fn release(env: &TestEnv, invitation_id: &str, claim_id: &str) -> Result<(), Status> {
    tokens(env)
        .release(with_cluster_key(settle(invitation_id, claim_id)))
        .await
        .map(|r| r.into_inner())
}

/// Asserts FAILED_PRECONDITION whose message starts with `reason`.
#[track_caller]
pub fn expect_precondition<T: std::fmt::Debug>(result: Result<T, Status>, reason: &str) {
    let status = expect_code(result, Code::FailedPrecondition);
    assert!(
        status.message().starts_with(reason),
        "expected `{reason}`, got {status:?}"
    );
}

/// Sets the timestamp `column` of the invitation `id` to `at`, behind the
/// store's back (to age a claim or expire an invitation without waiting).
pub async fn set_time(db: &Db, id: &str, column: &str, at: DateTime<Utc>) {
    let sql = format!("UPDATE invitations SET {column} = $1 WHERE id = $2");
    let changed = match db {
        Db::Postgres(pool) => sqlx::query(&sql)
            .bind(at)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Sqlite(pool) => sqlx::query(&sql)
            .bind(at)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .expect("update the invitation");
    assert_eq!(changed, 1, "invitation {id} is not stored");
}

/// Rows of `from` (a table, optionally with a `WHERE` clause), read
/// behind the store's back.
pub async fn count_rows(db: &Db, from: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {from}");
    match db {
        Db::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
        Db::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
    }
    .expect("count rows")
}

/// Every stored column of the invitation `id` as text, read behind the
/// store's back (for "the token is nowhere in the row").
pub async fn raw_invitation(db: &Db, id: &str) -> String {
    let sql = "SELECT id, email, email_key, token_id, token_hash, sent_by, \
               COALESCE(accepted_by, ''), COALESCE(claim_id, ''), COALESCE(claimed_by, '') \
               FROM invitations WHERE id = $1";
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let row: Row = match db {
        Db::Postgres(pool) => sqlx::query_as(sql).bind(id).fetch_one(pool).await,
        Db::Sqlite(pool) => sqlx::query_as(sql).bind(id).fetch_one(pool).await,
    }
    .expect("read the invitation");
    [
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
    ]
    .join("\u{1f}")
}

/// The mails `smtp` accepted for `recipient`, waiting (at most [`WAIT`])
/// until there are at least `n`.
pub async fn mails_to(smtp: &TestSmtp, recipient: &str, n: usize) -> Vec<ReceivedMail> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mails: Vec<ReceivedMail> = smtp
            .messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|to| to.eq_ignore_ascii_case(recipient)))
            .collect();
        if mails.len() >= n {
            return mails;
        }
        assert!(
            Instant::now() < deadline,
            "{recipient}: {} of {n} mails within {WAIT:?}",
            mails.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The invitation token in the registration link of `mail`'s text part.
#[track_caller]
pub fn token_in(mail: &ReceivedMail) -> String {
    let text = mail.text().expect("a text part");
    let link = text
        .split_whitespace()
        .find(|word| word.starts_with(&format!("{BASE_URL}/register?")))
        .unwrap_or_else(|| panic!("no registration link in {text}"));
    link.split_once("invitation_token=")
        .map(|(_, token)| token.to_string())
        .unwrap_or_else(|| panic!("no token in {link}"))
}

/// An admin's key that carries only `RIGHT_SEND_INVITES`: universal, but
/// not every right, so the caller is not treated as an admin and sees only
/// the invitations it sent.
pub async fn inviter_token(env: &TestEnv, user_id: &str) -> String {
    env.ensure_user(user_id, true).await;
    env.api_key(user_id, &[Right::SendInvites]).await.1
}

/// Invitation mails in the queue, whatever their state.
pub async fn invitation_mails(db: &Db) -> i64 {
    count_rows(db, "mail_queue WHERE template = 'invitation'").await
}

/// The queued mails to `recipient`, read through the store.
pub async fn queued_mails_to(db: &Db, recipient: &str) -> Vec<MailRecord> {
    let sql = "SELECT id FROM mail_queue WHERE recipient = $1 ORDER BY created_at, id";
    let ids: Vec<String> = match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(sql)
                .bind(recipient)
                .fetch_all(pool)
                .await
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar(sql)
                .bind(recipient)
                .fetch_all(pool)
                .await
        }
    }
    .expect("read the mail queue");
    let mut mails = Vec::new();
    for id in ids {
        mails.push(record(db, &id).await);
    }
    mails
}

/// UserInvitationRegistry.Resend with `caller`'s credential.
pub async fn resend_as(env: &TestEnv, caller: &str, email: &str) -> Result<Invitation, Status> {
    registry(env)
        .resend(with_token(
            ResendInvitationRequest {
                email: email.into(),
            },
            caller,
        ))
        .await
        .map(|r| r.into_inner())
}
