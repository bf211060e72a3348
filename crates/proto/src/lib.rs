//! The `roster.v1` API contract as Rust types: messages, enums, tonic clients
//! and servers, generated from `proto/roster/v1`. No logic lives here beyond
//! small conversions that every service needs.

/// Everything in the `roster.v1` protobuf package.
pub mod v1 {
    #![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
    tonic::include_proto!("roster.v1");
}

/// The encoded file descriptor set of the whole contract, served by gRPC
/// reflection so `grpcurl` works without `.proto` files.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("roster_descriptor");

/// Every gRPC service name of the contract, fully qualified.
pub const SERVICE_NAMES: &[&str] = &[
    "roster.v1.UserRegistry",
    "roster.v1.EntityRegistrySearch",
    "roster.v1.UserCredentials",
    "roster.v1.ExternalUserRegistry",
    "roster.v1.EntityAccess",
    "roster.v1.UserAccess",
    "roster.v1.UserInvitationRegistry",
    "roster.v1.InvitationTokens",
    "roster.v1.UserSessionRegistry",
    "roster.v1.SessionCredentials",
    "roster.v1.Authentication",
    "roster.v1.NotificationService",
    "roster.v1.Mailer",
    "roster.v1.UserLifecycle",
    "roster.v1.UserMetadata",
    "roster.v1.UserAuthenticationFactors",
    "roster.v1.SecondFactorCredentials",
];

#[cfg(test)]
mod tests {
    use super::{FILE_DESCRIPTOR_SET, SERVICE_NAMES};
    use prost::Message;
    use std::collections::BTreeSet;

    #[test]
    fn service_names_match_the_descriptor_set() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("the file descriptor set decodes");
        let found: BTreeSet<String> = fds
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service
                    .iter()
                    .map(move |service| format!("{package}.{}", service.name()))
            })
            .collect();
        let listed: BTreeSet<String> = SERVICE_NAMES.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            listed.len(),
            SERVICE_NAMES.len(),
            "SERVICE_NAMES has duplicates"
        );
        assert_eq!(found, listed);
    }
}
