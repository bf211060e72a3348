//! What the invitations service needs to know about users, asked of the
//! user registry (which owns them) over gRPC with the cluster key: only
//! whether a user exists, to settle a claim whose registration went
//! silent.

use roster_core::auth::ClusterCredential;
use roster_core::resend::ResendingChannel;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{GetUserRequest, UserIdentifiers};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Asks whether users exist.
#[async_trait::async_trait]
pub trait UserLookup: Send + Sync + 'static {
    /// Whether the user exists. A soft-deleted user that is not purged yet
    /// exists; a purged or never created one does not. `UNAVAILABLE` when
    /// the answer cannot be had.
    async fn exists(&self, user_id: &str) -> Result<bool, Status>;
}

/// Asks the user registry (`UserRegistry.Get` as a cluster caller, which
/// sees soft-deleted users too).
#[derive(Clone)]
pub struct GrpcUserLookup {
    client: UserRegistryClient<ResendingChannel>,
    cluster: ClusterCredential,
}

impl GrpcUserLookup {
    pub fn new(channel: Channel, cluster_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: UserRegistryClient::new(ResendingChannel::new(channel)),
            cluster: ClusterCredential::new(cluster_key)?,
        })
    }
}

#[async_trait::async_trait]
impl UserLookup for GrpcUserLookup {
    async fn exists(&self, user_id: &str) -> Result<bool, Status> {
        let request = self.cluster.request(GetUserRequest {
            user_ids: Some(UserIdentifiers {
                user_id: user_id.to_string(),
                email: String::new(),
            }),
            // The smallest answer: `ids` and the timestamps always come.
            field_mask: Some(prost_types::FieldMask {
                paths: vec!["created_at".to_string()],
            }),
        });
        match self.client.clone().get(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            // An ID the registry refuses as malformed names no user.
            Err(status) if status.code() == Code::InvalidArgument => Ok(false),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "user lookup failed");
                Err(Status::unavailable("the user registry is unavailable"))
            }
        }
    }
}
