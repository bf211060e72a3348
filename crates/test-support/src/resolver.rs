//! A stand-in credential resolver for tests, until the access service
//! resolves real credentials: tests register tokens with the rights they
//! should carry, and the services under test authorise through the same
//! `Authenticator` as in production.

use std::collections::HashMap;
use std::sync::Mutex;

use roster_core::auth::CredentialResolver;
use roster_core::rights::RightSet;
use roster_proto::v1::{AuthInfoResponse, Right, Rights, State, UserIdentifiers};
use tonic::Status;

/// Resolves the tokens a test granted; every other token is
/// `UNAUTHENTICATED`.
#[derive(Default)]
pub struct StandInResolver {
    tokens: Mutex<HashMap<String, AuthInfoResponse>>,
}

impl StandInResolver {
    /// Grants `token` the `rights` on `user_id`'s own account.
    pub fn grant_user(&self, token: &str, user_id: &str, rights: &[Right]) {
        self.insert(
            token,
            info(
                user_id,
                RightSet::from_rights(rights.iter().copied()),
                false,
            ),
        );
    }

    /// Grants `token` an approved admin's rights.
    pub fn grant_admin(&self, token: &str, user_id: &str) {
        self.insert(token, info(user_id, RightSet::all(), true));
    }

    /// Makes `token` unknown again.
    pub fn revoke(&self, token: &str) {
        self.tokens.lock().unwrap().remove(token);
    }

    fn insert(&self, token: &str, info: AuthInfoResponse) {
        self.tokens.lock().unwrap().insert(token.to_string(), info);
    }
}

fn info(user_id: &str, rights: RightSet, admin: bool) -> AuthInfoResponse {
    AuthInfoResponse {
        user_ids: Some(UserIdentifiers {
            user_id: user_id.to_string(),
            email: String::new(),
        }),
        rights: Some(rights.to_proto()),
        universal_rights: Some(if admin {
            RightSet::all().to_proto()
        } else {
            Rights::default()
        }),
        is_admin: admin,
        state: State::Approved as i32,
        token_type: "api_key".into(),
        token_id: format!("test-{user_id}"),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl CredentialResolver for StandInResolver {
    async fn resolve(&self, token: &str) -> Result<AuthInfoResponse, Status> {
        self.tokens
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}
