//! UpdateStatus: per receiver, bounded, and announced.

use roster_proto::v1::{
    NotificationStatus, NotificationType, Right, UpdateNotificationStatusRequest,
};
use roster_test_support::{Backend, event_data, next_event};
use tonic::Code;

use crate::support::{
    WAIT, about, assert_invalid_field, create_ok, expect_code, ids, on_both_backends, receivers,
    update_status_as,
};

on_both_backends!(
    update_status_changes_only_the_callers_own_rows_and_is_announced,
    update_status_refuses_bad_ids_and_other_users,
);

async fn update_status_changes_only_the_callers_own_rows_and_is_announced(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    env.ensure_user("bob", false).await;
    let mut shared = about("alice", NotificationType::PasswordChanged);
    shared.receiver_user_ids = vec![ids("bob")];
    let shared = create_ok(&env, shared).await;
    let bobs = create_ok(&env, about("bob", NotificationType::ApiKeyCreated)).await;
    let mut events = env.subscribe("user.notification.update_status").await;

    update_status_as(
        &env,
        &alice,
        "alice",
        &[&shared, &bobs, &uuid::Uuid::new_v4().to_string()],
        NotificationStatus::Seen,
    )
    .await
    .expect("IDs that are not alice's are ignored");

    let rows = receivers(&env, &shared).await;
    assert_eq!(rows[0].user_id, "alice");
    assert_eq!(rows[0].status, NotificationStatus::Seen as i32);
    let first_change = rows[0].status_updated_at.expect("the time of the change");
    assert_eq!(rows[1].user_id, "bob");
    assert_eq!(rows[1].status, NotificationStatus::Unseen as i32);
    assert_eq!(rows[1].status_updated_at, None);
    let bobs_rows = receivers(&env, &bobs).await;
    assert_eq!(bobs_rows[0].status, NotificationStatus::Unseen as i32);

    let event = next_event(&mut events, "user.notification.update_status", WAIT)
        .await
        .expect("the change is announced");
    assert_eq!(roster_core::events::user_ids(&event), ["alice"]);
    let data: UpdateNotificationStatusRequest = event_data(&event);
    assert_eq!(data.receiver_ids, Some(ids("alice")));
    assert_eq!(data.ids, [shared.as_str()], "only the IDs that changed");
    assert_eq!(data.status, NotificationStatus::Seen as i32);

    // The same status again changes nothing, so it keeps its time.
    update_status_as(&env, &alice, "alice", &[&shared], NotificationStatus::Seen)
        .await
        .unwrap();
    assert_eq!(
        receivers(&env, &shared).await[0].status_updated_at,
        Some(first_change)
    );
    update_status_as(
        &env,
        &alice,
        "alice",
        &[&shared],
        NotificationStatus::Archived,
    )
    .await
    .unwrap();
    let archived = &receivers(&env, &shared).await[0];
    assert_eq!(archived.status, NotificationStatus::Archived as i32);
    assert!(archived.status_updated_at.unwrap() >= first_change);
    let event = next_event(&mut events, "user.notification.update_status", WAIT)
        .await
        .expect("the second change is announced");
    let data: UpdateNotificationStatusRequest = event_data(&event);
    assert_eq!(data.status, NotificationStatus::Archived as i32);
}

async fn update_status_refuses_bad_ids_and_other_users(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    let bob = env.user_token("bob", &[Right::All]).await;
    let id = create_ok(&env, about("alice", NotificationType::ApiKeyCreated)).await;

    let many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_invalid_field(
        update_status_as(&env, &alice, "alice", &many, NotificationStatus::Seen).await,
        "ids",
    );
    update_status_as(
        &env,
        &alice,
        "alice",
        &many[..1000],
        NotificationStatus::Seen,
    )
    .await
    .expect("1000 IDs are accepted");
    assert_invalid_field(
        update_status_as(&env, &alice, "alice", &[], NotificationStatus::Seen).await,
        "ids",
    );
    assert_invalid_field(
        update_status_as(
            &env,
            &alice,
            "alice",
            &[&id, "not-a-uuid"],
            NotificationStatus::Seen,
        )
        .await,
        "ids",
    );
    expect_code(
        update_status_as(&env, &bob, "alice", &[&id], NotificationStatus::Seen).await,
        Code::PermissionDenied,
    );
    let mut client = crate::support::client(&env);
    expect_code(
        client
            .update_status(tonic::Request::new(UpdateNotificationStatusRequest {
                receiver_ids: Some(ids("alice")),
                ids: vec![id.clone()],
                status: NotificationStatus::Seen as i32,
            }))
            .await,
        Code::Unauthenticated,
    );
    assert_invalid_field(
        client
            .update_status(roster_test_support::with_token(
                UpdateNotificationStatusRequest {
                    receiver_ids: Some(ids("alice")),
                    ids: vec![id.clone()],
                    status: 7,
                },
                &alice,
            ))
            .await,
        "status",
    );
    assert_eq!(
        receivers(&env, &id).await[0].status,
        NotificationStatus::Unseen as i32,
        "nothing refused changed anything"
    );
}
