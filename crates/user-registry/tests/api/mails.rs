//! The mails the user registry owes, delivered over SMTP to a real server
//! and used the way their reader would: the validation link validates the
//! address, the temporary password sets a new password.

use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::{
    CreateTemporaryPasswordRequest, Right, SendEmailValidationRequest, UpdateUserPasswordRequest,
    ValidateEmailRequest,
};
use roster_test_support::{Backend, TestConfig, TestEnv, TestSmtp, with_token};
use tonic::Code;

use crate::support::*;

async fn start(backend: Backend, smtp: &TestSmtp) -> TestEnv {
    TestEnv::start_configured(
        backend,
        TestConfig {
            mail: smtp.mail_config(),
            ..TestConfig::default()
        },
    )
    .await
}

fn lifecycle(env: &TestEnv) -> UserLifecycleClient<tonic::transport::Channel> {
    UserLifecycleClient::new(env.channel())
}

/// The user ID and code from a validation mail's link.
fn validation_link(mail: &roster_test_support::ReceivedMail) -> (String, String) {
    (
        mail.link_param("user_id").expect("the link names the user"),
        mail.link_param("token").expect("the link carries the code"),
    )
}

async fn send_validation(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    return_code: bool,
) -> Result<tonic::Response<roster_proto::v1::SendEmailValidationResponse>, tonic::Status> {
    lifecycle(env)
        .send_email_validation(with_token(
            SendEmailValidationRequest {
                user_ids: Some(ids(user_id)),
                return_code,
            },
            token,
        ))
        .await
}

async fn validate(env: &TestEnv, user_id: &str, code: &str) -> Result<(), tonic::Status> {
    lifecycle(env)
        .validate_email(ValidateEmailRequest {
            user_ids: Some(ids(user_id)),
            code: code.into(),
        })
        .await
        .map(|_| ())
}

async fn a_new_user_validates_the_address_with_the_link_from_the_mail(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    register(&env, "alice").await;
    let mail = smtp
        .mail_to_with_subject("alice@example.com", "Confirm your email", WAIT)
        .await;
    assert!(mail.html().is_some(), "{backend:?}: an HTML part too");
    let (user_id, code) = validation_link(&mail);
    assert_eq!(user_id, "alice");
    // Only a hash was stored: the code in the mail is not in the database.
    let stored = env
        .user_registry
        .store()
        .get_user("alice")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.email_validation_hash.as_deref(), Some(code.as_str()));

    let mut updates = env.subscribe("user.update").await;
    validate(&env, "alice", &code).await.expect("validate");
    let user = get_as_admin(&env, "alice").await;
    assert!(
        user.primary_email_address_validated_at.is_some(),
        "{backend:?}: validated"
    );
    let event = next_event_where(&mut updates, "user.update", WAIT, |e| {
        user_event_data(e)
            .changed_paths
            .contains(&"primary_email_address_validated_at".to_string())
    })
    .await
    .expect("user.update");
    assert_eq!(event_user_ids(&event), ["alice"]);

    // The code is spent: the same answer as for any wrong code, so the
    // call tells nobody that the address is validated.
    let again = validate(&env, "alice", &code).await.unwrap_err();
    assert_invalid_field(&again, "code");
}

async fn sending_the_validation_again_replaces_the_code(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    register(&env, "alice").await;
    let (_, first) = validation_link(&smtp.nth_mail_to("alice@example.com", 1, WAIT).await);
    let token = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;

    // Only admins may take the code instead of a mail.
    let refused = send_validation(&env, &token, "alice", true)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{backend:?}");

    let sent = send_validation(&env, &token, "alice", false)
        .await
        .expect("send again")
        .into_inner();
    assert!(sent.code.is_empty(), "the code only goes by mail");
    assert!(sent.expires_at.is_some());
    let (_, second) = validation_link(&smtp.nth_mail_to("alice@example.com", 2, WAIT).await);
    assert_ne!(first, second);

    let old = validate(&env, "alice", &first).await.unwrap_err();
    assert_invalid_field(&old, "code");
    validate(&env, "alice", &second)
        .await
        .expect("the new code");

    // Validated: nothing more to send.
    let done = send_validation(&env, &token, "alice", false)
        .await
        .unwrap_err();
    assert_eq!(done.code(), Code::FailedPrecondition, "{backend:?}");
}

async fn validation_is_refused_to_strangers_and_wrong_codes(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let (_, code) = validation_link(&smtp.nth_mail_to("alice@example.com", 1, WAIT).await);

    // Bob's key cannot ask for Alice's mail.
    let bob = key_of(&env, "bob", &[Right::UserSettingsBasic]).await;
    let status = send_validation(&env, &bob, "alice", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{backend:?}");
    let status = lifecycle(&env)
        .send_email_validation(SendEmailValidationRequest {
            user_ids: Some(ids("alice")),
            return_code: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{backend:?}");

    // Alice's code does not validate Bob, and a made-up code nothing.
    assert_invalid_field(&validate(&env, "bob", &code).await.unwrap_err(), "code");
    assert_invalid_field(
        &validate(&env, "alice", "not-the-code").await.unwrap_err(),
        "code",
    );
    assert_invalid_field(&validate(&env, "alice", "").await.unwrap_err(), "code");
    assert_invalid_field(&validate(&env, "zoe", &code).await.unwrap_err(), "code");
    // An admin can take the code instead; it works like the mailed one.
    let admin = env.admin_token(ADMIN).await;
    let sent = send_validation(&env, &admin, "bob", true)
        .await
        .expect("admin takes the code")
        .into_inner();
    validate(&env, "bob", &sent.code)
        .await
        .expect("admin's code");
}

async fn an_expired_validation_code_is_refused(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    register(&env, "alice").await;
    let (_, code) = validation_link(&smtp.nth_mail_to("alice@example.com", 1, WAIT).await);
    // Move the expiry into the past behind the service's back.
    let store = env.user_registry.store();
    let before = store.get_user("alice").await.unwrap().unwrap();
    let mut after = before.clone();
    after.email_validation_expires_at = Some(before.created_at - chrono::Duration::seconds(1));
    store
        .update_user(&after, before.updated_at, false, &[])
        .await
        .unwrap();
    let status = validate(&env, "alice", &code).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{backend:?}: {status:?}"
    );
    assert!(status.message().contains("email_validation_expired"));
}

async fn a_temporary_password_from_the_mail_sets_a_new_password(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    register_validated(&env, "alice").await;
    registry(&env)
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids("alice")),
        })
        .await
        .expect("forgotten password");
    let mail = smtp
        .mail_to_with_subject("alice@example.com", "temporary password", WAIT)
        .await;
    let temporary = mail
        .line_value("Temporary password:")
        .expect("the mail carries the temporary password");
    assert!(temporary.len() >= 20, "{temporary}");

    registry(&env)
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("alice")),
            new: "Another-Horse-77".into(),
            old: temporary.clone(),
            revoke_all_access: false,
        })
        .await
        .expect("the temporary password proves the user");
    let check = check_password(&env, ids("alice"), "Another-Horse-77")
        .await
        .expect("check");
    assert!(check.valid, "{backend:?}: the new password works");

    // The mailer no longer holds the secret once delivered, and the user
    // registry never kept it past handing it over.
    eventually("the mail outbox is empty", WAIT, || async {
        roster_core::mail::pending(&env.db).await.unwrap() == 0
    })
    .await;
    let queue = env_queue_contains(&env, &temporary).await;
    assert!(
        !queue,
        "{backend:?}: the secret was deleted from the mail queue"
    );
}

/// Whether any row of the mailer's queue still holds `needle`.
async fn env_queue_contains(env: &TestEnv, needle: &str) -> bool {
    let pattern = format!("%{needle}%");
    let n: i64 = match &env.invitations_db {
        roster_core::db::Db::Postgres(pool) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM mail_queue WHERE data LIKE $1 AND sent_at IS NOT NULL",
        )
        .bind(&pattern)
        .fetch_one(pool)
        .await
        .unwrap(),
        roster_core::db::Db::Sqlite(pool) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM mail_queue WHERE data LIKE $1 AND sent_at IS NOT NULL",
        )
        .bind(&pattern)
        .fetch_one(pool)
        .await
        .unwrap(),
    };
    n > 0
}

on_both_backends!(
    a_new_user_validates_the_address_with_the_link_from_the_mail,
    sending_the_validation_again_replaces_the_code,
    validation_is_refused_to_strangers_and_wrong_codes,
    an_expired_validation_code_is_refused,
    a_temporary_password_from_the_mail_sets_a_new_password,
);

/// A registration with a taken address creates nothing, answers as a
/// success would, and tells the address's owner of the attempt.
#[tokio::test]
async fn registering_with_a_taken_address_mails_its_owner_and_creates_nothing() {
    let smtp = TestSmtp::start().await;
    let env = start(Backend::Postgres, &smtp).await;
    register(&env, "alice").await;
    let answer = registry(&env)
        .create(roster_proto::v1::CreateUserRequest {
            user: Some(roster_proto::v1::User {
                primary_email_address: "alice@example.com".into(),
                ..new_user("prober")
            }),
            invitation_token: String::new(),
        })
        .await
        .expect("the answer a success gets")
        .into_inner();
    assert_eq!(answer.ids.unwrap().user_id, "prober");
    let notice = smtp
        .mail_to_with_subject("alice@example.com", "tried to register", WAIT)
        .await;
    assert!(
        !notice.raw_contains("prober"),
        "the mail names no chosen ID"
    );
    let status = get_user(&env, "prober", Some(&env.admin_token(ADMIN).await), &[])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "nothing was created");

    // Trying again does not flood the owner's mailbox: one notice an hour.
    for n in 0..3 {
        registry(&env)
            .create(roster_proto::v1::CreateUserRequest {
                user: Some(roster_proto::v1::User {
                    primary_email_address: "alice@example.com".into(),
                    ..new_user(&format!("prober-{n}"))
                }),
                invitation_token: String::new(),
            })
            .await
            .expect("the answer a success gets");
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let notices = smtp
        .messages()
        .iter()
        .filter(|m| m.is_to("alice@example.com") && m.raw_contains("tried to register"))
        .count();
    assert_eq!(notices, 1);
}
