//! UserRegistry.Get: the full view for callers with RIGHT_USER_INFO and
//! admins, the public view for everyone else authenticated, field masks,
//! unknown and soft-deleted users.

use std::collections::HashMap;

use roster_proto::v1::{Picture, Right, State, User};
use roster_test_support::{Backend, TestEnv, with_token};
use tonic::Code;

use crate::support::*;

/// Registers alice with private and public fields set.
async fn register_alice(env: &TestEnv) {
    create_as_admin(
        env,
        User {
            description: "Alice's public description".into(),
            attributes: HashMap::from([("team".to_string(), "platform".to_string())]),
            state: State::Approved as i32,
            profile_picture: Some(Picture {
                embedded: None,
                sizes: HashMap::from([(64, "https://img.example.com/alice.png".to_string())]),
            }),
            ..new_user("alice")
        },
    )
    .await
    .expect("create alice");
}

/// Asserts every private field is present.
#[track_caller]
fn assert_full(user: &User) {
    assert_eq!(user.ids.as_ref().unwrap().user_id, "alice");
    assert_eq!(user.name, "User alice");
    assert_eq!(user.description, "Alice's public description");
    assert_eq!(user.primary_email_address, "alice@example.com");
    assert_eq!(
        user.attributes.get("team").map(String::as_str),
        Some("platform")
    );
    assert!(!user.contact_info.is_empty());
    assert!(user.password_updated_at.is_some());
    assert!(user.email_notification_preferences.is_some());
    assert_eq!(user.state, State::Approved as i32);
    assert!(user.profile_picture.is_some());
    assert!(user.created_at.is_some() && user.updated_at.is_some());
    assert!(user.password.is_empty());
    assert!(user.temporary_password.is_empty());
}

async fn the_owner_with_user_info_reads_every_field(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register_alice(&env).await;
    let token = key_of(&env, "alice", &[Right::UserInfo]).await;
    let user = get_user(&env, "alice", Some(&token), &[])
        .await
        .expect("get own user");
    assert_full(&user);
}

#[tokio::test]
async fn the_owner_with_user_info_reads_every_field_on_postgres() {
    the_owner_with_user_info_reads_every_field(Backend::Postgres).await;
}

#[tokio::test]
async fn the_owner_with_user_info_reads_every_field_on_sqlite() {
    the_owner_with_user_info_reads_every_field(Backend::Sqlite).await;
}

#[tokio::test]
async fn another_user_without_rights_reads_only_public_fields() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let user = get_user(&env, "alice", Some(&bob), &[])
        .await
        .expect("public view");
    // Public: ids, timestamps, name, description, state, admin, picture.
    assert_eq!(user.ids.unwrap().user_id, "alice");
    assert!(user.created_at.is_some() && user.updated_at.is_some());
    assert_eq!(user.name, "User alice");
    assert_eq!(user.description, "Alice's public description");
    assert_eq!(user.state, State::Approved as i32);
    assert!(!user.admin);
    assert_eq!(
        user.profile_picture
            .unwrap()
            .sizes
            .get(&64)
            .map(String::as_str),
        Some("https://img.example.com/alice.png")
    );
    // Private: nothing else.
    assert!(user.primary_email_address.is_empty());
    assert!(user.attributes.is_empty());
    assert!(user.contact_info.is_empty());
    assert!(user.primary_email_address_validated_at.is_none());
    assert!(user.password_updated_at.is_none());
    assert!(user.email_notification_preferences.is_none());
    assert!(user.universal_rights.is_none());
}

#[tokio::test]
async fn a_field_mask_cannot_reveal_private_fields_to_other_users() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let user = get_user(
        &env,
        "alice",
        Some(&bob),
        &["primary_email_address", "attributes", "name"],
    )
    .await
    .expect("public view");
    assert_eq!(user.name, "User alice");
    assert!(user.primary_email_address.is_empty());
    assert!(user.attributes.is_empty());
}

#[tokio::test]
async fn the_owner_without_user_info_reads_only_public_fields() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let token = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let user = get_user(&env, "alice", Some(&token), &[])
        .await
        .expect("public view");
    assert_eq!(user.name, "User alice");
    assert!(user.primary_email_address.is_empty());
    assert!(user.attributes.is_empty());
}

#[tokio::test]
async fn an_admin_reads_every_field() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let admin = env.admin_token(ADMIN).await;
    let user = get_user(&env, "alice", Some(&admin), &[])
        .await
        .expect("admin view");
    assert_full(&user);
}

#[tokio::test]
async fn a_field_mask_selects_the_returned_fields() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let token = key_of(&env, "alice", &[Right::UserInfo]).await;
    let user = get_user(&env, "alice", Some(&token), &["name", "attributes"])
        .await
        .expect("masked get");
    assert_eq!(user.name, "User alice");
    assert_eq!(user.attributes.len(), 1);
    assert!(user.description.is_empty());
    assert!(user.primary_email_address.is_empty());
    assert!(user.profile_picture.is_none());
    assert!(user.password_updated_at.is_none());
    // ids and timestamps always come back.
    assert_eq!(user.ids.unwrap().user_id, "alice");
    assert!(user.created_at.is_some());
    assert!(user.updated_at.is_some());

    // A sub-path selects its top-level field.
    let user = get_user(&env, "alice", Some(&token), &["profile_picture.sizes"])
        .await
        .expect("sub-path mask");
    assert!(user.profile_picture.is_some());
    assert!(user.name.is_empty());
}

#[tokio::test]
async fn write_only_paths_in_the_mask_are_refused() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let token = key_of(&env, "alice", &[Right::UserInfo]).await;
    let admin = env.admin_token(ADMIN).await;
    for path in ["password", "temporary_password"] {
        for caller in [&token, &admin] {
            let status = get_user(&env, "alice", Some(caller), &["name", path])
                .await
                .unwrap_err();
            assert_invalid_field(&status, "field_mask");
        }
    }
}

#[tokio::test]
async fn an_unknown_mask_path_is_refused() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let token = key_of(&env, "alice", &[Right::UserInfo]).await;
    for path in ["nonsense", "password_hash", ""] {
        let status = get_user(&env, "alice", Some(&token), &[path])
            .await
            .unwrap_err();
        assert_invalid_field(&status, "field_mask");
    }
}

#[tokio::test]
async fn get_without_credentials_is_unauthenticated() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let status = get_user(&env, "alice", None, &[]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // An unknown token is no better.
    let status = get_user(&env, "alice", Some("made-up-token"), &[])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn an_unknown_user_is_permission_denied_for_non_admins_and_not_found_for_admins() {
    let env = TestEnv::start().await;
    register_alice(&env).await;
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let status = get_user(&env, "ghost", Some(&bob), &[]).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let admin = env.admin_token(ADMIN).await;
    let status = get_user(&env, "ghost", Some(&admin), &[])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// A key "for" a user that does not exist (any more) is no credential at
/// all: the user gets the key while it exists and is then purged.
#[tokio::test]
async fn the_key_of_a_purged_user_is_unauthenticated() {
    let env = TestEnv::start().await;
    let ghost = env.user_token("ghost", &[Right::UserAll]).await;
    let admin = env.admin_token(ADMIN).await;
    registry(&env)
        .purge(with_token(ids("ghost"), &admin))
        .await
        .expect("purge ghost");
    let status = get_user(&env, "ghost", Some(&ghost), &[])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn a_soft_deleted_user_is_hidden_from_non_admins_and_shown_to_admins(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register_alice(&env).await;
    let owner = key_of(&env, "alice", &[Right::UserAll]).await;
    delete_user(&env, "alice", &owner).await.expect("delete");

    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let status = get_user(&env, "alice", Some(&bob), &[]).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let admin = env.admin_token(ADMIN).await;
    let user = get_user(&env, "alice", Some(&admin), &[])
        .await
        .expect("admins see deleted users");
    assert!(user.deleted_at.is_some());
    assert_eq!(user.primary_email_address, "alice@example.com");
}

#[tokio::test]
async fn a_soft_deleted_user_is_hidden_from_non_admins_and_shown_to_admins_on_postgres() {
    a_soft_deleted_user_is_hidden_from_non_admins_and_shown_to_admins(Backend::Postgres).await;
}

#[tokio::test]
async fn a_soft_deleted_user_is_hidden_from_non_admins_and_shown_to_admins_on_sqlite() {
    a_soft_deleted_user_is_hidden_from_non_admins_and_shown_to_admins(Backend::Sqlite).await;
}

/// The owner's own keys stop working with the delete, at once in the
/// process that deleted: `UNAUTHENTICATED`, not a `PERMISSION_DENIED` on
/// its own account.
async fn a_soft_deleted_users_own_keys_are_unauthenticated(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register_alice(&env).await;
    // The deleting key was resolved (and cached) by the delete itself.
    let owner = key_of(&env, "alice", &[Right::UserAll]).await;
    let other = key_of(&env, "alice", &[Right::UserAll]).await;
    delete_user(&env, "alice", &owner).await.expect("delete");

    for key in [&other, &owner] {
        let status = get_user(&env, "alice", Some(key), &[]).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}

on_both_backends!(a_soft_deleted_users_own_keys_are_unauthenticated);

#[tokio::test]
async fn an_invalid_user_id_is_refused() {
    let env = TestEnv::start().await;
    let admin = env.admin_token(ADMIN).await;
    for bad in ["", "A", "no_underscores", "-x"] {
        let status = get_user(&env, bad, Some(&admin), &[]).await.unwrap_err();
        assert_invalid_field(&status, "user_ids.user_id");
    }
}
