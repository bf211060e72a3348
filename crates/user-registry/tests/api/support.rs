//! Shared helpers for the API tests.

use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{CreateUserRequest, User, UserIdentifiers};
use roster_test_support::TestEnv;
use tonic::transport::Channel;

pub const PASSWORD: &str = "Correct-Horse-9";

/// The admin whose key the `*_as_admin` helpers use. A real user (made by
/// `TestEnv::admin_token` on first use, email `ops@example.com`, no name),
/// so it shows up in lists and searches, sorting by user ID after
/// alice..erin and before racer, solo, team-*, u1..u5 and user-*.
pub const ADMIN: &str = "ops";

pub fn registry(env: &TestEnv) -> UserRegistryClient<Channel> {
    UserRegistryClient::new(env.channel())
}

pub fn new_user(user_id: &str) -> User {
    User {
        ids: Some(UserIdentifiers {
            user_id: user_id.into(),
            email: String::new(),
        }),
        primary_email_address: format!("{user_id}@example.com"),
        password: PASSWORD.into(),
        name: format!("User {user_id}"),
        ..Default::default()
    }
}

/// Registers `user_id` without credentials and returns what came back.
pub async fn register(env: &TestEnv, user_id: &str) -> User {
    registry(env)
        .create(CreateUserRequest {
            user: Some(new_user(user_id)),
            invitation_token: String::new(),
        })
        .await
        .expect("create user")
        .into_inner()
}

/// Registers `user_id`, then has an admin mark its address validated (as
/// the validation link would): mails that reset a password go only to
/// validated addresses.
pub async fn register_validated(env: &TestEnv, user_id: &str) {
    register(env, user_id).await;
    update_user(
        env,
        &env.admin_token(ADMIN).await,
        User {
            primary_email_address_validated_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..new_user(user_id)
        },
        &["primary_email_address_validated_at"],
    )
    .await
    .expect("validate the address");
}

// ---- Helpers for the create, get, list, update, delete and search tests ----

/// A client of `EntityRegistrySearch`.
pub fn search_client(
    env: &TestEnv,
) -> roster_proto::v1::entity_registry_search_client::EntityRegistrySearchClient<Channel> {
    roster_proto::v1::entity_registry_search_client::EntityRegistrySearchClient::new(env.channel())
}

/// The user IDs of a page of users, in order.
pub fn user_ids_of(users: &roster_proto::v1::Users) -> Vec<String> {
    users
        .users
        .iter()
        .map(|u| u.ids.as_ref().expect("ids").user_id.clone())
        .collect()
}

/// A new key with `rights` of `user_id`, a user the test has created itself
/// (unlike `TestEnv::user_token`, which would create it first).
pub async fn key_of(env: &TestEnv, user_id: &str, rights: &[roster_proto::v1::Right]) -> String {
    env.api_key(user_id, rights).await.1
}

/// Creates `user` with a key of the [`ADMIN`].
pub async fn create_as_admin(env: &TestEnv, user: User) -> Result<User, tonic::Status> {
    let token = env.admin_token(ADMIN).await;
    registry(env)
        .create(roster_test_support::with_token(
            CreateUserRequest {
                user: Some(user),
                invitation_token: String::new(),
            },
            &token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Creates `user_id` as an approved admin (through `UserRegistry.Create`,
/// as the cluster) and returns a key of it with every right. No other admin
/// is made, so the last-admin guard sees only the admins a test creates.
pub async fn create_admin_user(env: &TestEnv, user_id: &str) -> String {
    env.admin_token(user_id).await
}

/// Gets `user_id` with `token` (no token: anonymous), limited to `paths`
/// when given.
pub async fn get_user(
    env: &TestEnv,
    user_id: &str,
    token: Option<&str>,
    paths: &[&str],
) -> Result<User, tonic::Status> {
    let message = roster_proto::v1::GetUserRequest {
        user_ids: Some(ids(user_id)),
        field_mask: if paths.is_empty() { None } else { mask(paths) },
    };
    let request = match token {
        Some(token) => roster_test_support::with_token(message, token),
        None => tonic::Request::new(message),
    };
    registry(env)
        .get(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Updates `user` (selected by its ids) with `token`, changing `paths`.
pub async fn update_user(
    env: &TestEnv,
    token: &str,
    user: User,
    paths: &[&str],
) -> Result<User, tonic::Status> {
    registry(env)
        .update(roster_test_support::with_token(
            roster_proto::v1::UpdateUserRequest {
                user: Some(user),
                field_mask: mask(paths),
                // The test users' current password, which a change of the
                // primary email address needs unless a full admin makes it.
                password: PASSWORD.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Soft-deletes `user_id` with `token`.
pub async fn delete_user(env: &TestEnv, user_id: &str, token: &str) -> Result<(), tonic::Status> {
    registry(env)
        .delete(roster_test_support::with_token(ids(user_id), token))
        .await
        .map(tonic::Response::into_inner)
}

/// Lists users with a key of the [`ADMIN`] (who is listed too when live);
/// returns the IDs and the total.
pub async fn list_as_admin(
    env: &TestEnv,
    request: roster_proto::v1::ListUsersRequest,
) -> (Vec<String>, u64) {
    let token = env.admin_token(ADMIN).await;
    let response = registry(env)
        .list(roster_test_support::with_token(request, &token))
        .await
        .expect("list users");
    let total = total_count(&response);
    (user_ids_of(response.get_ref()), total)
}

// ---- Helpers for the password, credentials, external-user and outbox
// ---- tests.

/// How long a test waits for something that should happen at once.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) use roster_test_support::on_both_backends;
pub use roster_test_support::total_count;

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

/// `user_id` as an admin sees it, every readable field set.
pub async fn get_as_admin(env: &TestEnv, user_id: &str) -> User {
    registry(env)
        .get(roster_test_support::with_token(
            roster_proto::v1::GetUserRequest {
                user_ids: Some(ids(user_id)),
                field_mask: None,
            },
            &env.admin_token(ADMIN).await,
        ))
        .await
        .expect("get user as admin")
        .into_inner()
}

/// Changes `paths` of `user` as an admin.
pub async fn update_as_admin(env: &TestEnv, user: User, paths: &[&str]) -> User {
    registry(env)
        .update(roster_test_support::with_token(
            roster_proto::v1::UpdateUserRequest {
                user: Some(user),
                field_mask: mask(paths),
                password: String::new(),
            },
            &env.admin_token(ADMIN).await,
        ))
        .await
        .expect("update user as admin")
        .into_inner()
}

/// Asserts `INVALID_ARGUMENT` naming `field` (messages read
/// "invalid `<field>`: <reason>").
#[track_caller]
pub fn assert_invalid_field(status: &tonic::Status, field: &str) {
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{field}: {status:?}"
    );
    assert!(
        status.message().contains(&format!("`{field}`")),
        "expected a violation of `{field}`, got {status:?}"
    );
}

/// The next event named `name` for which `matches` holds, skipping others;
/// `None` after `within`.
pub async fn next_event_where(
    stream: &mut roster_core::events::EventStream,
    name: &str,
    within: std::time::Duration,
    mut matches: impl FnMut(&roster_proto::v1::Event) -> bool,
) -> Option<roster_proto::v1::Event> {
    use futures::StreamExt;
    tokio::time::timeout(within, async {
        while let Some(event) = stream.next().await {
            if event.name == name && matches(&event) {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// The user data an event of this service carries.
pub fn user_event_data(event: &roster_proto::v1::Event) -> roster_proto::v1::UserEventData {
    event
        .data
        .as_ref()
        .expect("event data")
        .to_msg()
        .expect("UserEventData")
}

/// The user IDs an event names.
pub fn event_user_ids(event: &roster_proto::v1::Event) -> Vec<String> {
    use roster_proto::v1::entity_identifiers::Ids;
    event
        .identifiers
        .iter()
        .filter_map(|i| match &i.ids {
            Some(Ids::UserIds(u)) => Some(u.user_id.clone()),
            _ => None,
        })
        .collect()
}

/// Polls `condition` until it holds, failing the test after `within`.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let poll = async {
        while !condition().await {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(within, poll).await.is_err() {
        panic!("timed out waiting until {what}");
    }
}

/// UserCredentials.CheckPassword as another service calls it (cluster key).
/// A known user is `Ok` with `valid` saying whether `password` is right; an
/// unknown or deleted one is NOT_FOUND.
pub async fn check_password(
    env: &TestEnv,
    user_ids: UserIdentifiers,
    password: &str,
) -> Result<roster_proto::v1::CheckPasswordResponse, tonic::Status> {
    roster_proto::v1::user_credentials_client::UserCredentialsClient::new(env.channel())
        .check_password(roster_test_support::with_cluster_key(
            roster_proto::v1::CheckPasswordRequest {
                user_ids: Some(user_ids),
                password: password.into(),
                client_key: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}
