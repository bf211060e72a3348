//! End-to-end tests: `rosterd` started as a process, called over gRPC the
//! way an operator or a client would.

mod access;
mod embedded;
mod health;
mod journey;
mod lifecycle;
mod machines;
mod mail;
mod metrics;
mod process;
mod production;
mod rolling;
mod security;
mod sessions;
mod tls;

/// The identifiers of the user `id`, as most calls take them.
pub fn ids(id: &str) -> roster_proto::v1::UserIdentifiers {
    roster_proto::v1::UserIdentifiers {
        user_id: id.into(),
        email: String::new(),
    }
}

/// The status code of a call's outcome (`OK` for an answer).
pub fn code_of<T>(outcome: &Result<T, tonic::Status>) -> tonic::Code {
    outcome
        .as_ref()
        .err()
        .map_or(tonic::Code::Ok, tonic::Status::code)
}

/// `UserAccess.ListAPIKeys` of alice's keys, asked with `token` at
/// `access`: what a credential can still do at the access service.
pub async fn list_alices_keys(
    access: &tonic::transport::Channel,
    token: &str,
) -> Result<tonic::Response<roster_proto::v1::ApiKeys>, tonic::Status> {
    roster_proto::v1::user_access_client::UserAccessClient::new(access.clone())
        .list_api_keys(roster_test_support::with_token(
            roster_proto::v1::ListUserApiKeysRequest {
                user_ids: Some(ids("alice")),
                ..Default::default()
            },
            token,
        ))
        .await
}
