//! Mails: through the mail outbox and the mailer to a real SMTP server,
//! only to receivers whose preferences include the type, never with the
//! notification's data.

use roster_proto::v1::{NotificationType, Right};
use roster_test_support::{Backend, TestConfig, TestEnv, TestSmtp};

use crate::support::{WAIT, about, create_ok, ids, list_as, on_both_backends, prefer_mail_for};

on_both_backends!(a_mail_goes_only_to_receivers_whose_preferences_include_the_type);

/// Where links in mails point by default (`mail.base_url`).
const BASE_URL: &str = "http://localhost:8080";

async fn a_mail_goes_only_to_receivers_whose_preferences_include_the_type(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = TestEnv::start_configured(
        backend,
        TestConfig {
            mail: smtp.mail_config(),
            without_notification_worker: true,
            ..TestConfig::default()
        },
    )
    .await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    env.ensure_user("bob", false).await;
    prefer_mail_for(&env, "alice", &[NotificationType::ApiKeyCreated]).await;
    prefer_mail_for(&env, "bob", &[NotificationType::PasswordChanged]).await;

    let marker = format!("data-marker-{}", uuid::Uuid::new_v4().simple());
    let mut request = about("alice", NotificationType::ApiKeyCreated);
    request.email = true;
    request.receiver_user_ids = vec![ids("bob")];
    request.data = Some(prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
        value: marker.clone().into_bytes(),
    });
    let mailed = create_ok(&env, request).await;
    let mail = smtp
        .mail_to_with_subject(
            "alice@example.com",
            "A new API key was created for your account",
            WAIT,
        )
        .await;
    let text = mail.text().expect("a text part");
    assert!(
        text.contains(&format!("{BASE_URL}/notifications/{mailed}")),
        "{text}"
    );
    assert!(
        !mail.raw_contains(&marker),
        "the data stays out of the mail"
    );

    // Bob wants mails about password changes only: he gets this one, and
    // none about the API key before it.
    let mut request = about("bob", NotificationType::PasswordChanged);
    request.email = true;
    create_ok(&env, request).await;
    smtp.mail_to_with_subject("bob@example.com", "Your password was changed", WAIT)
        .await;
    let about_keys_to_bob = smtp
        .messages()
        .into_iter()
        .filter(|m| m.is_to("bob@example.com"))
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("API key")))
        .count();
    assert_eq!(about_keys_to_bob, 0);

    // Without `email`, nobody is mailed, whatever they prefer.
    let quiet = create_ok(&env, about("alice", NotificationType::ApiKeyCreated)).await;
    let store = env.notifications.store();
    assert!(store.get(&mailed).await.unwrap().unwrap().email);
    assert!(!store.get(&quiet).await.unwrap().unwrap().email);
    let listed = list_as(&env, Some(&alice), "alice", &[], 0, 0)
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(listed[0].id, quiet);
    assert!(!listed[0].email);
    assert_eq!(listed[1].id, mailed);
    assert!(listed[1].email);
    // Let a stray mail for the quiet one show up, if there were one.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let about_keys_to_alice = smtp
        .messages()
        .into_iter()
        .filter(|m| m.is_to("alice@example.com"))
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("API key")))
        .count();
    assert_eq!(about_keys_to_alice, 1);
}
