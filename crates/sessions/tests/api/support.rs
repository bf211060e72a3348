//! Shared helpers for the sessions service's API and store tests. Other
//! test files import these by name: keep the names and signatures stable.

use std::time::Duration;

use roster_core::time::ManualClock;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::session_credentials_client::SessionCredentialsClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::user_session_registry_client::UserSessionRegistryClient;
use roster_proto::v1::{
    AuthInfoRequest, AuthInfoResponse, CheckSessionRequest, CheckSessionResponse,
    CreateLoginTokenRequest, GetUserRequest, ListUserSessionsRequest, LoginRequest, LoginResponse,
    LoginWithTokenRequest, State, UpdateUserRequest, User, UserIdentifiers, UserSessionIdentifiers,
    UserSessions,
};
use roster_test_support::{
    Backend, TEST_PASSWORD, TestConfig, TestEnv, with_cluster_key, with_token,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// The user agent [`with_user_agent`] sends unless told otherwise.
pub const TEST_USER_AGENT: &str = "roster-sessions-tests/1.0";

/// The default session lifetime (`sessions.session_ttl_secs`), 30 days.
pub const DEFAULT_TTL: chrono::Duration = chrono::Duration::days(30);

pub(crate) use roster_test_support::on_both_backends;
pub use roster_test_support::{assert_invalid_field, expect_code, total_count};

// ---- Environments ------------------------------------------------------

/// The services on `backend` with default settings.
pub async fn start(backend: Backend) -> TestEnv {
    TestEnv::start_configured(backend, TestConfig::default()).await
}

/// The services on `backend` with the default settings changed by
/// `configure`.
pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut TestConfig)) -> TestEnv {
    let mut config = TestConfig::default();
    configure(&mut config);
    TestEnv::start_configured(backend, config).await
}

/// The services on `backend` with the sessions service on a [`ManualClock`]
/// the test moves, and no credential cache (the cache checks expiry on the
/// system clock, which the manual one leaves behind).
pub async fn start_with_clock(
    backend: Backend,
    configure: impl FnOnce(&mut TestConfig),
) -> (TestEnv, ManualClock) {
    let clock = ManualClock::new();
    let env = start_with(backend, |config| {
        config.clock = Some(clock.clone());
        config.auth.cache_ttl_ms = 0;
        configure(config);
    })
    .await;
    (env, clock)
}

// ---- Clients -----------------------------------------------------------

pub fn authentication(env: &TestEnv) -> AuthenticationClient<Channel> {
    AuthenticationClient::new(env.channel())
}

pub fn session_registry(env: &TestEnv) -> UserSessionRegistryClient<Channel> {
    UserSessionRegistryClient::new(env.channel())
}

pub fn session_credentials(env: &TestEnv) -> SessionCredentialsClient<Channel> {
    SessionCredentialsClient::new(env.channel())
}

pub fn registry(env: &TestEnv) -> UserRegistryClient<Channel> {
    UserRegistryClient::new(env.channel())
}

pub fn entity_access(env: &TestEnv) -> EntityAccessClient<Channel> {
    EntityAccessClient::new(env.channel())
}

pub fn user_access(env: &TestEnv) -> UserAccessClient<Channel> {
    UserAccessClient::new(env.channel())
}

/// A channel to the services under test from the local address `ip` (any
/// address in 127.0.0.0/8): the client address the services see, for
/// rate limits and events.
pub async fn channel_from(env: &TestEnv, ip: &str) -> Channel {
    Channel::from_shared(format!("http://{}", env.addr))
        .expect("uri")
        .local_address(Some(ip.parse().expect("an IP address")))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect from {ip}: {e}"))
}

/// Authentication.Login from the client address `ip` (see
/// [`channel_from`]).
pub async fn login_from(
    env: &TestEnv,
    ip: &str,
    request: tonic::Request<LoginRequest>,
) -> Result<LoginResponse, Status> {
    AuthenticationClient::new(channel_from(env, ip).await)
        .login(request)
        .await
        .map(tonic::Response::into_inner)
}

// ---- Requests ----------------------------------------------------------

pub fn ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.into(),
        email: String::new(),
    }
}

pub fn email_ids(email: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: String::new(),
        email: email.into(),
    }
}

/// The identifiers a login names: an email when `who` holds an `@`, a user
/// ID otherwise.
pub fn login_ids(who: &str) -> UserIdentifiers {
    if who.contains('@') {
        email_ids(who)
    } else {
        ids(who)
    }
}

pub fn session_ids(user_id: &str, session_id: &str) -> UserSessionIdentifiers {
    UserSessionIdentifiers {
        user_ids: Some(ids(user_id)),
        session_id: session_id.into(),
    }
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// `message` with `token` as bearer, or without credentials for `None`.
pub fn as_caller<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    }
}

/// `request` with a `user-agent` header (tonic appends its own after it).
pub fn with_user_agent<T>(mut request: tonic::Request<T>, user_agent: &str) -> tonic::Request<T> {
    request.metadata_mut().insert(
        "user-agent",
        user_agent.parse().expect("an ASCII user agent"),
    );
    request
}

// ---- Authentication ----------------------------------------------------

/// Authentication.Login as an anonymous caller; `who` is a user ID or an
/// email address (see [`login_ids`]).
pub async fn login(env: &TestEnv, who: &str, password: &str) -> Result<LoginResponse, Status> {
    login_request(env, tonic::Request::new(login_message(who, password))).await
}

/// The body of a Login for `who` (see [`login_ids`]) and `password`.
pub fn login_message(who: &str, password: &str) -> LoginRequest {
    LoginRequest {
        user_ids: Some(login_ids(who)),
        password: password.into(),
    }
}

/// Authentication.Login with a request built by the test (metadata, odd
/// bodies).
pub async fn login_request(
    env: &TestEnv,
    request: tonic::Request<LoginRequest>,
) -> Result<LoginResponse, Status> {
    authentication(env)
        .login(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A new session of `user_id` (created approved if missing) with
/// [`TEST_PASSWORD`]; panics when the login fails.
pub async fn login_as(env: &TestEnv, user_id: &str) -> LoginResponse {
    env.ensure_user(user_id, false).await;
    login(env, user_id, TEST_PASSWORD)
        .await
        .unwrap_or_else(|s| panic!("cannot log {user_id} in: {s:?}"))
}

/// Authentication.LoginWithToken as an anonymous caller.
pub async fn login_with_token(env: &TestEnv, token: &str) -> Result<LoginResponse, Status> {
    authentication(env)
        .login_with_token(LoginWithTokenRequest {
            token: token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Authentication.Logout with `token` (anonymous for `None`).
pub async fn logout(env: &TestEnv, token: Option<&str>) -> Result<(), Status> {
    authentication(env)
        .logout(as_caller((), token))
        .await
        .map(tonic::Response::into_inner)
}

/// UserAccess.CreateLoginToken for `user_id` by `admin` (a key of an
/// admin), without mail: the token, which an admin gets back.
pub async fn create_login_token(env: &TestEnv, admin: &str, user_id: &str) -> String {
    let token = user_access(env)
        .create_login_token(with_token(
            CreateLoginTokenRequest {
                user_ids: Some(ids(user_id)),
                skip_email: true,
            },
            admin,
        ))
        .await
        .unwrap_or_else(|s| panic!("create a login token for {user_id}: {s:?}"))
        .into_inner()
        .token;
    assert!(
        token.starts_with("rlt."),
        "an admin gets the login token back: {token:?}"
    );
    token
}

// ---- UserSessionRegistry -----------------------------------------------

/// UserSessionRegistry.List of `user_id`'s sessions, first page of 100, in
/// the default order, with `token` (anonymous for `None`).
pub async fn list_sessions(
    env: &TestEnv,
    token: Option<&str>,
    user_id: &str,
) -> Result<tonic::Response<UserSessions>, Status> {
    list_sessions_with(
        env,
        token,
        ListUserSessionsRequest {
            user_ids: Some(ids(user_id)),
            ..Default::default()
        },
    )
    .await
}

/// UserSessionRegistry.List with a request built by the test.
pub async fn list_sessions_with(
    env: &TestEnv,
    token: Option<&str>,
    request: ListUserSessionsRequest,
) -> Result<tonic::Response<UserSessions>, Status> {
    session_registry(env).list(as_caller(request, token)).await
}

/// UserSessionRegistry.Delete of `user_id`'s session `session_id` with
/// `token` (anonymous for `None`).
pub async fn delete_session(
    env: &TestEnv,
    token: Option<&str>,
    user_id: &str,
    session_id: &str,
) -> Result<(), Status> {
    session_registry(env)
        .delete(as_caller(session_ids(user_id, session_id), token))
        .await
        .map(tonic::Response::into_inner)
}

/// The session IDs of a list, in the order listed.
pub fn listed_ids(sessions: &UserSessions) -> Vec<String> {
    sessions
        .sessions
        .iter()
        .map(|s| s.session_id.clone())
        .collect()
}

// ---- Credentials -------------------------------------------------------

/// SessionCredentials.CheckSession as the access service calls it
/// (cluster key).
pub async fn check_session(env: &TestEnv, token: &str) -> Result<CheckSessionResponse, Status> {
    session_credentials(env)
        .check_session(with_cluster_key(CheckSessionRequest {
            token: token.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// EntityAccess.AuthInfo as another service calls it (cluster key).
pub async fn auth_info(env: &TestEnv, token: &str) -> Result<AuthInfoResponse, Status> {
    entity_access(env)
        .auth_info(with_cluster_key(AuthInfoRequest {
            token: token.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// UserRegistry.Get of `user_id` with `token`: what a credential can do.
pub async fn get_user(env: &TestEnv, token: &str, user_id: &str) -> Result<User, Status> {
    registry(env)
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids(user_id)),
                field_mask: None,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Whether `token` works as a credential: UserRegistry.Get of its own user
/// succeeds with every field (RIGHT_USER_INFO).
pub async fn token_works(env: &TestEnv, token: &str, user_id: &str) -> bool {
    match get_user(env, token, user_id).await {
        Ok(user) => !user.primary_email_address.is_empty(),
        Err(status) if status.code() == Code::Unauthenticated => false,
        Err(status) => panic!("unexpected answer to Get of {user_id}: {status:?}"),
    }
}

/// The session ID part of a token `<type>.<id>.<secret>`.
#[track_caller]
pub fn id_of(token: &str) -> &str {
    token.split('.').nth(1).expect("a token")
}

/// The secret part of a token `<type>.<id>.<secret>`.
#[track_caller]
pub fn secret_of(token: &str) -> &str {
    token.rsplit('.').next().expect("a token")
}

// ---- Users -------------------------------------------------------------

/// Changes `paths` of `user` with `admin` (a key with universal rights).
pub async fn update_user(env: &TestEnv, admin: &str, user: User, paths: &[&str]) {
    let user_id = user.ids.as_ref().map(|i| i.user_id.clone());
    registry(env)
        .update(with_token(
            UpdateUserRequest {
                user: Some(user),
                field_mask: mask(paths),
                password: String::new(),
            },
            admin,
        ))
        .await
        .unwrap_or_else(|s| panic!("update {user_id:?} {paths:?}: {s:?}"));
}

/// Puts `user_id` in `state` as the admin holding `admin`.
pub async fn set_state(env: &TestEnv, admin: &str, user_id: &str, state: State) {
    update_user(
        env,
        admin,
        User {
            ids: Some(ids(user_id)),
            state: state as i32,
            ..Default::default()
        },
        &["state"],
    )
    .await;
}

/// Makes `user_id` change the password at the next login (admin update of
/// `require_password_update`).
pub async fn require_password_update(env: &TestEnv, admin: &str, user_id: &str) {
    update_user(
        env,
        admin,
        User {
            ids: Some(ids(user_id)),
            require_password_update: true,
            ..Default::default()
        },
        &["require_password_update"],
    )
    .await;
}

// ---- Answers -----------------------------------------------------------

// ---- Events ------------------------------------------------------------

pub use roster_core::events::user_ids as event_user_ids;
pub use roster_test_support::{event_contains, event_data, next_event_where};
