//! Shared helpers for the API tests.

use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{CreateUserRequest, User, UserIdentifiers};
use roster_test_support::TestEnv;
use tonic::transport::Channel;

pub const PASSWORD: &str = "Correct-Horse-9";

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
