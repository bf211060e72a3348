//! UserCredentials.CheckPassword: the internal password check other
//! services make with the cluster key. An unknown or deleted user is
//! NOT_FOUND; a known one is answered with its user (without secrets) and
//! whether the password is right.

use roster_core::auth::CLUSTER_KEY_HEADER;
use roster_proto::v1::user_credentials_client::UserCredentialsClient;
use roster_proto::v1::{
    CheckPasswordRequest, CreateUserRequest, Right, State, User, UserIdentifiers,
};
use roster_test_support::{Backend, TestEnv, with_token};
use tonic::Code;

use crate::support::*;

fn by_email(email: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: String::new(),
        email: email.into(),
    }
}

fn request(user_ids: UserIdentifiers, password: &str) -> CheckPasswordRequest {
    CheckPasswordRequest {
        user_ids: Some(user_ids),
        password: password.into(),
        client_key: String::new(),
    }
}

/// Asserts that `user` carries what a login needs and nothing secret or
/// beyond it.
#[track_caller]
fn assert_login_view(user: &User, user_id: &str) {
    assert_eq!(user.ids.as_ref().unwrap().user_id, user_id);
    assert!(user.password.is_empty());
    assert!(user.temporary_password.is_empty());
    assert!(user.temporary_password_created_at.is_none());
    assert!(user.name.is_empty(), "only what a login needs comes back");
    assert!(user.attributes.is_empty());
}

async fn the_cluster_checks_a_password_by_user_id(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut carol = new_user("carol");
    carol.admin = true;
    carol.state = State::Flagged as i32;
    carol.require_password_update = true;
    carol.attributes.insert("team".into(), "ops".into());
    registry(&env)
        .create(with_token(
            CreateUserRequest {
                user: Some(carol),
                invitation_token: String::new(),
            },
            &env.admin_token("root-admin").await,
        ))
        .await
        .expect("admin creates carol");

    let checked = check_password(&env, ids("carol"), PASSWORD)
        .await
        .expect("right password");
    assert!(checked.valid, "the password is right");
    let user = checked.user.expect("user");

    assert_login_view(&user, "carol");
    assert!(user.admin);
    assert_eq!(user.state, State::Flagged as i32);
    assert!(user.require_password_update);
    assert_eq!(user.primary_email_address, "carol@example.com");
}

async fn the_cluster_checks_a_password_by_email_in_any_case(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;

    for email in ["alice@example.com", "ALICE@Example.COM"] {
        let checked = check_password(&env, by_email(email), PASSWORD)
            .await
            .unwrap_or_else(|s| panic!("{email}: {s:?}"));
        assert!(checked.valid, "{email}: the password is right");
        let user = checked.user.expect("user");
        assert_login_view(&user, "alice");
        assert!(!user.admin);
        assert_eq!(user.state, State::Approved as i32);
    }
}

async fn a_wrong_password_is_answered_with_the_user_and_valid_false(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    for (user_ids, password) in [
        (ids("alice"), "Wrong-Password-1"),
        (by_email("alice@example.com"), "Wrong-Password-1"),
        (ids("alice"), ""),
    ] {
        let what = format!("{user_ids:?} with {password:?}");
        let checked = check_password(&env, user_ids, password)
            .await
            .unwrap_or_else(|s| panic!("{what}: {s:?}"));
        assert!(!checked.valid, "{what}: the password is wrong");
        let user = checked.user.unwrap_or_else(|| panic!("{what}: user"));
        assert_eq!(user.ids.unwrap().user_id, "alice", "{what}");
    }
}

/// The answer to a wrong password names the user, so the calling service
/// can count failures per user, but carries no secret.
async fn a_wrong_password_answer_carries_the_user_but_no_secret(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut carol = new_user("carol");
    carol.admin = true;
    carol.state = State::Flagged as i32;
    carol.require_password_update = true;
    carol.attributes.insert("team".into(), "ops".into());
    registry(&env)
        .create(with_token(
            CreateUserRequest {
                user: Some(carol),
                invitation_token: String::new(),
            },
            &env.admin_token("root-admin").await,
        ))
        .await
        .expect("admin creates carol");
    update_as_admin(
        &env,
        User {
            ids: Some(ids("carol")),
            temporary_password: "Temporary-Pass-77".into(),
            ..Default::default()
        },
        &["temporary_password"],
    )
    .await;

    for user_ids in [ids("carol"), by_email("carol@example.com")] {
        let checked = check_password(&env, user_ids, "Wrong-Password-1")
            .await
            .expect("a known user is answered");
        assert!(!checked.valid);
        let user = checked.user.expect("user");
        assert_login_view(&user, "carol");
        assert!(user.password.is_empty(), "no password hash");
        assert!(user.admin);
        assert_eq!(user.state, State::Flagged as i32);
        assert!(user.require_password_update);
        assert_eq!(user.primary_email_address, "carol@example.com");
    }
}

async fn an_unknown_user_is_not_found(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    for user_ids in [ids("stranger"), by_email("stranger@example.com")] {
        for password in [PASSWORD, "Wrong-Password-1"] {
            let status = check_password(&env, user_ids.clone(), password)
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{user_ids:?}");
        }
    }
}

async fn a_check_without_a_user_id_or_email_is_invalid(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let status = check_password(&env, by_email(""), PASSWORD)
        .await
        .unwrap_err();
    assert_invalid_field(&status, "user_ids");
}

/// Anonymous callers are unauthenticated; every user credential, an
/// admin's included, is denied.
async fn callers_without_the_cluster_key_are_refused(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let mut client = UserCredentialsClient::new(env.channel());

    let anonymous = client
        .check_password(request(ids("alice"), PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let own_token = key_of(&env, "alice", &[Right::UserAll]).await;
    let as_user = client
        .check_password(with_token(request(ids("alice"), PASSWORD), &own_token))
        .await
        .unwrap_err();
    assert_eq!(as_user.code(), Code::PermissionDenied);

    let admin_token = env.admin_token("root-admin").await;
    let as_admin = client
        .check_password(with_token(request(ids("alice"), PASSWORD), &admin_token))
        .await
        .unwrap_err();
    assert_eq!(as_admin.code(), Code::PermissionDenied);
}

async fn a_wrong_cluster_key_is_unauthenticated(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let mut call = tonic::Request::new(request(ids("alice"), PASSWORD));
    call.metadata_mut()
        .insert(CLUSTER_KEY_HEADER, "not-the-cluster-key".parse().unwrap());

    let status = UserCredentialsClient::new(env.channel())
        .check_password(call)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn deleted_users_are_not_found(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    registry(&env)
        .delete(with_token(
            ids("alice"),
            &env.admin_token("root-admin").await,
        ))
        .await
        .expect("admin deletes alice");

    for user_ids in [ids("alice"), by_email("alice@example.com")] {
        let status = check_password(&env, user_ids.clone(), PASSWORD)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{user_ids:?}");
    }
}

on_both_backends!(
    the_cluster_checks_a_password_by_user_id,
    the_cluster_checks_a_password_by_email_in_any_case,
    a_wrong_password_is_answered_with_the_user_and_valid_false,
    a_wrong_password_answer_carries_the_user_but_no_secret,
    an_unknown_user_is_not_found,
    a_check_without_a_user_id_or_email_is_invalid,
    callers_without_the_cluster_key_are_refused,
    a_wrong_cluster_key_is_unauthenticated,
    deleted_users_are_not_found,
);

/// A password hash imported from The Things Stack (PBKDF2) verifies, and
/// the first successful check replaces it with Argon2id, silently. A wrong
/// password upgrades nothing.
async fn an_imported_pbkdf2_hash_verifies_and_is_upgraded(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let store = env.user_registry.store();
    let mut user = store.get_user("alice").await.unwrap().unwrap();
    let before = user.updated_at;
    // PBKDF2-SHA256, 1000 iterations, of the test password.
    const PBKDF2_HASH: &str =
        "PBKDF2$sha256$1000$0123456789abcdef$Rq8B2wjG49xjAQEx7c6lK5E-A_BmghXvqkuo5qL3O3c";
    user.password_hash = PBKDF2_HASH.into();
    store.update_user(&user, before, false, &[]).await.unwrap();

    let wrong = check_password(&env, ids("alice"), "Wrong-Horse-9")
        .await
        .expect("a known user is answered");
    assert!(!wrong.valid, "a wrong password does not verify");
    let stored = store.get_user("alice").await.unwrap().unwrap();
    assert_eq!(
        stored.password_hash, PBKDF2_HASH,
        "a wrong password upgrades nothing"
    );

    let checked = check_password(&env, ids("alice"), PASSWORD)
        .await
        .expect("a known user is answered");
    assert!(checked.valid, "the imported hash verifies");
    assert_eq!(checked.user.unwrap().ids.unwrap().user_id, "alice");
    let stored = store.get_user("alice").await.unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"), "upgraded");
    assert_eq!(stored.updated_at, before, "only the stored form changed");
    assert!(
        check_password(&env, ids("alice"), PASSWORD)
            .await
            .expect("a known user is answered")
            .valid,
        "the upgraded hash verifies"
    );
    assert!(
        !check_password(&env, ids("alice"), "Wrong-Horse-9")
            .await
            .expect("a known user is answered")
            .valid
    );
}

on_both_backends!(an_imported_pbkdf2_hash_verifies_and_is_upgraded);
