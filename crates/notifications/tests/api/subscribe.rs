//! Subscribe: new notifications as they are made, only the receiver's,
//! and an end when the credential stops working.

use std::time::{Duration, Instant};

use roster_notifications::NotificationsConfig;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, DeleteUserApiKeyRequest, Notification, NotificationType, Right,
    SubscribeNotificationsRequest,
};
use roster_test_support::{Backend, TestConfig, TestEnv, with_cluster_key, with_token};
use tonic::Code;
use tonic::codec::Streaming;

use crate::support::{about, client, create_ok, expect_code, ids, on_both_backends};

on_both_backends!(
    a_subscriber_receives_its_new_notifications_within_a_second_and_no_others,
    the_stream_ends_unauthenticated_once_its_api_key_is_deleted,
    subscribe_needs_the_notifications_right_on_the_receiver,
    the_stream_ends_unauthenticated_once_its_api_key_expires,
);

async fn open(env: &TestEnv, token: &str, user_id: &str) -> Streaming<Notification> {
    client(env)
        .subscribe(with_token(
            SubscribeNotificationsRequest {
                receiver_ids: Some(ids(user_id)),
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("subscribe to {user_id}: {s:?}"))
        .into_inner()
}

async fn a_subscriber_receives_its_new_notifications_within_a_second_and_no_others(
    backend: Backend,
) {
    let env = crate::support::start_quiet(backend).await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    env.ensure_user("bob", false).await;
    let mut stream = open(&env, &alice, "alice").await;

    create_ok(&env, about("bob", NotificationType::ApiKeyCreated)).await;
    let made = Instant::now();
    let id = create_ok(&env, about("alice", NotificationType::PasswordChanged)).await;
    let got = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("a notification within a second")
        .expect("the stream is open")
        .expect("a notification");
    assert!(made.elapsed() < Duration::from_secs(1));
    assert_eq!(got.id, id, "bob's notification did not come first");
    assert_eq!(
        got.notification_type,
        NotificationType::PasswordChanged as i32
    );

    // Bob's next one does not come at all; alice's next one does.
    create_ok(&env, about("bob", NotificationType::ApiKeyChanged)).await;
    let next = create_ok(&env, about("alice", NotificationType::AccountLocked)).await;
    let got = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the next notification")
        .unwrap()
        .unwrap();
    assert_eq!(got.id, next);
}

async fn the_stream_ends_unauthenticated_once_its_api_key_is_deleted(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    let (key_id, key) = env.api_key("alice", &[Right::UserNotificationsRead]).await;
    let mut stream = open(&env, &key, "alice").await;
    let id = create_ok(&env, about("alice", NotificationType::ApiKeyCreated)).await;
    let got = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a notification")
        .unwrap()
        .unwrap();
    assert_eq!(got.id, id);

    UserAccessClient::new(env.channel())
        .delete_api_key(with_cluster_key(DeleteUserApiKeyRequest {
            user_ids: Some(ids("alice")),
            key_id,
        }))
        .await
        .expect("delete the key");
    // The deletion's event makes the stream check its credential at once,
    // well before the periodic check (every 5 s).
    let end = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .expect("the stream ends soon after the key is deleted");
    expect_code(end, Code::Unauthenticated);
}

async fn subscribe_needs_the_notifications_right_on_the_receiver(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    let bob = env.user_token("bob", &[Right::All]).await;
    let alice_without_right = env.user_token("alice", &[Right::UserInfo]).await;
    let request = || SubscribeNotificationsRequest {
        receiver_ids: Some(ids("alice")),
    };
    expect_code(
        client(&env).subscribe(with_token(request(), &bob)).await,
        Code::PermissionDenied,
    );
    expect_code(
        client(&env)
            .subscribe(with_token(request(), &alice_without_right))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        client(&env).subscribe(tonic::Request::new(request())).await,
        Code::Unauthenticated,
    );
    // An admin may watch anyone's.
    let admin = env.admin_token("root-admin").await;
    let mut stream = open(&env, &admin, "alice").await;
    let id = create_ok(&env, about("alice", NotificationType::ApiKeyCreated)).await;
    let got = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a notification")
        .unwrap()
        .unwrap();
    assert_eq!(got.id, id);
}

async fn the_stream_ends_unauthenticated_once_its_api_key_expires(backend: Backend) {
    // No event announces an expiry: only the periodic check ends the stream.
    let env = TestEnv::start_configured(
        backend,
        TestConfig {
            notifications: NotificationsConfig {
                stream_recheck_secs: 1,
            },
            without_notification_worker: true,
            ..TestConfig::default()
        },
    )
    .await;
    env.ensure_user("alice", false).await;
    let expires = std::time::SystemTime::now() + Duration::from_secs(3);
    let key = UserAccessClient::new(env.channel())
        .create_api_key(with_cluster_key(CreateUserApiKeyRequest {
            user_ids: Some(ids("alice")),
            name: "short".into(),
            rights: vec![Right::UserNotificationsRead as i32],
            expires_at: Some(prost_types::Timestamp::from(expires)),
        }))
        .await
        .expect("create a short-lived key")
        .into_inner()
        .key;
    let mut stream = open(&env, &key, "alice").await;
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends after the key expires");
    expect_code(end, Code::Unauthenticated);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not before the key expired"
    );
}
