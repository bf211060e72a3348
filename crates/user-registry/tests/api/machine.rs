//! Machine users: made by admins without password or address, listed and
//! counted by type, working through their personal access tokens (API
//! keys) within the rights written on them, and never logging in: what
//! needs no credential answers for a machine as for an unknown user, what
//! an authenticated caller asks of a person answers `machine_user`.

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_authentication_factors_client::UserAuthenticationFactorsClient;
use roster_proto::v1::user_credentials_client::UserCredentialsClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_metadata_client::UserMetadataClient;
use roster_proto::v1::{
    CheckPasswordRequest, CreateLoginTokenRequest, CreateTemporaryPasswordRequest,
    CreateUserApiKeyRequest, CreateUserRequest, DeleteUserApiKeyRequest,
    GenerateRecoveryCodesRequest, ListUserApiKeysRequest, ListUsersRequest, LoginRequest,
    RegisterTotpRequest, Right, SearchUsersRequest, SendEmailValidationRequest,
    SetRequiredActionsRequest, SetUserMetadataRequest, State, UpdateUserPasswordRequest, User,
    UserEventData, UserMetadataEntry, UserRequiredAction, UserType,
};
use roster_test_support::{
    Backend, TEST_PASSWORD, TestConfig, TestEnv, event_data, next_event, with_cluster_key,
    with_token,
};
use tonic::{Code, Status};

use crate::support::*;

fn machine(user_id: &str) -> User {
    User {
        ids: Some(ids(user_id)),
        name: format!("Machine {user_id}"),
        r#type: UserType::Machine as i32,
        ..Default::default()
    }
}

async fn create_with(env: &TestEnv, token: Option<&str>, user: User) -> Result<User, Status> {
    let message = CreateUserRequest {
        user: Some(user),
        invitation_token: String::new(),
    };
    let request = match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    };
    registry(env)
        .create(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A personal access token of `user_id` made by `token`: its ID and the
/// key, expiring in a day.
async fn token_of(env: &TestEnv, token: &str, user_id: &str, rights: &[Right]) -> (String, String) {
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let key = UserAccessClient::new(env.channel())
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids(user_id)),
                name: "deploy".into(),
                rights: rights.iter().map(|r| *r as i32).collect(),
                expires_at: Some(prost_types::Timestamp {
                    seconds: expires.timestamp(),
                    nanos: 0,
                }),
            },
            token,
        ))
        .await
        .expect("create a personal access token")
        .into_inner();
    assert!(!key.key.is_empty(), "the token is shown once, at creation");
    (key.id, key.key)
}

async fn a_machine_is_made_by_admins_without_password_or_address(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    let mut events = env.subscribe("user.create").await;

    let made = create_with(&env, Some(&admin), machine("ci-bot"))
        .await
        .unwrap();
    assert_eq!(made.r#type, UserType::Machine as i32);
    assert_eq!(made.state, State::Approved as i32);
    assert!(made.primary_email_address.is_empty());
    assert!(made.contact_info.is_empty(), "{:?}", made.contact_info);
    assert!(made.password_updated_at.is_none());
    let event = next_event(&mut events, "user.create", WAIT)
        .await
        .expect("user.create");
    let data: UserEventData = event_data(&event);
    assert_eq!(data.user.unwrap().r#type, UserType::Machine as i32);
    // Machines have no address, so two of them do not collide on one.
    create_with(&env, Some(&admin), machine("ci-bot-2"))
        .await
        .unwrap();
    assert_eq!(
        get_as_admin(&env, "ci-bot").await.r#type,
        UserType::Machine as i32
    );

    // Only admins make machines.
    register(&env, "alice").await;
    let alice = key_of(&env, "alice", &[Right::UserAll]).await;
    let refused = create_with(&env, Some(&alice), machine("rogue")).await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    let refused = create_with(&env, None, machine("rogue")).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);

    // What only a person has is refused by name.
    for (user, field) in [
        (
            User {
                password: TEST_PASSWORD.into(),
                ..machine("m1")
            },
            "user.password",
        ),
        (
            User {
                primary_email_address: "m1@example.com".into(),
                ..machine("m1")
            },
            "user.primary_email_address",
        ),
        (
            User {
                require_password_update: true,
                ..machine("m1")
            },
            "user.require_password_update",
        ),
        (
            User {
                r#type: 7,
                ..machine("m1")
            },
            "user.type",
        ),
    ] {
        let refused = create_with(&env, Some(&admin), user).await.unwrap_err();
        assert_invalid_field(&refused, field);
    }
    // The type never changes.
    let refused = update_user(&env, &admin, machine("ci-bot"), &["type"])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // Invitations are for people.
    let refused = registry(&env)
        .create(with_token(
            CreateUserRequest {
                user: Some(machine("invited-bot")),
                invitation_token: "some-invitation".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_invalid_field(&refused, "invitation_token");
}

async fn a_machine_admin_does_not_count_as_the_last_admin(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    create_with(
        &env,
        Some(&admin),
        User {
            admin: true,
            ..machine("ops-bot")
        },
    )
    .await
    .unwrap();
    let bot = token_of(&env, &admin, "ops-bot", &[Right::All]).await.1;
    // The one human admin stays: once the bot's keys were gone, nothing
    // would bring an admin back.
    let refused = update_user(
        &env,
        &bot,
        User {
            ids: Some(ids(ADMIN)),
            admin: false,
            ..Default::default()
        },
        &["admin"],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().starts_with("last_admin"), "{refused:?}");
    assert!(get_as_admin(&env, ADMIN).await.admin);
    // A second human admin lets the first one go.
    env.ensure_user("second-admin", true).await;
    update_user(
        &env,
        &bot,
        User {
            ids: Some(ids(ADMIN)),
            admin: false,
            ..Default::default()
        },
        &["admin"],
    )
    .await
    .expect("another human admin remains");
}

/// Login, CheckPassword, UpdatePassword, CreateTemporaryPassword and an
/// anonymous CreateLoginToken answer for `user_id` exactly as for a user
/// that does not exist.
async fn answers_as_for_an_unknown_user(env: &TestEnv, user_id: &str) {
    let unknown = "no-such-user";
    let login = |who: &str| {
        let who = who.to_string();
        async move {
            AuthenticationClient::new(env.channel())
                .login(LoginRequest {
                    user_ids: Some(ids(&who)),
                    password: TEST_PASSWORD.into(),
                })
                .await
                .map(drop)
        }
    };
    let check = |who: &str| {
        let who = who.to_string();
        async move {
            UserCredentialsClient::new(env.channel())
                .check_password(with_cluster_key(CheckPasswordRequest {
                    user_ids: Some(ids(&who)),
                    password: String::new(),
                    client_key: String::new(),
                }))
                .await
                .map(drop)
        }
    };
    let update_password = |who: &str| {
        let who = who.to_string();
        async move {
            registry(env)
                .update_password(UpdateUserPasswordRequest {
                    user_ids: Some(ids(&who)),
                    new: "Brand-New-Passw0rd-here".into(),
                    old: TEST_PASSWORD.into(),
                    revoke_all_access: false,
                })
                .await
                .map(drop)
        }
    };
    let same = |a: Result<(), Status>, b: Result<(), Status>, what: &str| match (a, b) {
        (Ok(()), Ok(())) => {}
        (Err(a), Err(b)) => {
            assert_eq!((a.code(), a.message()), (b.code(), b.message()), "{what}");
        }
        (a, b) => panic!("{what}: {a:?} and {b:?} differ"),
    };
    same(login(user_id).await, login(unknown).await, "Login");
    same(check(user_id).await, check(unknown).await, "CheckPassword");
    same(
        update_password(user_id).await,
        update_password(unknown).await,
        "UpdatePassword",
    );
    let temporary = registry(env)
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids(user_id)),
        })
        .await;
    assert!(temporary.is_ok(), "{temporary:?}");
    let token = UserAccessClient::new(env.channel())
        .create_login_token(CreateLoginTokenRequest {
            user_ids: Some(ids(user_id)),
            skip_email: false,
        })
        .await
        .expect("the empty answer anyone gets")
        .into_inner();
    assert!(token.token.is_empty());
}

async fn a_machines_token_works_within_its_rights_and_it_never_logs_in(backend: Backend) {
    let mut config = TestConfig::default();
    // Machines have no address to validate: their tokens are not limited
    // for it.
    config.access.require_validated_email = true;
    config.access.login_tokens_enabled = true;
    let env = TestEnv::start_configured(backend, config).await;
    let admin = env.admin_token(ADMIN).await;
    create_with(&env, Some(&admin), machine("ci-bot"))
        .await
        .unwrap();
    let (key_id, pat) = token_of(
        &env,
        &admin,
        "ci-bot",
        &[
            Right::UserInfo,
            Right::UserSettingsBasic,
            Right::UserSettingsApiKeys,
        ],
    )
    .await;

    // What the token's rights allow works...
    let own = get_user(&env, "ci-bot", Some(&pat), &[]).await.unwrap();
    assert_eq!(own.r#type, UserType::Machine as i32);
    update_user(
        &env,
        &pat,
        User {
            description: "deploys main".into(),
            ..machine("ci-bot")
        },
        &["description"],
    )
    .await
    .unwrap();
    UserMetadataClient::new(env.channel())
        .set_user_metadata(with_token(
            SetUserMetadataRequest {
                user_ids: Some(ids("ci-bot")),
                metadata: vec![UserMetadataEntry {
                    key: "pipeline".into(),
                    value: b"main".to_vec(),
                    ..Default::default()
                }],
            },
            &pat,
        ))
        .await
        .unwrap();
    // ...and nothing more.
    let refused = delete_user(&env, "ci-bot", &pat).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = registry(&env)
        .list(with_token(ListUsersRequest::default(), &pat))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    register(&env, "alice").await;
    let alice = get_user(&env, "alice", Some(&pat), &[]).await.unwrap();
    assert!(alice.primary_email_address.is_empty(), "public fields only");

    // It never logs in, and nobody learns that from the answers.
    answers_as_for_an_unknown_user(&env, "ci-bot").await;
    assert_eq!(
        get_as_admin(&env, "ci-bot")
            .await
            .temporary_password_expires_at,
        None
    );

    // Asked by whoever may see it, the person-only methods say why.
    let machine_user = |result: Result<(), Status>, what: &str| {
        let status = result.expect_err(what);
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{what}: {status:?}"
        );
        assert!(
            status.message().starts_with("machine_user"),
            "{what}: {status:?}"
        );
    };
    let lifecycle = UserLifecycleClient::new(env.channel());
    machine_user(
        lifecycle
            .clone()
            .send_email_validation(with_token(
                SendEmailValidationRequest {
                    user_ids: Some(ids("ci-bot")),
                    return_code: false,
                },
                &pat,
            ))
            .await
            .map(drop),
        "SendEmailValidation",
    );
    machine_user(
        UserAccessClient::new(env.channel())
            .create_login_token(with_token(
                CreateLoginTokenRequest {
                    user_ids: Some(ids("ci-bot")),
                    skip_email: true,
                },
                &admin,
            ))
            .await
            .map(drop),
        "CreateLoginToken by an admin",
    );
    machine_user(
        update_user(
            &env,
            &admin,
            User {
                primary_email_address: "bot@example.com".into(),
                ..machine("ci-bot")
            },
            &["primary_email_address"],
        )
        .await
        .map(drop),
        "Update of the address",
    );
    machine_user(
        lifecycle
            .clone()
            .set_required_actions(with_token(
                SetRequiredActionsRequest {
                    user_ids: Some(ids("ci-bot")),
                    actions: vec![UserRequiredAction::UpdatePassword as i32],
                },
                &admin,
            ))
            .await
            .map(drop),
        "SetRequiredActions",
    );
    machine_user(
        UserAuthenticationFactorsClient::new(env.channel())
            .register_totp(with_token(
                RegisterTotpRequest {
                    user_ids: Some(ids("ci-bot")),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .map(drop),
        "RegisterTOTP",
    );
    machine_user(
        UserAuthenticationFactorsClient::new(env.channel())
            .generate_recovery_codes(with_token(
                GenerateRecoveryCodesRequest {
                    user_ids: Some(ids("ci-bot")),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .map(drop),
        "GenerateRecoveryCodes",
    );
    lifecycle
        .clone()
        .set_required_actions(with_token(
            SetRequiredActionsRequest {
                user_ids: Some(ids("ci-bot")),
                actions: vec![],
            },
            &admin,
        ))
        .await
        .expect("clearing needs neither password nor address");

    // Its tokens are listed without their secret (by the token itself:
    // RIGHT_USER_SETTINGS_API_KEYS, which an unvalidated address would
    // take away from a person's key) and deleted for good.
    let mut access = UserAccessClient::new(env.channel());
    let listed = access
        .list_api_keys(with_token(
            ListUserApiKeysRequest {
                user_ids: Some(ids("ci-bot")),
                ..Default::default()
            },
            &pat,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 1);
    assert!(listed.api_keys[0].key.is_empty());
    assert!(listed.api_keys[0].expires_at.is_some());
    access
        .delete_api_key(with_token(
            DeleteUserApiKeyRequest {
                user_ids: Some(ids("ci-bot")),
                key_id,
            },
            &admin,
        ))
        .await
        .unwrap();
    let refused = get_user(&env, "ci-bot", Some(&pat), &[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

async fn list_search_and_statistics_know_machines(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    register(&env, "alice").await; // unvalidated
    env.ensure_user("bob", false).await; // validated
    for bot in ["bot-a", "bot-b"] {
        create_with(&env, Some(&admin), machine(bot)).await.unwrap();
    }
    create_with(&env, Some(&admin), machine("bot-c"))
        .await
        .unwrap();
    delete_user(&env, "bot-c", &admin).await.unwrap();

    let (machines, total) = list_as_admin(
        &env,
        ListUsersRequest {
            types: vec![UserType::Machine as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!((machines, total), (vec!["bot-a".into(), "bot-b".into()], 2));
    let (humans, _) = list_as_admin(
        &env,
        ListUsersRequest {
            types: vec![UserType::Human as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(humans, ["alice", "bob", ADMIN]);
    let (everyone, _) = list_as_admin(&env, ListUsersRequest::default()).await;
    assert_eq!(everyone.len(), 5);

    let found = search_client(&env)
        .search_users(with_token(
            SearchUsersRequest {
                query: "b".into(),
                types: vec![UserType::Machine as i32],
                field_mask: mask(&["name"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user_ids_of(&found), ["bot-a", "bot-b"]);
    // The searched field comes back though the mask left it out.
    assert!(
        found
            .users
            .iter()
            .all(|u| u.r#type == UserType::Machine as i32)
    );
    let bad = registry(&env)
        .list(with_token(
            ListUsersRequest {
                types: vec![9],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_invalid_field(&bad, "types[0]");

    let stats = UserLifecycleClient::new(env.channel())
        .get_user_statistics(with_token((), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total, 5, "{stats:?}");
    assert_eq!(stats.machines, 2, "{stats:?}");
    assert_eq!(stats.deleted, 1, "{stats:?}");
    assert_eq!(
        stats.email_unvalidated, 1,
        "alice only: machines have no address to validate"
    );
}

on_both_backends!(
    a_machine_admin_does_not_count_as_the_last_admin,
    a_machine_is_made_by_admins_without_password_or_address,
    a_machines_token_works_within_its_rights_and_it_never_logs_in,
    list_search_and_statistics_know_machines,
);
