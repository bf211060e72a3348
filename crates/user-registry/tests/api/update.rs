//! UserRegistry.Update: basic settings by the owner, field mask semantics,
//! admin-only paths, email changes and their validation, the last-admin
//! guard, rights, the `user.update` event and admin temporary passwords.

use std::collections::HashMap;
use std::time::Duration;

use roster_proto::v1::{
    EmailNotificationPreferences, NotificationType, Picture, Right, Rights, State, User,
};
use roster_test_support::{Backend, TestEnv, next_event, with_token};
use tonic::Code;

use crate::support::*;

/// A `User` carrying only `user_id`, to which a test adds the new values.
fn change(user_id: &str) -> User {
    User {
        ids: Some(ids(user_id)),
        ..Default::default()
    }
}

/// `user_id` read with `token`, a key of an admin the test made: unlike
/// [`get_as_admin`], it makes no further admin.
async fn get_with(env: &TestEnv, user_id: &str, token: &str) -> User {
    get_user(env, user_id, Some(token), &[])
        .await
        .expect("get with the admin's key")
}

fn timestamp_micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

#[tokio::test]
async fn the_owner_updates_basic_settings() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let token = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let updated = update_user(
        &env,
        &token,
        User {
            name: "Alice Liddell".into(),
            description: "Through the looking glass".into(),
            attributes: HashMap::from([("city".to_string(), "Oxford".to_string())]),
            profile_picture: Some(Picture {
                embedded: None,
                sizes: HashMap::from([(128, "https://img.example.com/a.png".to_string())]),
            }),
            email_notification_preferences: Some(EmailNotificationPreferences {
                types: vec![NotificationType::PasswordChanged as i32],
            }),
            ..change("alice")
        },
        &[
            "name",
            "description",
            "attributes",
            "profile_picture",
            "email_notification_preferences",
        ],
    )
    .await
    .expect("update");
    assert!(updated.password.is_empty());

    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(updated.name, stored.name);
    assert_eq!(stored.name, "Alice Liddell");
    assert_eq!(stored.description, "Through the looking glass");
    assert_eq!(
        stored.attributes,
        HashMap::from([("city".to_string(), "Oxford".to_string())])
    );
    assert_eq!(
        stored.profile_picture.unwrap().sizes,
        HashMap::from([(128, "https://img.example.com/a.png".to_string())])
    );
    assert_eq!(
        stored.email_notification_preferences.unwrap().types,
        vec![NotificationType::PasswordChanged as i32]
    );
    // Untouched fields stay.
    assert_eq!(stored.primary_email_address, "alice@example.com");
    assert_eq!(stored.state, State::Approved as i32);

    // Clearing works too.
    update_user(
        &env,
        &token,
        change("alice"),
        &["attributes", "profile_picture", "description"],
    )
    .await
    .expect("clear");
    let stored = get_as_admin(&env, "alice").await;
    assert!(stored.attributes.is_empty());
    assert!(stored.profile_picture.is_none());
    assert!(stored.description.is_empty());
    assert_eq!(stored.name, "Alice Liddell");
}

#[tokio::test]
async fn invalid_values_are_refused_naming_the_field() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let token = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let status = update_user(
        &env,
        &token,
        User {
            name: "n".repeat(51),
            ..change("alice")
        },
        &["name"],
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "user.name");
    let status = update_user(
        &env,
        &token,
        User {
            primary_email_address: "not-an-email".into(),
            ..change("alice")
        },
        &["primary_email_address"],
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "user.primary_email_address");
    let status = update_user(&env, &token, change("Alice"), &["name"])
        .await
        .unwrap_err();
    assert_invalid_field(&status, "user.ids.user_id");
    assert_eq!(get_as_admin(&env, "alice").await.name, "User alice");
}

#[tokio::test]
async fn only_the_masked_fields_change() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let token = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    update_user(
        &env,
        &token,
        User {
            name: "New name".into(),
            description: "New description".into(),
            primary_email_address: "new-alice@example.com".into(),
            attributes: HashMap::from([("k1".to_string(), "v".to_string())]),
            ..change("alice")
        },
        &["name"],
    )
    .await
    .expect("update");
    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(stored.name, "New name");
    assert!(stored.description.is_empty());
    assert_eq!(stored.primary_email_address, "alice@example.com");
    assert!(stored.attributes.is_empty());
}

#[tokio::test]
async fn an_empty_mask_changes_only_updated_at() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let before = get_as_admin(&env, "alice").await;
    let token = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    update_user(
        &env,
        &token,
        User {
            name: "Ignored".into(),
            description: "Ignored".into(),
            ..change("alice")
        },
        &[],
    )
    .await
    .expect("update with an empty mask");
    let after = get_as_admin(&env, "alice").await;
    assert!(
        timestamp_micros(after.updated_at.as_ref().unwrap())
            > timestamp_micros(before.updated_at.as_ref().unwrap())
    );
    assert_eq!(
        User {
            updated_at: None,
            ..after
        },
        User {
            updated_at: None,
            ..before
        }
    );
}

#[tokio::test]
async fn password_paths_in_the_mask_are_refused() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let owner = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let admin = env.admin_token(ADMIN).await;
    let before = get_as_admin(&env, "alice").await;
    for path in ["password", "password_updated_at"] {
        for token in [&owner, &admin] {
            let status = update_user(
                &env,
                token,
                User {
                    password: "Another-Pass-42".into(),
                    password_updated_at: Some(prost_types::Timestamp::default()),
                    ..change("alice")
                },
                &[path],
            )
            .await
            .unwrap_err();
            assert_invalid_field(&status, "field_mask");
        }
    }
    let status = update_user(&env, &owner, change("alice"), &["nonsense"])
        .await
        .unwrap_err();
    assert_invalid_field(&status, "field_mask");
    assert_eq!(get_as_admin(&env, "alice").await, before);
}

#[tokio::test]
async fn admin_only_paths_are_refused_to_non_admins() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let owner = key_of(&env, "alice", &[Right::UserAll]).await;
    let before = get_as_admin(&env, "alice").await;
    let wanted = User {
        state: State::Flagged as i32,
        state_description: "self-flagged".into(),
        admin: true,
        require_password_update: true,
        primary_email_address_validated_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        temporary_password: "Temporary-Pass-7".into(),
        universal_rights: Some(Rights {
            rights: vec![Right::UserList as i32],
        }),
        ..change("alice")
    };
    for path in [
        "state",
        "state_description",
        "admin",
        "require_password_update",
        "primary_email_address_validated_at",
        "temporary_password",
        "universal_rights",
    ] {
        let status = update_user(&env, &owner, wanted.clone(), &["name", path])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{path}");
    }
    assert_eq!(get_as_admin(&env, "alice").await, before);
}

#[tokio::test]
async fn an_admin_setting_the_state_clears_the_state_description_unless_given() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    let updated = update_user(
        &env,
        &admin,
        User {
            state: State::Suspended as i32,
            state_description: "spam".into(),
            ..change("alice")
        },
        &["state", "state_description"],
    )
    .await
    .expect("suspend with a reason");
    assert_eq!(updated.state, State::Suspended as i32);
    assert_eq!(updated.state_description, "spam");

    update_user(
        &env,
        &admin,
        User {
            state: State::Approved as i32,
            state_description: "not in the mask".into(),
            ..change("alice")
        },
        &["state"],
    )
    .await
    .expect("approve without a reason");
    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(stored.state, State::Approved as i32);
    assert!(stored.state_description.is_empty());

    let status = update_user(
        &env,
        &admin,
        User {
            state: 42,
            ..change("alice")
        },
        &["state"],
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "user.state");
}

/// Registers alice with a validated email (set by an admin).
async fn register_validated_alice(env: &TestEnv) -> prost_types::Timestamp {
    let validated = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    };
    create_as_admin(
        env,
        User {
            state: State::Approved as i32,
            primary_email_address_validated_at: Some(validated),
            ..new_user("alice")
        },
    )
    .await
    .expect("create alice");
    validated
}

#[tokio::test]
async fn a_non_admin_email_change_clears_its_validation() {
    let env = TestEnv::start().await;
    register_validated_alice(&env).await;
    let owner = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let updated = update_user(
        &env,
        &owner,
        User {
            primary_email_address: "alice@example.org".into(),
            ..change("alice")
        },
        &["primary_email_address"],
    )
    .await
    .expect("change email");
    assert_eq!(updated.primary_email_address, "alice@example.org");
    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(stored.primary_email_address, "alice@example.org");
    assert!(stored.primary_email_address_validated_at.is_none());
}

#[tokio::test]
async fn an_admin_email_change_keeps_the_validation() {
    let env = TestEnv::start().await;
    let validated = register_validated_alice(&env).await;
    let admin = env.admin_token(ADMIN).await;
    update_user(
        &env,
        &admin,
        User {
            primary_email_address: "alice@example.org".into(),
            ..change("alice")
        },
        &["primary_email_address"],
    )
    .await
    .expect("change email");
    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(stored.primary_email_address, "alice@example.org");
    assert_eq!(stored.primary_email_address_validated_at, Some(validated));
}

#[tokio::test]
async fn an_email_taken_by_another_live_user_is_refused() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let bob = key_of(&env, "bob", &[Right::UserSettingsBasic]).await;
    let status = update_user(
        &env,
        &bob,
        User {
            primary_email_address: "ALICE@example.com".into(),
            ..change("bob")
        },
        &["primary_email_address"],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        get_as_admin(&env, "bob").await.primary_email_address,
        "bob@example.com"
    );

    // Once alice is deleted, the address is free.
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alice", &admin).await.expect("delete");
    update_user(
        &env,
        &bob,
        User {
            primary_email_address: "ALICE@example.com".into(),
            ..change("bob")
        },
        &["primary_email_address"],
    )
    .await
    .expect("the address of a deleted user is free");
}

#[tokio::test]
async fn removing_admin_from_the_last_admin_is_refused() {
    let env = TestEnv::start().await;
    let boss = create_admin_user(&env, "boss").await;
    let status = update_user(&env, &boss, change("boss"), &["admin"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Read with boss's own key: another admin would end the guard's case.
    assert!(get_with(&env, "boss", &boss).await.admin);
}

#[tokio::test]
async fn restricting_the_universal_rights_of_the_last_admin_is_refused() {
    let env = TestEnv::start().await;
    let boss = create_admin_user(&env, "boss").await;
    let restrict = |user_id: &str| User {
        universal_rights: Some(roster_proto::v1::Rights {
            rights: vec![Right::UserInfo as i32],
        }),
        ..change(user_id)
    };
    let status = update_user(&env, &boss, restrict("boss"), &["universal_rights"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        get_with(&env, "boss", &boss)
            .await
            .universal_rights
            .is_none()
    );

    // With another unrestricted admin, the restriction is allowed.
    create_admin_user(&env, "deputy").await;
    let updated = update_user(&env, &boss, restrict("boss"), &["universal_rights"])
        .await
        .unwrap();
    assert_eq!(
        updated.universal_rights.unwrap().rights,
        vec![Right::UserInfo as i32]
    );
}

#[tokio::test]
async fn suspending_the_last_admin_is_refused() {
    let env = TestEnv::start().await;
    let boss = create_admin_user(&env, "boss").await;
    for state in [State::Suspended, State::Rejected, State::Requested] {
        let status = update_user(
            &env,
            &boss,
            User {
                state: state as i32,
                ..change("boss")
            },
            &["state"],
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{state:?}");
    }
    let stored = get_with(&env, "boss", &boss).await;
    assert_eq!(stored.state, State::Approved as i32);
    assert!(stored.admin);
    // Flagged admins still count as admins.
    update_user(
        &env,
        &boss,
        User {
            state: State::Flagged as i32,
            admin: true,
            ..change("boss")
        },
        &["state"],
    )
    .await
    .expect("flagging keeps an admin");
}

#[tokio::test]
async fn demoting_or_suspending_an_admin_works_when_another_admin_remains() {
    let env = TestEnv::start().await;
    let chief = create_admin_user(&env, "chief").await;
    create_admin_user(&env, "deputy").await;
    create_admin_user(&env, "boss").await;
    let updated = update_user(&env, &chief, change("deputy"), &["admin"])
        .await
        .expect("demote deputy");
    assert!(!updated.admin);
    update_user(
        &env,
        &chief,
        User {
            state: State::Suspended as i32,
            admin: true,
            ..change("boss")
        },
        &["state"],
    )
    .await
    .expect("suspend boss");
    assert!(!get_with(&env, "deputy", &chief).await.admin);
    assert_eq!(
        get_with(&env, "boss", &chief).await.state,
        State::Suspended as i32
    );
    // Now chief is the last effective admin.
    let status = update_user(&env, &chief, change("chief"), &["admin"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

async fn concurrent_demotions_of_the_last_two_admins_leave_an_admin(backend: Backend) {
    // Each way of losing an admin, raced against an un-admin of the other.
    for round in 0..6 {
        let env = TestEnv::start_with(backend, Default::default()).await;
        let a1 = create_admin_user(&env, "a1").await;
        let a2 = create_admin_user(&env, "a2").await;
        let first = async {
            match round % 3 {
                0 => update_user(&env, &a1, change("a1"), &["admin"])
                    .await
                    .map(drop),
                1 => update_user(
                    &env,
                    &a1,
                    User {
                        state: State::Suspended as i32,
                        admin: true,
                        ..change("a1")
                    },
                    &["state"],
                )
                .await
                .map(drop),
                _ => delete_user(&env, "a1", &a1).await,
            }
        };
        let second = async {
            update_user(&env, &a2, change("a2"), &["admin"])
                .await
                .map(drop)
        };
        let (r1, r2) = tokio::join!(first, second);
        let results = [r1, r2];
        for result in &results {
            if let Err(status) = result {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            }
        }
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        // The admin who lists comes after the race; only a1 and a2 count.
        let (admins, _) = list_as_admin(&env, Default::default()).await;
        let mut effective = 0;
        for id in admins.into_iter().filter(|id| id != ADMIN) {
            let user = get_as_admin(&env, &id).await;
            if user.admin && user.state == State::Approved as i32 {
                effective += 1;
            }
        }
        assert_eq!(effective, 1, "round {round}");
    }
}

#[tokio::test]
async fn concurrent_demotions_of_the_last_two_admins_leave_an_admin_on_postgres() {
    concurrent_demotions_of_the_last_two_admins_leave_an_admin(Backend::Postgres).await;
}

#[tokio::test]
async fn concurrent_demotions_of_the_last_two_admins_leave_an_admin_on_sqlite() {
    concurrent_demotions_of_the_last_two_admins_leave_an_admin(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_key_without_settings_basic_cannot_update() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let token = key_of(
        &env,
        "alice",
        &[
            Right::UserInfo,
            Right::UserDelete,
            Right::UserSettingsApiKeys,
        ],
    )
    .await;
    let status = update_user(
        &env,
        &token,
        User {
            name: "Hacked".into(),
            ..change("alice")
        },
        &["name"],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(get_as_admin(&env, "alice").await.name, "User alice");
}

#[tokio::test]
async fn another_users_token_cannot_update() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let bob = key_of(&env, "bob", &[Right::UserAll]).await;
    let status = update_user(
        &env,
        &bob,
        User {
            name: "Hacked".into(),
            ..change("alice")
        },
        &["name"],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(get_as_admin(&env, "alice").await.name, "User alice");
    // Without a credential at all.
    let status = registry(&env)
        .update(roster_proto::v1::UpdateUserRequest {
            user: Some(change("alice")),
            field_mask: mask(&["name"]),
            password: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn updating_an_unknown_user_is_not_found_for_admins_and_denied_for_others() {
    let env = TestEnv::start().await;
    let admin = env.admin_token(ADMIN).await;
    let status = update_user(&env, &admin, change("ghost"), &["name"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let status = update_user(&env, &bob, change("ghost"), &["name"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_update_publishes_user_update_with_the_changed_paths() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;
    let owner = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    update_user(
        &env,
        &owner,
        User {
            name: "Alice Liddell".into(),
            // Same as stored: named in the mask, but not changed.
            description: String::new(),
            ..change("alice")
        },
        &["name", "description"],
    )
    .await
    .expect("update");
    let event = next_event(&mut events, "user.update", Duration::from_secs(10))
        .await
        .expect("user.update published");
    let data = user_event_data(&event);
    assert_eq!(data.changed_paths, vec!["name"]);
    let user = data.user.expect("the user");
    assert_eq!(user.name, "Alice Liddell");
    assert!(user.password.is_empty());
    assert!(user.temporary_password.is_empty());
}

#[tokio::test]
async fn an_admin_temporary_password_is_timestamped_and_never_returned() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let mut events = env.subscribe("user.>").await;
    let admin = env.admin_token(ADMIN).await;
    let temporary = "Temporary-Pass-7";
    let updated = update_user(
        &env,
        &admin,
        User {
            temporary_password: temporary.into(),
            ..change("alice")
        },
        &["temporary_password"],
    )
    .await
    .expect("set a temporary password");
    assert!(updated.temporary_password.is_empty());
    let created = updated.temporary_password_created_at.expect("created_at");
    let expires = updated.temporary_password_expires_at.expect("expires_at");
    // The default admin TTL is 36 hours.
    assert_eq!(expires.seconds - created.seconds, 36 * 3600);

    let stored = get_as_admin(&env, "alice").await;
    assert!(stored.temporary_password.is_empty());
    assert_eq!(stored.temporary_password_created_at, Some(created));
    assert_eq!(stored.temporary_password_expires_at, Some(expires));

    let event = next_event(&mut events, "user.update", Duration::from_secs(10))
        .await
        .expect("user.update published");
    let data = user_event_data(&event);
    assert_eq!(data.changed_paths, vec!["temporary_password"]);
    assert!(data.user.unwrap().temporary_password.is_empty());
    let encoded = prost::Message::encode_to_vec(&event);
    let text = String::from_utf8_lossy(&encoded);
    assert!(!text.contains(temporary));
    assert!(!text.contains("$argon2"));

    // A weak temporary password is refused, naming it.
    let status = update_user(
        &env,
        &admin,
        User {
            temporary_password: "weak".into(),
            ..change("alice")
        },
        &["temporary_password"],
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "user.temporary_password");
}

/// Changing where password resets go needs the current password from
/// anyone but a full admin: a profile-only key alone cannot redirect them.
#[tokio::test]
async fn changing_the_primary_email_needs_the_current_password_unless_a_full_admin() {
    let env = TestEnv::start().await;
    register_validated_alice(&env).await;
    let profile_key = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let before = get_as_admin(&env, "alice").await;
    let change = |password: &str| roster_proto::v1::UpdateUserRequest {
        user: Some(User {
            primary_email_address: "attacker@example.net".into(),
            ..change("alice")
        }),
        field_mask: mask(&["primary_email_address"]),
        password: password.into(),
    };
    let mut client = registry(&env);
    let missing = client
        .update(with_token(change(""), &profile_key))
        .await
        .unwrap_err();
    assert_invalid_field(&missing, "password");
    let wrong = client
        .update(with_token(change("Not-her-Passw0rd-at-all"), &profile_key))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(get_as_admin(&env, "alice").await, before, "nothing changed");

    // A narrow admin key (every universal right but one) is no full admin.
    env.ensure_user("deputy", true).await;
    let narrow: Vec<Right> = roster_core::rights::RightSet::all()
        .to_vec()
        .into_iter()
        .filter(|r| *r != Right::UserPurge)
        .collect();
    let deputy = env.api_key("deputy", &narrow).await.1;
    let refused = client
        .update(with_token(change(""), &deputy))
        .await
        .unwrap_err();
    assert_invalid_field(&refused, "password");

    // The owner's right password, or a full admin, change it.
    client
        .update(with_token(change(PASSWORD), &profile_key))
        .await
        .expect("the owner proves the password");
    let full = env.admin_token(ADMIN).await;
    let mut back = change("");
    back.user.as_mut().unwrap().primary_email_address = "alice@example.com".into();
    client
        .update(with_token(back, &full))
        .await
        .expect("a full admin needs no password");
}
