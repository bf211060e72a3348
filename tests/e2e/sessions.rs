//! Sessions across processes: a session made by the sessions process works
//! in every other one, and ends everywhere within a second when its user's
//! password changes (revoking all access), the user is suspended or
//! deleted.

use std::time::{Duration, Instant};

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserRequest, GetUserRequest, LoginRequest, State, UpdateUserPasswordRequest,
    UpdateUserRequest, User,
};
use roster_test_support::with_token;
use tonic::Code;
use tonic::transport::Channel;

use crate::access::{Split, split};
use crate::{code_of, ids, list_alices_keys};

const PASSWORD: &str = "Correct-Horse-9";

/// Alice, created by the admin, logged in through the sessions process.
async fn alice_logged_in(split: &Split) -> String {
    UserRegistryClient::new(split.registry.channel().await)
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
            &split.admin_key,
        ))
        .await
        .expect("the admin creates alice");
    AuthenticationClient::new(split.sessions.channel().await)
        .login(LoginRequest {
            user_ids: Some(ids("alice")),
            password: PASSWORD.into(),
        })
        .await
        .expect("alice logs in")
        .into_inner()
        .token
}

/// Whether the registry and the access process accept `token` as alice.
async fn accepted(registry: &Channel, access: &Channel, token: &str) -> (Code, Code) {
    let get = UserRegistryClient::new(registry.clone())
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids("alice")),
                field_mask: None,
            },
            token,
        ))
        .await;
    let keys = list_alices_keys(access, token).await;
    (code_of(&get), code_of(&keys))
}

/// Runs `revoke`, then waits (at most a second) until both processes
/// refuse the session.
async fn ends_everywhere_within_a_second<F: Future<Output = ()>>(
    split: &Split,
    revoke: impl FnOnce(String) -> F,
) {
    let token = alice_logged_in(split).await;
    let registry = split.registry.channel().await;
    let access = split.access.channel().await;
    assert_eq!(
        accepted(&registry, &access, &token).await,
        (Code::Ok, Code::Ok)
    );
    revoke(token.clone()).await;
    let revoked = Instant::now();
    loop {
        let (get, keys) = accepted(&registry, &access, &token).await;
        if get == Code::Unauthenticated && keys == Code::Unauthenticated {
            return;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "a second after, the session still works: Get {get:?}, ListAPIKeys {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_password_change_that_revokes_all_access_ends_the_session_everywhere() {
    let split = split().await;
    let registry = split.registry.channel().await;
    ends_everywhere_within_a_second(&split, |_| async move {
        UserRegistryClient::new(registry)
            .update_password(UpdateUserPasswordRequest {
                user_ids: Some(ids("alice")),
                old: PASSWORD.into(),
                new: "Battery-Staple-10".into(),
                revoke_all_access: true,
            })
            .await
            .expect("alice changes her password");
    })
    .await;
}

#[tokio::test]
async fn suspending_the_user_ends_the_session_everywhere() {
    let split = split().await;
    let registry = split.registry.channel().await;
    let admin = split.admin_key.clone();
    ends_everywhere_within_a_second(&split, |_| async move {
        UserRegistryClient::new(registry)
            .update(with_token(
                UpdateUserRequest {
                    user: Some(User {
                        ids: Some(ids("alice")),
                        state: State::Suspended as i32,
                        ..Default::default()
                    }),
                    field_mask: Some(prost_types::FieldMask {
                        paths: vec!["state".into()],
                    }),
                    password: String::new(),
                },
                &admin,
            ))
            .await
            .expect("the admin suspends alice");
    })
    .await;
}

#[tokio::test]
async fn deleting_the_user_ends_the_session_everywhere() {
    let split = split().await;
    let registry = split.registry.channel().await;
    let admin = split.admin_key.clone();
    ends_everywhere_within_a_second(&split, |_| async move {
        UserRegistryClient::new(registry)
            .delete(with_token(ids("alice"), &admin))
            .await
            .expect("the admin deletes alice");
    })
    .await;
}
