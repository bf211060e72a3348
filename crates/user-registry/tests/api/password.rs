//! UpdatePassword and CreateTemporaryPassword: the unauthenticated password
//! methods, proven by the old or a temporary password and rate-limited.

use chrono::{DateTime, Utc};
use roster_core::ratelimit::RateLimitConfig;
use roster_proto::v1::{
    CreateTemporaryPasswordRequest, UpdateUserPasswordRequest, User, UserIdentifiers,
};
use roster_test_support::{Backend, TestEnv};
use roster_user_registry::UserRegistryConfig;
use tonic::{Code, Status};

use crate::support::*;

const NEW_PASSWORD: &str = "Battery-Staple-42";
const TEMPORARY_PASSWORD: &str = "Temporary-Pass-77";

fn time(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.expect("timestamp set");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("valid timestamp")
}

async fn update_password(
    env: &TestEnv,
    user_id: &str,
    old: &str,
    new: &str,
    revoke_all_access: bool,
) -> Result<(), Status> {
    registry(env)
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids(user_id)),
            new: new.into(),
            old: old.into(),
            revoke_all_access,
        })
        .await
        .map(|_| ())
}

async fn create_temporary_password(env: &TestEnv, user_id: &str) -> Result<(), Status> {
    registry(env)
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids(user_id)),
        })
        .await
        .map(|_| ())
}

/// Whether `password` is `user_id`'s password now. `user_id` must exist.
async fn password_works(env: &TestEnv, user_id: &str, password: &str) -> bool {
    match check_password(env, ids(user_id), password).await {
        Ok(checked) => {
            let user = checked.user.expect("a known user is answered with it");
            assert_eq!(user.ids.expect("user ids").user_id, user_id);
            checked.valid
        }
        Err(status) => panic!("unexpected check result: {status:?}"),
    }
}

/// Sets an admin temporary password on `user_id`.
async fn set_temporary_password(env: &TestEnv, user_id: &str, temporary: &str) -> User {
    update_as_admin(
        env,
        User {
            ids: Some(ids(user_id)),
            temporary_password: temporary.into(),
            ..Default::default()
        },
        &["temporary_password"],
    )
    .await
}

fn with_rate_limit(max_attempts: u32) -> UserRegistryConfig {
    UserRegistryConfig {
        rate_limit: RateLimitConfig {
            max_attempts,
            window_secs: 60,
        },
        ..Default::default()
    }
}

// ---- UpdatePassword -------------------------------------------------------

async fn updating_the_password_with_the_right_old_one_replaces_it(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    update_as_admin(
        &env,
        User {
            ids: Some(ids("alice")),
            require_password_update: true,
            ..Default::default()
        },
        &["require_password_update"],
    )
    .await;
    let before = get_as_admin(&env, "alice").await;
    assert!(before.require_password_update);
    let mut events = env.subscribe("user.>").await;

    update_password(&env, "alice", PASSWORD, NEW_PASSWORD, true)
        .await
        .expect("no token is needed: the old password is the credential");

    assert!(password_works(&env, "alice", NEW_PASSWORD).await);
    assert!(!password_works(&env, "alice", PASSWORD).await);
    let after = get_as_admin(&env, "alice").await;
    assert!(
        time(after.password_updated_at.as_ref()) > time(before.password_updated_at.as_ref()),
        "password_updated_at advances"
    );
    assert!(!after.require_password_update);
    assert!(after.password.is_empty());

    let event = next_event_where(&mut events, "user.update", WAIT, |e| {
        user_event_data(e)
            .changed_paths
            .contains(&"password".to_string())
    })
    .await
    .expect("user.update with the password path published");
    assert_eq!(event_user_ids(&event), ["alice"]);
    let data = user_event_data(&event);
    for path in ["password", "password_updated_at", "require_password_update"] {
        assert!(
            data.changed_paths.iter().any(|p| p == path),
            "{path} in {:?}",
            data.changed_paths
        );
    }
    assert!(data.revoke_all_access);
    let user = data.user.expect("user in the event");
    assert!(user.password.is_empty());
    assert!(user.temporary_password.is_empty());
    assert!(!user.require_password_update);
}

async fn a_password_change_does_not_ask_to_revoke_access_unless_requested(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;

    update_password(&env, "alice", PASSWORD, NEW_PASSWORD, false)
        .await
        .unwrap();

    let event = next_event_where(&mut events, "user.update", WAIT, |e| {
        user_event_data(e)
            .changed_paths
            .contains(&"password".to_string())
    })
    .await
    .expect("user.update published");
    assert!(!user_event_data(&event).revoke_all_access);
}

async fn a_wrong_old_password_is_unauthenticated_and_announced(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let before = get_as_admin(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;

    let status = update_password(&env, "alice", "Wrong-Password-1", NEW_PASSWORD, false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let event = next_event_where(&mut events, "user.update.incorrect_password", WAIT, |_| {
        true
    })
    .await
    .expect("user.update.incorrect_password published");
    assert_eq!(event_user_ids(&event), ["alice"]);
    assert!(password_works(&env, "alice", PASSWORD).await);
    assert!(!password_works(&env, "alice", NEW_PASSWORD).await);
    let after = get_as_admin(&env, "alice").await;
    assert_eq!(after.password_updated_at, before.password_updated_at);
    assert_eq!(after.updated_at, before.updated_at);
}

async fn updating_the_password_of_an_unknown_user_is_unauthenticated(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;

    let status = update_password(&env, "stranger", PASSWORD, NEW_PASSWORD, false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Events go out in commit order: once alice's failed attempt is seen,
    // an event about the unknown user would have come before it.
    let status = update_password(&env, "alice", "Wrong-Password-1", NEW_PASSWORD, false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let event = next_event_where(&mut events, "user.update.incorrect_password", WAIT, |_| {
        true
    })
    .await
    .expect("user.update.incorrect_password published for alice");
    assert_eq!(event_user_ids(&event), ["alice"]);
}

async fn a_new_password_equal_to_the_old_one_is_invalid(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let status = update_password(&env, "alice", PASSWORD, PASSWORD, false)
        .await
        .unwrap_err();
    assert_invalid_field(&status, "new");
    assert!(password_works(&env, "alice", PASSWORD).await);
}

async fn a_weak_new_password_is_invalid(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let before = get_as_admin(&env, "alice").await;
    for weak in [
        "",
        "Sh0rt-pass1",
        "QwertyUIOP123",
        "Alice-Is-9-and-more",
        "ALICE@example.com",
    ] {
        let status = update_password(&env, "alice", PASSWORD, weak, false)
            .await
            .unwrap_err();
        assert_invalid_field(&status, "new");
    }
    assert!(password_works(&env, "alice", PASSWORD).await);
    let after = get_as_admin(&env, "alice").await;
    assert_eq!(after.password_updated_at, before.password_updated_at);
}

async fn a_new_password_containing_the_email_is_invalid_only_for_the_owner(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    registry(&env)
        .create(roster_proto::v1::CreateUserRequest {
            user: Some(User {
                primary_email_address: "robert@example.org".into(),
                ..new_user("bob")
            }),
            invitation_token: String::new(),
        })
        .await
        .unwrap();
    let with_email = "Robert@Example.org-2026";
    // Someone without the old password learns nothing about the address.
    let stranger = update_password(&env, "bob", "Not-Bobs-Password", with_email, false)
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::Unauthenticated);
    let owner = update_password(&env, "bob", PASSWORD, with_email, false)
        .await
        .unwrap_err();
    assert_invalid_field(&owner, "new");
    assert!(password_works(&env, "bob", PASSWORD).await);
}

async fn a_missing_old_password_is_invalid(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let status = update_password(&env, "alice", "", NEW_PASSWORD, false)
        .await
        .unwrap_err();
    assert_invalid_field(&status, "old");
    assert!(password_works(&env, "alice", PASSWORD).await);
}

async fn an_admin_set_temporary_password_replaces_the_password_once(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let returned = set_temporary_password(&env, "alice", TEMPORARY_PASSWORD).await;
    assert!(returned.temporary_password.is_empty());
    let set = get_as_admin(&env, "alice").await;
    assert!(set.temporary_password.is_empty());
    assert!(set.temporary_password_created_at.is_some());
    assert!(
        time(set.temporary_password_expires_at.as_ref()) > Utc::now(),
        "the admin's temporary password is live"
    );
    let mut events = env.subscribe("user.>").await;

    update_password(&env, "alice", TEMPORARY_PASSWORD, NEW_PASSWORD, false)
        .await
        .expect("the temporary password proves the user");

    assert!(password_works(&env, "alice", NEW_PASSWORD).await);
    assert!(!password_works(&env, "alice", PASSWORD).await);
    let after = get_as_admin(&env, "alice").await;
    assert_eq!(after.temporary_password_created_at, None);
    assert_eq!(after.temporary_password_expires_at, None);
    let event = next_event_where(&mut events, "user.update", WAIT, |e| {
        user_event_data(e)
            .changed_paths
            .contains(&"password".to_string())
    })
    .await
    .expect("user.update published");
    let data = user_event_data(&event);
    assert!(
        data.changed_paths.iter().any(|p| p == "temporary_password"),
        "{:?}",
        data.changed_paths
    );

    // Used once, it is gone.
    let status = update_password(&env, "alice", TEMPORARY_PASSWORD, "Another-Pass-5", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(password_works(&env, "alice", NEW_PASSWORD).await);
}

async fn an_expired_temporary_password_is_unauthenticated(backend: Backend) {
    // A TTL of 0 makes the temporary password expire as it is set.
    let config = UserRegistryConfig {
        admin_temporary_password_ttl_secs: 0,
        ..Default::default()
    };
    let env = TestEnv::start_with(backend, config).await;
    register(&env, "alice").await;
    set_temporary_password(&env, "alice", TEMPORARY_PASSWORD).await;

    let status = update_password(&env, "alice", TEMPORARY_PASSWORD, NEW_PASSWORD, false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(password_works(&env, "alice", PASSWORD).await);
    assert!(!password_works(&env, "alice", NEW_PASSWORD).await);
}

async fn password_changes_are_rate_limited(backend: Backend) {
    let env = TestEnv::start_with(backend, with_rate_limit(3)).await;
    register(&env, "alice").await;
    for attempt in 1..=3 {
        let status = update_password(&env, "alice", "Wrong-Password-1", NEW_PASSWORD, false)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {attempt}");
    }

    let status = update_password(&env, "alice", PASSWORD, NEW_PASSWORD, false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(password_works(&env, "alice", PASSWORD).await);
    assert!(!password_works(&env, "alice", NEW_PASSWORD).await);
}

// ---- CreateTemporaryPassword ------------------------------------------------

async fn a_temporary_password_can_be_requested_without_credentials(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register_validated(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;
    let asked = Utc::now();

    create_temporary_password(&env, "alice")
        .await
        .expect("no token is needed");

    let user = get_as_admin(&env, "alice").await;
    assert!(
        user.temporary_password.is_empty(),
        "the secret never comes back"
    );
    let created = time(user.temporary_password_created_at.as_ref());
    let expires = time(user.temporary_password_expires_at.as_ref());
    assert!(
        (created - asked).num_seconds().abs() < 5,
        "created at {created}, asked at {asked}"
    );
    assert_eq!(expires - created, chrono::Duration::hours(1));
    assert!(password_works(&env, "alice", PASSWORD).await);

    let event = next_event_where(&mut events, "user.update", WAIT, |e| {
        user_event_data(e)
            .changed_paths
            .contains(&"temporary_password".to_string())
    })
    .await
    .expect("user.update published");
    assert_eq!(event_user_ids(&event), ["alice"]);
    let data = user_event_data(&event);
    assert!(
        data.changed_paths.iter().any(|p| p == "temporary_password"),
        "{:?}",
        data.changed_paths
    );
    let user = data.user.expect("user in the event");
    assert!(user.temporary_password.is_empty());
    assert!(user.password.is_empty());
}

async fn a_temporary_password_for_an_unknown_user_is_answered_alike_and_silently(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register_validated(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;

    create_temporary_password(&env, "stranger")
        .await
        .expect("the same answer as for an existing user");

    // Events go out in commit order: alice's comes after any about the stranger.
    create_temporary_password(&env, "alice").await.unwrap();
    let event = next_event_where(&mut events, "user.update", WAIT, |_| true)
        .await
        .expect("user.update published for alice");
    assert_eq!(event_user_ids(&event), ["alice"]);
}

async fn a_second_temporary_password_request_keeps_the_live_one(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register_validated(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;
    create_temporary_password(&env, "alice").await.unwrap();
    let first = get_as_admin(&env, "alice").await;

    create_temporary_password(&env, "alice")
        .await
        .expect("OK while one is live");

    let second = get_as_admin(&env, "alice").await;
    assert_eq!(
        second.temporary_password_expires_at,
        first.temporary_password_expires_at
    );
    assert_eq!(
        second.temporary_password_created_at,
        first.temporary_password_created_at
    );
    assert_eq!(second.updated_at, first.updated_at);

    // Only the first request announced a change: the next user.update after
    // it is the admin's rename below.
    let temporary = next_event_where(&mut events, "user.update", WAIT, |e| {
        !user_event_data(e)
            .changed_paths
            .contains(&"primary_email_address_validated_at".to_string())
    })
    .await
    .expect("first user.update");
    assert!(
        user_event_data(&temporary)
            .changed_paths
            .contains(&"temporary_password".to_string())
    );
    update_as_admin(
        &env,
        User {
            ids: Some(ids("alice")),
            name: "Alice Renamed".into(),
            ..Default::default()
        },
        &["name"],
    )
    .await;
    let next = next_event_where(&mut events, "user.update", WAIT, |_| true)
        .await
        .expect("the rename's user.update");
    assert_eq!(user_event_data(&next).changed_paths, ["name"]);
}

async fn a_temporary_password_request_with_a_bad_user_id_is_invalid(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    for bad in ["", "Not Valid!", "a"] {
        let status = create_temporary_password(&env, bad).await.unwrap_err();
        assert_invalid_field(&status, "user_ids.user_id");
    }
    let status = registry(&env)
        .create_temporary_password(CreateTemporaryPasswordRequest { user_ids: None })
        .await
        .unwrap_err();
    assert_invalid_field(&status, "user_ids.user_id");
    let status = registry(&env)
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(UserIdentifiers {
                user_id: String::new(),
                email: "alice@example.com".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_invalid_field(&status, "user_ids.user_id");
}

async fn temporary_password_requests_are_rate_limited(backend: Backend) {
    let env = TestEnv::start_with(backend, with_rate_limit(3)).await;
    register(&env, "alice").await;
    for attempt in 1..=3 {
        create_temporary_password(&env, "alice")
            .await
            .unwrap_or_else(|s| panic!("attempt {attempt}: {s:?}"));
    }
    let status = create_temporary_password(&env, "alice").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // The client address is limited too, whichever user it asks about.
    let status = create_temporary_password(&env, "stranger")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

on_both_backends!(
    updating_the_password_with_the_right_old_one_replaces_it,
    a_new_password_containing_the_email_is_invalid_only_for_the_owner,
    a_password_change_does_not_ask_to_revoke_access_unless_requested,
    a_wrong_old_password_is_unauthenticated_and_announced,
    updating_the_password_of_an_unknown_user_is_unauthenticated,
    a_new_password_equal_to_the_old_one_is_invalid,
    a_weak_new_password_is_invalid,
    a_missing_old_password_is_invalid,
    an_admin_set_temporary_password_replaces_the_password_once,
    an_expired_temporary_password_is_unauthenticated,
    password_changes_are_rate_limited,
    a_temporary_password_can_be_requested_without_credentials,
    a_temporary_password_for_an_unknown_user_is_answered_alike_and_silently,
    a_second_temporary_password_request_keeps_the_live_one,
    a_temporary_password_request_with_a_bad_user_id_is_invalid,
    temporary_password_requests_are_rate_limited,
);

/// A password reset goes only to a proven address: a profile key that set
/// the address (or a typo) must not receive the account.
#[tokio::test]
async fn no_temporary_password_goes_to_an_address_never_validated() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    create_temporary_password(&env, "alice")
        .await
        .expect("the answer an unknown user gets");
    let user = get_as_admin(&env, "alice").await;
    assert_eq!(user.temporary_password_created_at, None, "nothing was made");
}
