//! What the access service needs to know about a user, asked of the user
//! registry (which owns users) over gRPC with the cluster key.

use chrono::{DateTime, Utc};
use roster_core::auth::ClusterCredential;
use roster_core::resend::ResendingChannel;
use roster_core::rights::RightSet;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{GetUserRequest, State, UserIdentifiers};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The facts about a user that decide what its credentials may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    /// Soft-deleted: its credentials do nothing until it is restored.
    pub deleted: bool,
    pub state: State,
    pub admin: bool,
    /// `User.universal_rights`: when set, no credential of the user may
    /// exceed it, admin or not.
    pub restriction: Option<RightSet>,
    pub email_validated: bool,
    pub require_password_update: bool,
    /// Where the user's mail goes (login tokens).
    pub email: String,
    pub name: String,
}

/// Looks users up.
#[async_trait::async_trait]
pub trait UserDirectory: Send + Sync + 'static {
    /// The user, deleted or not; `None` when there is no such user (never
    /// created, or purged).
    async fn subject(&self, user_id: &str) -> Result<Option<Subject>, Status>;
}

/// Asks the user registry (`UserRegistry.Get` as a cluster caller).
#[derive(Clone)]
pub struct GrpcUserDirectory {
    client: UserRegistryClient<ResendingChannel>,
    cluster: ClusterCredential,
}

const SUBJECT_PATHS: &[&str] = &[
    "created_at",
    "deleted_at",
    "state",
    "admin",
    "universal_rights",
    "primary_email_address_validated_at",
    "require_password_update",
    "primary_email_address",
    "name",
];

impl GrpcUserDirectory {
    pub fn new(channel: Channel, cluster_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: UserRegistryClient::new(ResendingChannel::new(channel)),
            cluster: ClusterCredential::new(cluster_key)?,
        })
    }
}

#[async_trait::async_trait]
impl UserDirectory for GrpcUserDirectory {
    async fn subject(&self, user_id: &str) -> Result<Option<Subject>, Status> {
        let request = self.cluster.request(GetUserRequest {
            user_ids: Some(UserIdentifiers {
                user_id: user_id.to_string(),
                email: String::new(),
            }),
            field_mask: Some(prost_types::FieldMask {
                paths: SUBJECT_PATHS.iter().map(|p| p.to_string()).collect(),
            }),
        });
        let user = match self.client.clone().get(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            // An ID the registry refuses as malformed names no user.
            Err(status) if status.code() == Code::InvalidArgument => return Ok(None),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "user lookup failed");
                return Err(Status::unavailable("the user registry is unavailable"));
            }
        };
        let created_at = user
            .created_at
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_default();
        Ok(Some(Subject {
            user_id: user_id.to_string(),
            created_at,
            deleted: user.deleted_at.is_some(),
            state: State::try_from(user.state).unwrap_or(State::Requested),
            admin: user.admin,
            restriction: user
                .universal_rights
                .as_ref()
                .map(|r| RightSet::from_i32s(&r.rights)),
            email_validated: user.primary_email_address_validated_at.is_some(),
            require_password_update: user.require_password_update,
            email: user.primary_email_address,
            name: user.name,
        }))
    }
}
