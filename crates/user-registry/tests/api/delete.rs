//! UserRegistry.Delete, Restore and Purge: soft deletion, the restore
//! window, admin-only purge, the last-admin guard and their events.

use std::time::Duration;

use roster_proto::v1::{ListUsersRequest, Right, User};
use roster_test_support::{Backend, TestEnv, next_event, with_token};
use roster_user_registry::UserRegistryConfig;
use tonic::Code;

use crate::support::*;

async fn restore(env: &TestEnv, user_id: &str, token: &str) -> Result<(), tonic::Status> {
    registry(env)
        .restore(with_token(ids(user_id), token))
        .await
        .map(tonic::Response::into_inner)
}

async fn purge(env: &TestEnv, user_id: &str, token: &str) -> Result<(), tonic::Status> {
    registry(env)
        .purge(with_token(ids(user_id), token))
        .await
        .map(tonic::Response::into_inner)
}

fn deleted_only() -> ListUsersRequest {
    ListUsersRequest {
        deleted: true,
        ..Default::default()
    }
}

async fn deleting_soft_deletes_the_user(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let mut events = env.subscribe("user.>").await;
    let owner = key_of(&env, "alice", &[Right::UserDelete]).await;
    delete_user(&env, "alice", &owner).await.expect("delete");

    let event = next_event(&mut events, "user.delete", Duration::from_secs(10))
        .await
        .expect("user.delete published");
    let data = user_event_data(&event);
    let user = data.user.expect("the user");
    assert_eq!(user.ids.unwrap().user_id, "alice");
    assert!(user.deleted_at.is_some());
    assert!(user.password.is_empty());

    let stored = get_as_admin(&env, "alice").await;
    assert!(stored.deleted_at.is_some());
    // Bob and the admin who lists.
    assert_eq!(
        list_as_admin(&env, ListUsersRequest::default()).await,
        (vec!["bob".to_string(), ADMIN.to_string()], 2)
    );
    assert_eq!(
        list_as_admin(&env, deleted_only()).await,
        (vec!["alice".to_string()], 1)
    );
    // A deleted user cannot be deleted again.
    let admin = env.admin_token(ADMIN).await;
    let status = delete_user(&env, "alice", &admin).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn deleting_soft_deletes_the_user_on_postgres() {
    deleting_soft_deletes_the_user(Backend::Postgres).await;
}

#[tokio::test]
async fn deleting_soft_deletes_the_user_on_sqlite() {
    deleting_soft_deletes_the_user(Backend::Sqlite).await;
}

#[tokio::test]
async fn deleting_without_user_delete_is_refused() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let owner = key_of(
        &env,
        "alice",
        &[
            Right::UserInfo,
            Right::UserSettingsBasic,
            Right::UserSettingsApiKeys,
        ],
    )
    .await;
    let status = delete_user(&env, "alice", &owner).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let bob = key_of(&env, "bob", &[Right::UserAll]).await;
    let status = delete_user(&env, "alice", &bob).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = registry(&env).delete(ids("alice")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(get_as_admin(&env, "alice").await.deleted_at.is_none());
}

#[tokio::test]
async fn the_last_admin_cannot_be_deleted() {
    let env = TestEnv::start().await;
    let boss = create_admin_user(&env, "boss").await;
    let status = delete_user(&env, "boss", &boss).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Read with boss's own key: another admin would no longer leave boss
    // the last one.
    let stored = get_user(&env, "boss", Some(&boss), &[]).await.unwrap();
    assert!(stored.deleted_at.is_none());

    // With a second admin, either may go.
    let deputy = create_admin_user(&env, "deputy").await;
    delete_user(&env, "boss", &boss)
        .await
        .expect("delete one of two admins");
    let status = delete_user(&env, "deputy", &deputy).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn the_last_admin_cannot_be_purged() {
    let env = TestEnv::start().await;
    let boss = create_admin_user(&env, "boss").await;
    let status = purge(&env, "boss", &boss).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let stored = get_user(&env, "boss", Some(&boss), &[]).await.unwrap();
    assert!(stored.deleted_at.is_none());
}

async fn an_admin_restores_a_user_within_the_window(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let owner = key_of(&env, "alice", &[Right::UserAll]).await;
    delete_user(&env, "alice", &owner).await.expect("delete");
    let mut events = env.subscribe("user.>").await;
    let admin = env.admin_token(ADMIN).await;
    restore(&env, "alice", &admin).await.expect("restore");

    let event = next_event(&mut events, "user.restore", Duration::from_secs(10))
        .await
        .expect("user.restore published");
    let user = user_event_data(&event).user.expect("the user");
    assert_eq!(user.ids.unwrap().user_id, "alice");
    assert!(user.deleted_at.is_none());

    let again = get_user(&env, "alice", Some(&owner), &[])
        .await
        .expect("the owner sees the restored user");
    assert!(again.deleted_at.is_none());
    assert_eq!(again.primary_email_address, "alice@example.com");
    // Alice and the admin who lists.
    assert_eq!(
        list_as_admin(&env, ListUsersRequest::default()).await,
        (vec!["alice".to_string(), ADMIN.to_string()], 2)
    );
    assert_eq!(list_as_admin(&env, deleted_only()).await, (vec![], 0));
}

#[tokio::test]
async fn an_admin_restores_a_user_within_the_window_on_postgres() {
    an_admin_restores_a_user_within_the_window(Backend::Postgres).await;
}

#[tokio::test]
async fn an_admin_restores_a_user_within_the_window_on_sqlite() {
    an_admin_restores_a_user_within_the_window(Backend::Sqlite).await;
}

async fn restoring_after_the_window_is_refused(backend: Backend) {
    let env = TestEnv::start_with(
        backend,
        UserRegistryConfig {
            restore_window_secs: 0,
            ..Default::default()
        },
    )
    .await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alice", &admin).await.expect("delete");
    // Only to get past the zero-second window.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = restore(&env, "alice", &admin).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(get_as_admin(&env, "alice").await.deleted_at.is_some());
}

#[tokio::test]
async fn restoring_after_the_window_is_refused_on_postgres() {
    restoring_after_the_window_is_refused(Backend::Postgres).await;
}

#[tokio::test]
async fn restoring_after_the_window_is_refused_on_sqlite() {
    restoring_after_the_window_is_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn restoring_a_live_user_is_refused() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    let status = restore(&env, "alice", &admin).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = restore(&env, "ghost", &admin).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn restoring_when_the_email_was_taken_meanwhile_is_refused() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alice", &admin).await.expect("delete");
    registry(&env)
        .create(roster_proto::v1::CreateUserRequest {
            user: Some(User {
                primary_email_address: "Alice@Example.com".into(),
                ..new_user("bob")
            }),
            invitation_token: String::new(),
        })
        .await
        .expect("bob takes the address");
    let status = restore(&env, "alice", &admin).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(get_as_admin(&env, "alice").await.deleted_at.is_some());
    assert!(get_as_admin(&env, "bob").await.deleted_at.is_none());
}

#[tokio::test]
async fn restoring_without_user_delete_is_refused() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alice", &admin).await.expect("delete");
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let status = restore(&env, "alice", &bob).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(get_as_admin(&env, "alice").await.deleted_at.is_some());
}

/// A deleted user's keys are no credential at all, whatever rights they
/// carry: the owner cannot restore itself.
#[tokio::test]
async fn restoring_with_the_deleted_owners_own_key_is_unauthenticated() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    // Made while alice is live, first used once she is deleted.
    let without_delete = key_of(&env, "alice", &[Right::UserInfo, Right::UserSettingsBasic]).await;
    let with_delete = key_of(&env, "alice", &[Right::UserAll]).await;
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alice", &admin).await.expect("delete");
    for key in [&without_delete, &with_delete] {
        let status = restore(&env, "alice", key).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert!(get_as_admin(&env, "alice").await.deleted_at.is_some());
}

#[tokio::test]
async fn purge_is_for_admins_only() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let owner = key_of(&env, "alice", &[Right::UserAll]).await;
    let status = purge(&env, "alice", &owner).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = registry(&env).purge(ids("alice")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(get_as_admin(&env, "alice").await.ids.is_some());
}

async fn purging_frees_the_user_id(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alice", &admin).await.expect("delete");
    let mut events = env.subscribe("user.>").await;
    purge(&env, "alice", &admin).await.expect("purge");

    let event = next_event(&mut events, "user.purge", Duration::from_secs(10))
        .await
        .expect("user.purge published");
    let user = user_event_data(&event).user.expect("the user");
    assert_eq!(user.ids.unwrap().user_id, "alice");
    assert!(user.password.is_empty());

    let status = get_user(&env, "alice", Some(&admin), &[])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(list_as_admin(&env, deleted_only()).await, (vec![], 0));

    let again = register(&env, "alice").await;
    assert_eq!(again.ids.unwrap().user_id, "alice");
    assert!(get_as_admin(&env, "alice").await.deleted_at.is_none());
}

#[tokio::test]
async fn purging_frees_the_user_id_on_postgres() {
    purging_frees_the_user_id(Backend::Postgres).await;
}

#[tokio::test]
async fn purging_frees_the_user_id_on_sqlite() {
    purging_frees_the_user_id(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_live_user_can_be_purged_too() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    purge(&env, "alice", &admin).await.expect("purge");
    let status = get_user(&env, "alice", Some(&admin), &[])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn purging_an_unknown_user_is_not_found() {
    let env = TestEnv::start().await;
    let admin = env.admin_token(ADMIN).await;
    let status = purge(&env, "ghost", &admin).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = purge(&env, "Not_An_Id", &admin).await.unwrap_err();
    assert_invalid_field(&status, "user_id");
}
