//! UserRegistry.Create: what is stored, what registration overrides, the
//! input rules, uniqueness of IDs and emails, the registration switches and
//! the `user.create` event.

use std::collections::HashMap;
use std::time::Duration;

use roster_proto::v1::picture::Embedded;
use roster_proto::v1::{
    CreateUserRequest, EmailNotificationPreferences, NotificationType, Picture, Right, Rights,
    State, User, UserIdentifiers,
};
use roster_test_support::{Backend, TestEnv, next_event, with_token};
use roster_user_registry::UserRegistryConfig;
use tonic::Code;

use crate::support::*;

fn full_profile(user_id: &str) -> User {
    User {
        description: "Likes long walks\nand short IDs".into(),
        attributes: HashMap::from([
            ("team".to_string(), "platform".to_string()),
            ("floor".to_string(), "3".to_string()),
        ]),
        profile_picture: Some(Picture {
            embedded: None,
            sizes: HashMap::from([(64, "https://img.example.com/64.png".to_string())]),
        }),
        email_notification_preferences: Some(EmailNotificationPreferences {
            types: vec![
                NotificationType::PasswordChanged as i32,
                NotificationType::ApiKeyCreated as i32,
            ],
        }),
        ..new_user(user_id)
    }
}

async fn create_anonymously(env: &TestEnv, user: User) -> Result<User, tonic::Status> {
    registry(env)
        .create(CreateUserRequest {
            user: Some(user),
            invitation_token: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn self_registration_stores_the_fields_and_never_returns_the_password(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let created = create_anonymously(&env, full_profile("alice"))
        .await
        .expect("create");
    assert!(created.password.is_empty());
    assert!(created.temporary_password.is_empty());
    assert!(created.created_at.is_some());
    assert!(created.password_updated_at.is_some());

    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(stored.ids.unwrap().user_id, "alice");
    assert_eq!(stored.name, "User alice");
    assert_eq!(stored.description, "Likes long walks\nand short IDs");
    assert_eq!(stored.primary_email_address, "alice@example.com");
    assert_eq!(
        stored.attributes,
        HashMap::from([
            ("team".to_string(), "platform".to_string()),
            ("floor".to_string(), "3".to_string()),
        ])
    );
    assert_eq!(
        stored.profile_picture.unwrap().sizes,
        HashMap::from([(64, "https://img.example.com/64.png".to_string())])
    );
    let mut types = stored.email_notification_preferences.unwrap().types;
    types.sort_unstable();
    assert_eq!(
        types,
        vec![
            NotificationType::ApiKeyCreated as i32,
            NotificationType::PasswordChanged as i32
        ]
    );
    assert!(stored.password.is_empty());
    assert!(stored.temporary_password.is_empty());
    assert!(stored.deleted_at.is_none());
}

#[tokio::test]
async fn self_registration_stores_the_fields_and_never_returns_the_password_on_postgres() {
    self_registration_stores_the_fields_and_never_returns_the_password(Backend::Postgres).await;
}

#[tokio::test]
async fn self_registration_stores_the_fields_and_never_returns_the_password_on_sqlite() {
    self_registration_stores_the_fields_and_never_returns_the_password(Backend::Sqlite).await;
}

#[tokio::test]
async fn self_registration_overrides_the_admin_only_fields() {
    let env = TestEnv::start().await;
    let requested = User {
        admin: true,
        state: State::Suspended as i32,
        state_description: "set by the user".into(),
        require_password_update: true,
        primary_email_address_validated_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        universal_rights: Some(Rights {
            rights: vec![Right::UserList as i32],
        }),
        ..new_user("alice")
    };
    let created = create_anonymously(&env, requested).await.expect("create");
    for user in [created, get_as_admin(&env, "alice").await] {
        assert_eq!(user.state, State::Approved as i32);
        assert!(!user.admin);
        assert!(!user.require_password_update);
        assert!(user.primary_email_address_validated_at.is_none());
        assert!(user.state_description.is_empty());
        assert!(user.universal_rights.is_none());
        assert!(user.temporary_password_created_at.is_none());
        assert!(user.temporary_password_expires_at.is_none());
    }
}

#[tokio::test]
async fn self_registration_with_admin_approval_required_starts_requested() {
    let env = TestEnv::start_with(
        Backend::Postgres,
        UserRegistryConfig {
            admin_approval_required: true,
            ..Default::default()
        },
    )
    .await;
    let created = create_anonymously(
        &env,
        User {
            state: State::Approved as i32,
            ..new_user("alice")
        },
    )
    .await
    .expect("create");
    assert_eq!(created.state, State::Requested as i32);
    assert_eq!(created.state_description, "admin approval required");
    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(stored.state, State::Requested as i32);
    assert_eq!(stored.state_description, "admin approval required");
}

#[tokio::test]
async fn an_admin_creates_a_user_with_the_admin_only_fields_honoured() {
    let env = TestEnv::start_with(
        Backend::Postgres,
        UserRegistryConfig {
            admin_approval_required: true,
            ..Default::default()
        },
    )
    .await;
    let validated = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_000,
    };
    let created = create_as_admin(
        &env,
        User {
            admin: true,
            state: State::Flagged as i32,
            state_description: "under review".into(),
            require_password_update: true,
            primary_email_address_validated_at: Some(validated),
            universal_rights: Some(Rights {
                rights: vec![Right::UserList as i32, Right::UserInfo as i32],
            }),
            ..new_user("alice")
        },
    )
    .await
    .expect("create as admin");
    assert!(created.password.is_empty());
    for user in [created, get_as_admin(&env, "alice").await] {
        assert!(user.admin);
        assert_eq!(user.state, State::Flagged as i32);
        assert_eq!(user.state_description, "under review");
        assert!(user.require_password_update);
        assert_eq!(user.primary_email_address_validated_at, Some(validated));
        assert_eq!(
            user.universal_rights.unwrap().rights,
            vec![Right::UserInfo as i32, Right::UserList as i32]
        );
    }
}

#[tokio::test]
async fn an_invalid_user_id_is_refused_naming_the_field() {
    let env = TestEnv::start().await;
    let too_long = "a".repeat(37);
    for bad in [
        "",
        "a",
        "Alice",
        "-alice",
        "alice-",
        "al--ice",
        "al_ice",
        "al ice",
        too_long.as_str(),
    ] {
        let mut user = new_user("placeholder");
        user.ids = Some(UserIdentifiers {
            user_id: bad.into(),
            email: String::new(),
        });
        let status = create_anonymously(&env, user).await.unwrap_err();
        assert_invalid_field(&status, "user.ids.user_id");
    }
    // No user at all is a missing `user`.
    let status = registry(&env)
        .create(CreateUserRequest {
            user: None,
            invitation_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid_field(&status, "user");
    // Only the admin who lists is a user.
    let (ids, total) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec![ADMIN]);
    assert_eq!(total, 1);
}

#[tokio::test]
async fn a_reserved_user_id_is_refused_naming_the_field() {
    let env = TestEnv::start().await;
    for reserved in ["admin", "root", "api", "nobody"] {
        let status = create_anonymously(&env, new_user(reserved))
            .await
            .unwrap_err();
        assert_invalid_field(&status, "user.ids.user_id");
        // Admins cannot take reserved IDs either.
        let status = create_as_admin(&env, new_user(reserved)).await.unwrap_err();
        assert_invalid_field(&status, "user.ids.user_id");
    }
}

#[tokio::test]
async fn an_invalid_email_is_refused_naming_the_field() {
    let env = TestEnv::start().await;
    for bad in [
        "",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "al ice@example.com",
        "alice@@example.com",
        "alice@exa_mple.com",
    ] {
        let user = User {
            primary_email_address: bad.into(),
            ..new_user("alice")
        };
        let status = create_anonymously(&env, user).await.unwrap_err();
        assert_invalid_field(&status, "user.primary_email_address");
    }
}

#[tokio::test]
async fn a_weak_password_is_refused_naming_the_field() {
    let env = TestEnv::start().await;
    for (weak, why) in [
        ("", "empty"),
        ("Sh0rt-pass1", "shorter than 12 characters"),
        ("QwertyUIOP123", "a common password"),
        ("My-Alice-Pass-9", "contains the user ID"),
        ("Mail: A.Liddell@Example.com", "contains the email address"),
    ] {
        let user = User {
            password: weak.into(),
            primary_email_address: "a.liddell@example.com".into(),
            ..new_user("alice")
        };
        let status = create_anonymously(&env, user).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{why}");
        assert_invalid_field(&status, "user.password");
        assert!(
            !status.message().contains(weak) || weak.is_empty(),
            "the reason must not quote the password ({why})"
        );
    }
    let (ids, _) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec![ADMIN], "no user but the admin who lists");
}

#[tokio::test]
async fn a_name_over_50_characters_is_refused() {
    let env = TestEnv::start().await;
    let status = create_anonymously(
        &env,
        User {
            name: "n".repeat(51),
            ..new_user("alice")
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "user.name");
    // Exactly 50 characters (not bytes) is fine.
    create_anonymously(
        &env,
        User {
            name: "é".repeat(50),
            ..new_user("alice")
        },
    )
    .await
    .expect("a 50-character name");
}

#[tokio::test]
async fn more_than_ten_attributes_are_refused() {
    let env = TestEnv::start().await;
    let attributes: HashMap<String, String> = (0..11)
        .map(|i| (format!("key{i}"), "value".to_string()))
        .collect();
    let status = create_anonymously(
        &env,
        User {
            attributes,
            ..new_user("alice")
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "user.attributes");
    let (ids, _) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec![ADMIN], "no user but the admin who lists");
}

#[tokio::test]
async fn an_invalid_profile_picture_is_refused() {
    let env = TestEnv::start().await;
    let bad_pictures = [
        Picture {
            embedded: Some(Embedded {
                mime_type: "text/html".into(),
                data: b"<script>".to_vec(),
            }),
            sizes: HashMap::new(),
        },
        Picture {
            embedded: Some(Embedded {
                mime_type: "image/png".into(),
                data: Vec::new(),
            }),
            sizes: HashMap::new(),
        },
        Picture {
            embedded: None,
            sizes: HashMap::from([(64, "javascript:alert(1)".to_string())]),
        },
    ];
    for picture in bad_pictures {
        let status = create_anonymously(
            &env,
            User {
                profile_picture: Some(picture),
                ..new_user("alice")
            },
        )
        .await
        .unwrap_err();
        assert_invalid_field(&status, "user.profile_picture");
    }
}

#[tokio::test]
async fn an_unknown_state_value_is_refused() {
    let env = TestEnv::start().await;
    let status = create_as_admin(
        &env,
        User {
            state: 99,
            ..new_user("alice")
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "user.state");
    let (ids, _) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec![ADMIN], "no user but the admin who lists");
}

async fn a_taken_user_id_is_refused_with_already_exists(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let status = create_anonymously(
        &env,
        User {
            primary_email_address: "someone-else@example.com".into(),
            ..new_user("alice")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    // The first user is untouched.
    let stored = get_as_admin(&env, "alice").await;
    assert_eq!(stored.primary_email_address, "alice@example.com");
}

#[tokio::test]
async fn a_taken_user_id_is_refused_with_already_exists_on_postgres() {
    a_taken_user_id_is_refused_with_already_exists(Backend::Postgres).await;
}

#[tokio::test]
async fn a_taken_user_id_is_refused_with_already_exists_on_sqlite() {
    a_taken_user_id_is_refused_with_already_exists(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_soft_deleted_user_id_stays_taken() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alice", &admin).await.expect("delete");
    let status = create_anonymously(
        &env,
        User {
            primary_email_address: "new-alice@example.com".into(),
            ..new_user("alice")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let status = create_as_admin(
        &env,
        User {
            primary_email_address: "new-alice@example.com".into(),
            ..new_user("alice")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(get_as_admin(&env, "alice").await.deleted_at.is_some());
}

async fn a_taken_email_is_refused_whatever_its_case(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    create_anonymously(
        &env,
        User {
            primary_email_address: "Alice@Example.com".into(),
            ..new_user("alice")
        },
    )
    .await
    .expect("create alice");
    for taken in [
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "Alice@Example.com",
    ] {
        // An admin hears it plainly...
        let status = create_as_admin(
            &env,
            User {
                primary_email_address: taken.into(),
                ..new_user("bob")
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{taken}");
        // ...an anonymous registrant gets the answer a success gets, so
        // the answer confirms no account; nothing is created.
        let answer = create_anonymously(
            &env,
            User {
                primary_email_address: taken.into(),
                ..new_user("bob")
            },
        )
        .await
        .expect("answered as a success");
        assert_eq!(answer.ids.unwrap().user_id, "bob");
        assert_eq!(answer.primary_email_address, taken);
        // A taken ID is said plainly, whatever the address.
        let status = create_anonymously(
            &env,
            User {
                primary_email_address: taken.into(),
                ..new_user("alice")
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{taken}");
    }
    let (ids, total) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec!["alice", ADMIN]);
    assert_eq!(total, 2);
    // The address is kept as typed.
    assert_eq!(
        get_as_admin(&env, "alice").await.primary_email_address,
        "Alice@Example.com"
    );
}

#[tokio::test]
async fn a_taken_email_is_refused_whatever_its_case_on_postgres() {
    a_taken_email_is_refused_whatever_its_case(Backend::Postgres).await;
}

#[tokio::test]
async fn a_taken_email_is_refused_whatever_its_case_on_sqlite() {
    a_taken_email_is_refused_whatever_its_case(Backend::Sqlite).await;
}

async fn the_email_of_a_deleted_user_is_free_again(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let owner = key_of(&env, "alice", &[Right::UserDelete]).await;
    delete_user(&env, "alice", &owner).await.expect("delete");
    let created = create_anonymously(
        &env,
        User {
            primary_email_address: "ALICE@example.com".into(),
            ..new_user("bob")
        },
    )
    .await
    .expect("the address is free again");
    assert_eq!(created.primary_email_address, "ALICE@example.com");
}

#[tokio::test]
async fn the_email_of_a_deleted_user_is_free_again_on_postgres() {
    the_email_of_a_deleted_user_is_free_again(Backend::Postgres).await;
}

#[tokio::test]
async fn the_email_of_a_deleted_user_is_free_again_on_sqlite() {
    the_email_of_a_deleted_user_is_free_again(Backend::Sqlite).await;
}

#[tokio::test]
async fn disabled_registration_refuses_non_admins_but_not_admins() {
    let env = TestEnv::start_with(
        Backend::Postgres,
        UserRegistryConfig {
            registration_enabled: false,
            ..Default::default()
        },
    )
    .await;
    let status = create_anonymously(&env, new_user("alice"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // An authenticated non-admin is still not an admin.
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let status = registry(&env)
        .create(with_token(
            CreateUserRequest {
                user: Some(new_user("alice")),
                invitation_token: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // No alice: only bob (the caller above) and the admin who lists.
    let (ids, _) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec!["bob", ADMIN]);

    let created = create_as_admin(
        &env,
        User {
            state: State::Approved as i32,
            ..new_user("alice")
        },
    )
    .await
    .expect("admins may still create");
    assert_eq!(created.ids.unwrap().user_id, "alice");
}

#[tokio::test]
async fn required_invitation_without_a_token_names_the_invitation_token_field() {
    let env = TestEnv::start_with(
        Backend::Postgres,
        UserRegistryConfig {
            invitation_required: true,
            ..Default::default()
        },
    )
    .await;
    let status = create_anonymously(&env, new_user("alice"))
        .await
        .unwrap_err();
    assert_invalid_field(&status, "invitation_token");
    let (ids, _) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec![ADMIN], "no user but the admin who lists");

    // Admins need no invitation.
    create_as_admin(&env, new_user("alice"))
        .await
        .expect("admins need no invitation");
}

async fn concurrent_creates_of_one_id_let_exactly_one_succeed(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let attempts = (0..8).map(|i| {
        let env = &env;
        async move {
            create_anonymously(
                env,
                User {
                    primary_email_address: format!("racer{i}@example.com"),
                    ..new_user("racer")
                },
            )
            .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    for result in &results {
        if let Err(status) = result {
            assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        }
    }
    let (ids, total) = list_as_admin(&env, Default::default()).await;
    assert_eq!(ids, vec![ADMIN, "racer"]);
    assert_eq!(total, 2);
}

#[tokio::test]
async fn concurrent_creates_of_one_id_let_exactly_one_succeed_on_postgres() {
    concurrent_creates_of_one_id_let_exactly_one_succeed(Backend::Postgres).await;
}

#[tokio::test]
async fn concurrent_creates_of_one_id_let_exactly_one_succeed_on_sqlite() {
    concurrent_creates_of_one_id_let_exactly_one_succeed(Backend::Sqlite).await;
}

async fn creation_publishes_user_create_without_secrets(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut events = env.subscribe("user.>").await;
    register(&env, "alice").await;
    let event = next_event(&mut events, "user.create", Duration::from_secs(10))
        .await
        .expect("user.create published");
    let user = user_event_data(&event).user.expect("the user");
    assert_eq!(user.ids.unwrap().user_id, "alice");
    assert_eq!(user.primary_email_address, "alice@example.com");
    assert!(user.password.is_empty());
    assert!(user.temporary_password.is_empty());
    // Neither the password nor a hash of it travels anywhere in the event.
    let encoded = prost::Message::encode_to_vec(&event);
    let text = String::from_utf8_lossy(&encoded);
    assert!(!text.contains(PASSWORD));
    assert!(!text.contains("$argon2"));
}

#[tokio::test]
async fn creation_publishes_user_create_without_secrets_on_postgres() {
    creation_publishes_user_create_without_secrets(Backend::Postgres).await;
}

#[tokio::test]
async fn creation_publishes_user_create_without_secrets_on_sqlite() {
    creation_publishes_user_create_without_secrets(Backend::Sqlite).await;
}
