//! List: status filter, order, pages, the total, and who may list.

use roster_proto::v1::{NotificationStatus, NotificationType, Right};
use roster_test_support::Backend;
use tonic::Code;

use crate::support::{
    about, assert_invalid_field, create_ok, expect_code, list_as, on_both_backends, total_count,
    update_status_as,
};

on_both_backends!(
    list_filters_by_status_newest_first_pages_and_counts,
    list_needs_the_notifications_right_on_the_receiver,
);

async fn list_filters_by_status_newest_first_pages_and_counts(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    let alice = env
        .user_token("alice", &[Right::UserNotificationsRead])
        .await;
    env.ensure_user("bob", false).await;
    let mut made = Vec::new();
    for kind in [
        NotificationType::ApiKeyCreated,
        NotificationType::PasswordChanged,
        NotificationType::AccountLocked,
    ] {
        made.push(create_ok(&env, about("alice", kind)).await);
    }
    // Someone else's notification is not in alice's list.
    create_ok(&env, about("bob", NotificationType::ApiKeyCreated)).await;
    update_status_as(&env, &alice, "alice", &[&made[0]], NotificationStatus::Seen)
        .await
        .unwrap();

    let all = list_as(&env, Some(&alice), "alice", &[], 0, 0)
        .await
        .unwrap();
    assert_eq!(total_count(&all), 3);
    let listed: Vec<String> = all
        .into_inner()
        .notifications
        .into_iter()
        .map(|n| n.id)
        .collect();
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);

    let unseen = list_as(
        &env,
        Some(&alice),
        "alice",
        &[NotificationStatus::Unseen],
        0,
        0,
    )
    .await
    .unwrap();
    assert_eq!(total_count(&unseen), 2);
    let unseen = unseen.into_inner().notifications;
    assert_eq!(
        unseen.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        [made[2].as_str(), made[1].as_str()]
    );
    assert!(unseen.iter().all(|n| n.status_updated_at.is_none()));

    let seen = list_as(
        &env,
        Some(&alice),
        "alice",
        &[NotificationStatus::Seen, NotificationStatus::Archived],
        0,
        0,
    )
    .await
    .unwrap()
    .into_inner()
    .notifications;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, made[0]);
    assert_eq!(seen[0].status, NotificationStatus::Seen as i32);
    assert!(seen[0].status_updated_at.is_some());
    assert_eq!(
        seen[0].notification_type,
        NotificationType::ApiKeyCreated as i32
    );

    let page_2 = list_as(&env, Some(&alice), "alice", &[], 2, 2)
        .await
        .unwrap();
    assert_eq!(total_count(&page_2), 3);
    let page_2 = page_2.into_inner().notifications;
    assert_eq!(page_2.len(), 1);
    assert_eq!(page_2[0].id, made[0]);
    let beyond = list_as(&env, Some(&alice), "alice", &[], 2, 3)
        .await
        .unwrap();
    assert_eq!(total_count(&beyond), 3);
    assert!(beyond.into_inner().notifications.is_empty());

    assert_invalid_field(
        list_as(&env, Some(&alice), "alice", &[], 1001, 0).await,
        "limit",
    );
}

async fn list_needs_the_notifications_right_on_the_receiver(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    create_ok(&env, about("alice", NotificationType::ApiKeyCreated)).await;
    let bob = env.user_token("bob", &[Right::All]).await;
    let alice_without_right = env.user_token("alice", &[Right::UserInfo]).await;
    let admin = env.admin_token("root-admin").await;

    expect_code(
        list_as(&env, Some(&bob), "alice", &[], 0, 0).await,
        Code::PermissionDenied,
    );
    expect_code(
        list_as(&env, Some(&alice_without_right), "alice", &[], 0, 0).await,
        Code::PermissionDenied,
    );
    expect_code(
        list_as(&env, None, "alice", &[], 0, 0).await,
        Code::Unauthenticated,
    );
    expect_code(
        list_as(&env, Some("rak.nope.nope"), "alice", &[], 0, 0).await,
        Code::Unauthenticated,
    );
    let by_admin = list_as(&env, Some(&admin), "alice", &[], 0, 0)
        .await
        .expect("an admin lists anyone's notifications");
    assert_eq!(total_count(&by_admin), 1);
    // Bob's own list is his (and empty).
    let own = list_as(&env, Some(&bob), "bob", &[], 0, 0).await.unwrap();
    assert_eq!(total_count(&own), 0);
}
