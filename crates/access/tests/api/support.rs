//! Shared helpers for the access service's API and store tests.

use std::sync::Arc;
use std::time::Duration;

use roster_access::store::AccessStore;
use roster_core::rights::RightSet;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    ApiKey, ApiKeys, AuthInfoRequest, AuthInfoResponse, ConsumeLoginTokenRequest,
    CreateLoginTokenRequest, CreateUserApiKeyRequest, DeleteUserApiKeyRequest,
    GetUserApiKeyRequest, ListUserApiKeysRequest, Right, State, UpdateUserApiKeyRequest,
    UpdateUserRequest, User, UserIdentifiers,
};
use roster_test_support::{TestEnv, with_cluster_key, with_token};
use tokio::sync::Notify;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

pub(crate) use roster_test_support::on_both_backends;
pub use roster_test_support::{assert_invalid_field, expect_code, total_count};

pub fn ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.into(),
        email: String::new(),
    }
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Rights as the enum numbers a request carries.
pub fn numbers(rights: &[Right]) -> Vec<i32> {
    rights.iter().map(|r| *r as i32).collect()
}

/// Every concrete user right, in enum-number order (what `RIGHT_USER_ALL`
/// expands to).
pub fn all_user_rights() -> Vec<i32> {
    RightSet::all_user().to_proto().rights
}

/// Every concrete right, in enum-number order (what `RIGHT_ALL` expands
/// to).
pub fn all_rights() -> Vec<i32> {
    RightSet::all().to_proto().rights
}

/// `rights` expanded and in enum-number order, as the service answers.
pub fn expanded(rights: &[Right]) -> Vec<i32> {
    RightSet::from_rights(rights.iter().copied())
        .to_proto()
        .rights
}

pub fn access(env: &TestEnv) -> UserAccessClient<Channel> {
    UserAccessClient::new(env.channel())
}

pub fn entity_access(env: &TestEnv) -> EntityAccessClient<Channel> {
    EntityAccessClient::new(env.channel())
}

pub fn registry(env: &TestEnv) -> UserRegistryClient<Channel> {
    UserRegistryClient::new(env.channel())
}

/// `message` with `token` as bearer, or without credentials for `None`.
pub fn as_caller<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    }
}

/// The access service's store, on the database the running service uses.
pub fn access_store(env: &TestEnv) -> Arc<dyn AccessStore> {
    roster_access::store::open(
        &env.access_db,
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    )
}

/// A create request for a key of `user_id`.
pub fn new_key(user_id: &str, name: &str, rights: &[Right]) -> CreateUserApiKeyRequest {
    CreateUserApiKeyRequest {
        user_ids: Some(ids(user_id)),
        name: name.into(),
        rights: numbers(rights),
        expires_at: None,
    }
}

pub async fn create_key(
    env: &TestEnv,
    token: &str,
    request: CreateUserApiKeyRequest,
) -> Result<ApiKey, Status> {
    access(env)
        .create_api_key(with_token(request, token))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn get_key(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    key_id: &str,
) -> Result<ApiKey, Status> {
    access(env)
        .get_api_key(with_token(
            GetUserApiKeyRequest {
                user_ids: Some(ids(user_id)),
                key_id: key_id.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// A key as a cluster caller reads it, to check stored state.
pub async fn stored_key(env: &TestEnv, user_id: &str, key_id: &str) -> Option<ApiKey> {
    match access(env)
        .get_api_key(with_cluster_key(GetUserApiKeyRequest {
            user_ids: Some(ids(user_id)),
            key_id: key_id.into(),
        }))
        .await
    {
        Ok(response) => Some(response.into_inner()),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("cannot read key {key_id} of {user_id}: {status:?}"),
    }
}

pub async fn list_keys(
    env: &TestEnv,
    token: &str,
    request: ListUserApiKeysRequest,
) -> Result<tonic::Response<ApiKeys>, Status> {
    access(env).list_api_keys(with_token(request, token)).await
}

pub async fn update_key(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    api_key: ApiKey,
    paths: Option<&[&str]>,
) -> Result<ApiKey, Status> {
    access(env)
        .update_api_key(with_token(
            UpdateUserApiKeyRequest {
                user_ids: Some(ids(user_id)),
                api_key: Some(api_key),
                field_mask: paths.and_then(mask),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn delete_key(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    key_id: &str,
) -> Result<(), Status> {
    access(env)
        .delete_api_key(with_token(
            DeleteUserApiKeyRequest {
                user_ids: Some(ids(user_id)),
                key_id: key_id.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The caller's rights on `user_id` (UserAccess.ListRights).
pub async fn list_rights(env: &TestEnv, token: &str, user_id: &str) -> Result<Vec<i32>, Status> {
    access(env)
        .list_rights(with_token(ids(user_id), token))
        .await
        .map(|r| r.into_inner().rights)
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

/// EntityAccess.ConsumeLoginToken as another service calls it (cluster
/// key); the user the token logged in as.
pub async fn consume(env: &TestEnv, token: &str) -> Result<String, Status> {
    entity_access(env)
        .consume_login_token(with_cluster_key(ConsumeLoginTokenRequest {
            token: token.into(),
        }))
        .await
        .map(|r| r.into_inner().user_ids.expect("user_ids").user_id)
}

/// UserAccess.CreateLoginToken with `token` (anonymous for `None`).
pub async fn create_login_token(
    env: &TestEnv,
    token: Option<&str>,
    user_id: &str,
    skip_email: bool,
) -> Result<String, Status> {
    access(env)
        .create_login_token(as_caller(
            CreateLoginTokenRequest {
                user_ids: Some(ids(user_id)),
                skip_email,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().token)
}

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

pub use roster_core::events::user_ids as event_user_ids;
pub use roster_test_support::{event_contains, event_data, next_event_where};

/// The secret part of a full token `<type>.<id>.<secret>`.
#[track_caller]
pub fn secret_of(token: &str) -> &str {
    token.rsplit('.').next().expect("a token")
}
