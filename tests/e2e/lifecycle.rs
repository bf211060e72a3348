//! The account lifecycle across processes: an admin's lock or a
//! deactivation, made in the user registry's process, refuses the user's
//! API key and session in the access and sessions processes within a
//! second, though both keep resolved credentials for a minute (only the
//! `user.lifecycle.*` event can make them forget in time). Unlock brings
//! both back; reactivation brings back the key only.

use std::time::{Duration, Instant};

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::user_session_registry_client::UserSessionRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, DeactivateUserRequest, ListUserSessionsRequest,
    LockUserRequest, LoginRequest, Right, User,
};
use roster_test_support::with_token;
use tonic::Code;
use tonic::transport::Channel;

use crate::access::{Split, split_with};
use crate::{code_of, ids, list_alices_keys};

const PASSWORD: &str = "Correct-Horse-9";

/// The codes the access process (ListAPIKeys) and the sessions process
/// (UserSessionRegistry.List) answer `token` with, acting on alice.
async fn answers(access: &Channel, sessions: &Channel, token: &str) -> (Code, Code) {
    let keys = list_alices_keys(access, token).await;
    let listed = UserSessionRegistryClient::new(sessions.clone())
        .list(with_token(
            ListUserSessionsRequest {
                user_ids: Some(ids("alice")),
                ..Default::default()
            },
            token,
        ))
        .await;
    (code_of(&keys), code_of(&listed))
}

/// Waits, at most a second after `since`, until both processes refuse
/// every token of `tokens`.
async fn refused_everywhere_within_a_second(
    access: &Channel,
    sessions: &Channel,
    tokens: &[&str],
    since: Instant,
) {
    for token in tokens {
        loop {
            let answered = answers(access, sessions, token).await;
            if answered == (Code::Unauthenticated, Code::Unauthenticated) {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "a second after, a credential still works: {answered:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_lock_or_a_deactivation_refuses_credentials_in_every_process_within_a_second() {
    let split: Split = split_with(&[("ROSTER__AUTH__CACHE_TTL_MS", "60000".into())]).await;
    let registry = split.registry.channel().await;
    let access = split.access.channel().await;
    let sessions = split.sessions.channel().await;
    let admin = split.admin_key.clone();
    UserRegistryClient::new(registry.clone())
        .create(with_token(
            CreateUserRequest {
                user: Some(User {
                    ids: Some(ids("alice")),
                    primary_email_address: "alice@example.com".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                }),
                invitation_token: String::new(),
            },
            &admin,
        ))
        .await
        .expect("the admin creates alice");
    let key = UserAccessClient::new(access.clone())
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                name: "laptop".into(),
                rights: vec![Right::UserAll as i32],
                expires_at: None,
            },
            &admin,
        ))
        .await
        .expect("the admin makes alice a key")
        .into_inner()
        .key;
    let login = || async {
        AuthenticationClient::new(sessions.clone())
            .login(LoginRequest {
                user_ids: Some(ids("alice")),
                password: PASSWORD.into(),
            })
            .await
            .map(|r| r.into_inner().token)
    };
    let session = login().await.expect("alice logs in");
    // Both processes now hold both answers for a minute.
    for token in [&key, &session] {
        assert_eq!(
            answers(&access, &sessions, token).await,
            (Code::Ok, Code::Ok)
        );
    }
    let mut lifecycle = UserLifecycleClient::new(registry.clone());

    lifecycle
        .lock_user(with_token(
            LockUserRequest {
                user_ids: Some(ids("alice")),
                reason: "under review".into(),
            },
            &admin,
        ))
        .await
        .expect("the admin locks alice");
    refused_everywhere_within_a_second(&access, &sessions, &[&key, &session], Instant::now()).await;
    assert_eq!(
        login().await.unwrap_err().code(),
        Code::Unauthenticated,
        "a locked user logs in no more"
    );

    lifecycle
        .unlock_user(with_token(ids("alice"), &admin))
        .await
        .expect("the admin unlocks alice");
    for token in [&key, &session] {
        assert_eq!(
            answers(&access, &sessions, token).await,
            (Code::Ok, Code::Ok),
            "unlocked: the key and the session work again"
        );
    }

    lifecycle
        .deactivate_user(with_token(
            DeactivateUserRequest {
                user_ids: Some(ids("alice")),
                reason: "left".into(),
            },
            &admin,
        ))
        .await
        .expect("the admin deactivates alice");
    refused_everywhere_within_a_second(&access, &sessions, &[&key, &session], Instant::now()).await;
    // The sessions process ends alice's sessions on the event.
    let ended = Instant::now();
    loop {
        let left = UserSessionRegistryClient::new(sessions.clone())
            .list(with_token(
                ListUserSessionsRequest {
                    user_ids: Some(ids("alice")),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .expect("the admin lists alice's sessions")
            .into_inner()
            .sessions
            .len();
        if left == 0 {
            break;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(5),
            "alice's sessions did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    lifecycle
        .reactivate_user(with_token(ids("alice"), &admin))
        .await
        .expect("the admin reactivates alice");
    assert_eq!(
        answers(&access, &sessions, &key).await,
        (Code::Ok, Code::Ok),
        "reactivated: the key works again"
    );
    assert_eq!(
        answers(&access, &sessions, &session).await,
        (Code::Unauthenticated, Code::Unauthenticated),
        "the session ended with the deactivation"
    );
    login().await.expect("alice logs in again");
}
