//! Subscribe: new notifications as they are made, only the receiver's,
//! an end when the credential stops working or the client does not read,
//! and a cap on the streams of one receiver.

use std::time::{Duration, Instant};

use futures::StreamExt;
use roster_notifications::NotificationsConfig;
use roster_notifications::service::{STREAM_BUFFER, STREAM_SEND_WAIT};
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
    a_receiver_has_at_most_max_streams_open_and_a_closed_one_frees_its_place,
    the_default_cap_refuses_a_ninth_stream,
    a_stream_the_client_does_not_read_ends_resource_exhausted_and_frees_its_place,
);

/// The services with `max_streams_per_user` streams per receiver.
async fn start_capped(backend: Backend, max_streams_per_user: u32) -> TestEnv {
    TestEnv::start_configured(
        backend,
        TestConfig {
            notifications: NotificationsConfig {
                max_streams_per_user,
                ..NotificationsConfig::default()
            },
            without_notification_worker: true,
            ..TestConfig::default()
        },
    )
    .await
}

/// Subscribe to `user_id`'s notifications with `token`, as it answers.
async fn try_open(
    env: &TestEnv,
    token: &str,
    user_id: &str,
) -> Result<Streaming<Notification>, tonic::Status> {
    client(env)
        .subscribe(with_token(
            SubscribeNotificationsRequest {
                receiver_ids: Some(ids(user_id)),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// Opens a stream once a place is free, trying for up to five seconds.
async fn open_when_free(env: &TestEnv, token: &str, user_id: &str) -> Streaming<Notification> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match try_open(env, token, user_id).await {
            Ok(stream) => return stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    Instant::now() < deadline,
                    "no place was freed within 5 s: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("subscribe to {user_id}: {status:?}"),
        }
    }
}

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
                ..NotificationsConfig::default()
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

async fn a_receiver_has_at_most_max_streams_open_and_a_closed_one_frees_its_place(
    backend: Backend,
) {
    let env = start_capped(backend, 2).await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    let bob = env.user_token("bob", &[Right::UserNotificationsRead]).await;
    let admin = env.admin_token("root-admin").await;
    let first = open(&env, &alice, "alice").await;
    let mut second = open(&env, &alice, "alice").await;

    let refused = expect_code(
        try_open(&env, &alice, "alice").await,
        Code::ResourceExhausted,
    );
    assert!(
        refused
            .message()
            .contains("2 notification streams open already"),
        "{refused:?}"
    );
    // The cap is the receiver's, whoever opens the stream…
    expect_code(
        try_open(&env, &admin, "alice").await,
        Code::ResourceExhausted,
    );
    // …and each receiver has its own.
    let mut bobs = open(&env, &bob, "bob").await;

    // A stream the client drops gives its place back.
    drop(first);
    let mut third = open_when_free(&env, &alice, "alice").await;
    expect_code(
        try_open(&env, &alice, "alice").await,
        Code::ResourceExhausted,
    );

    // The streams that stay open still work.
    let id = create_ok(&env, about("alice", NotificationType::ApiKeyCreated)).await;
    for stream in [&mut second, &mut third] {
        let got = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a notification")
            .expect("the stream is open")
            .expect("a notification");
        assert_eq!(got.id, id);
    }
    let id = create_ok(&env, about("bob", NotificationType::ApiKeyCreated)).await;
    let got = tokio::time::timeout(Duration::from_secs(5), bobs.message())
        .await
        .expect("bob's notification")
        .unwrap()
        .unwrap();
    assert_eq!(got.id, id);

    // Every way a stream ends gives its place back: here the credential's
    // end (an API key of alice, deleted).
    drop(second);
    drop(third);
    let (key_id, key) = env.api_key("alice", &[Right::UserNotificationsRead]).await;
    let mut revoked = open_when_free(&env, &key, "alice").await;
    let _other = open_when_free(&env, &alice, "alice").await;
    expect_code(
        try_open(&env, &alice, "alice").await,
        Code::ResourceExhausted,
    );
    UserAccessClient::new(env.channel())
        .delete_api_key(with_cluster_key(DeleteUserApiKeyRequest {
            user_ids: Some(ids("alice")),
            key_id,
        }))
        .await
        .expect("delete the key");
    let end = tokio::time::timeout(Duration::from_secs(5), revoked.message())
        .await
        .expect("the stream ends soon after the key is deleted");
    expect_code(end, Code::Unauthenticated);
    // The stream is still held by the client, yet its place is free.
    let _again = open_when_free(&env, &alice, "alice").await;
}

async fn the_default_cap_refuses_a_ninth_stream(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    let max = NotificationsConfig::default().max_streams_per_user;
    assert_eq!(max, 8);
    let mut streams = Vec::new();
    for _ in 0..max {
        streams.push(open(&env, &alice, "alice").await);
    }
    expect_code(
        try_open(&env, &alice, "alice").await,
        Code::ResourceExhausted,
    );
    drop(streams.pop());
    streams.push(open_when_free(&env, &alice, "alice").await);
    expect_code(
        try_open(&env, &alice, "alice").await,
        Code::ResourceExhausted,
    );
}

/// Served without the transport between, whose buffers would hold
/// thousands of notifications before the stream's own buffer fills.
async fn a_stream_the_client_does_not_read_ends_resource_exhausted_and_frees_its_place(
    backend: Backend,
) {
    let env = start_capped(backend, 1).await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    let request = with_token(
        SubscribeNotificationsRequest {
            receiver_ids: Some(ids("alice")),
        },
        &alice,
    );
    let ctx = env.auth.context(&request).await.expect("alice's context");
    let metadata = request.metadata().clone();
    let mut unread = env
        .notifications
        .subscribe(&ctx, &metadata, request.into_inner())
        .await
        .expect("subscribe");

    // One notification more than the stream holds, none of them read.
    let mut made = Vec::new();
    for _ in 0..=STREAM_BUFFER {
        made.push(create_ok(&env, about("alice", NotificationType::ApiKeyCreated)).await);
    }
    // Its task ends after the wait, giving its place back.
    let started = Instant::now();
    let _next = open_when_free(&env, &alice, "alice").await;
    assert!(
        started.elapsed() < STREAM_SEND_WAIT + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The client then finds the notifications that fit, and the end.
    let mut got = Vec::new();
    let end = loop {
        let item = tokio::time::timeout(Duration::from_secs(5), unread.next())
            .await
            .expect("the stream has ended");
        match item {
            Some(Ok(notification)) => got.push(notification.id),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status"),
        }
    };
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");
    assert!(
        end.message().contains("does not read its stream"),
        "{end:?}"
    );
    assert_eq!(got, made[..STREAM_BUFFER]);
    assert!(unread.next().await.is_none(), "nothing after the end");
}
