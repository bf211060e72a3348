//! A machine user across processes: the user registry, the access service
//! and the sessions service each in its own `rosterd`. Its personal
//! access token (an API key) reads and writes what its rights allow and
//! nothing more, with unvalidated addresses limiting people's keys; it
//! never logs in, gets no login token and no temporary password, and the
//! answers to anonymous callers are those an unknown user gets.

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateLoginTokenRequest, CreateTemporaryPasswordRequest, CreateUserApiKeyRequest,
    CreateUserRequest, GetUserRequest, ListUserApiKeysRequest, LoginRequest, Right,
    UpdateUserRequest, User, UserType,
};
use roster_test_support::with_token;
use tonic::Code;

use crate::access::split_with;
use crate::{code_of, ids};

#[tokio::test]
async fn a_machines_token_works_within_its_rights_and_the_machine_never_logs_in() {
    let split = split_with(&[
        ("ROSTER__ACCESS__LOGIN_TOKENS_ENABLED", "true".into()),
        ("ROSTER__ACCESS__REQUIRE_VALIDATED_EMAIL", "true".into()),
    ])
    .await;
    let registry = split.registry.channel().await;
    let access = split.access.channel().await;
    let sessions = split.sessions.channel().await;
    let admin = split.admin_key.clone();
    let mut users = UserRegistryClient::new(registry.clone());
    users
        .create(with_token(
            CreateUserRequest {
                user: Some(User {
                    ids: Some(ids("ci-bot")),
                    name: "CI".into(),
                    r#type: UserType::Machine as i32,
                    ..Default::default()
                }),
                invitation_token: String::new(),
            },
            &admin,
        ))
        .await
        .expect("the admin makes a machine");
    let in_a_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 24 * 3600;
    let pat = UserAccessClient::new(access.clone())
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids("ci-bot")),
                name: "deploy".into(),
                rights: vec![
                    Right::UserInfo as i32,
                    Right::UserSettingsBasic as i32,
                    Right::UserSettingsApiKeys as i32,
                ],
                expires_at: Some(prost_types::Timestamp {
                    seconds: in_a_day as i64,
                    nanos: 0,
                }),
            },
            &admin,
        ))
        .await
        .expect("the admin makes it a personal access token")
        .into_inner()
        .key;

    // Reads and writes within its rights, in the registry's process; its
    // API keys in the access process (a right that an unvalidated address
    // would take from a person's key: a machine has no address).
    let got = users
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids("ci-bot")),
                field_mask: None,
            },
            &pat,
        ))
        .await
        .expect("the token reads its machine")
        .into_inner();
    assert_eq!(got.r#type, UserType::Machine as i32);
    let renamed = users
        .update(with_token(
            UpdateUserRequest {
                user: Some(User {
                    ids: Some(ids("ci-bot")),
                    name: "CI runner".into(),
                    ..Default::default()
                }),
                field_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                password: String::new(),
            },
            &pat,
        ))
        .await;
    assert_eq!(code_of(&renamed), Code::Ok, "{renamed:?}");
    let keys = UserAccessClient::new(access.clone())
        .list_api_keys(with_token(
            ListUserApiKeysRequest {
                user_ids: Some(ids("ci-bot")),
                ..Default::default()
            },
            &pat,
        ))
        .await;
    assert_eq!(code_of(&keys), Code::Ok, "{keys:?}");
    let deleted = users.delete(with_token(ids("ci-bot"), &pat)).await;
    assert_eq!(
        code_of(&deleted),
        Code::PermissionDenied,
        "no RIGHT_USER_DELETE"
    );

    // No login, and the answer is the unknown user's.
    let login = |user_id: &'static str| {
        let sessions = sessions.clone();
        async move {
            AuthenticationClient::new(sessions)
                .login(LoginRequest {
                    user_ids: Some(ids(user_id)),
                    password: "Correct-Horse-9".into(),
                })
                .await
        }
    };
    let machine = login("ci-bot").await.unwrap_err();
    let unknown = login("no-such-user").await.unwrap_err();
    assert_eq!(machine.code(), Code::Unauthenticated);
    assert_eq!(
        (machine.code(), machine.message()),
        (unknown.code(), unknown.message())
    );
    // No login token: the empty answer to anyone, the reason to an admin.
    let mut tokens = UserAccessClient::new(access.clone());
    let anonymous = tokens
        .create_login_token(CreateLoginTokenRequest {
            user_ids: Some(ids("ci-bot")),
            skip_email: false,
        })
        .await
        .expect("the answer an unknown user gets")
        .into_inner();
    assert!(anonymous.token.is_empty());
    let refused = tokens
        .create_login_token(with_token(
            CreateLoginTokenRequest {
                user_ids: Some(ids("ci-bot")),
                skip_email: true,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().starts_with("machine_user"), "{refused:?}");
    // No temporary password: accepted as for anyone, and nothing made.
    users
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids("ci-bot")),
        })
        .await
        .expect("the answer anyone gets");
    let after = users
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids("ci-bot")),
                field_mask: None,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.temporary_password_expires_at, None);
    assert_eq!(after.name, "CI runner");
}
