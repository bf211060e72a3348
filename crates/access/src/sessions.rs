//! Session tokens as the access service sees them: the sessions service
//! (which owns sessions) says whether one is valid, over gRPC with the
//! cluster key; the access service turns it into rights.

use chrono::{DateTime, Utc};
use roster_core::auth::ClusterCredential;
use roster_core::resend::ResendingChannel;
use roster_proto::v1::CheckSessionRequest;
use roster_proto::v1::session_credentials_client::SessionCredentialsClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub session_id: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub password_update_only: bool,
}

/// Checks session tokens.
#[async_trait::async_trait]
pub trait SessionDirectory: Send + Sync + 'static {
    /// The session of `token`, or `None` when it is not a valid one.
    async fn session(&self, token: &str) -> Result<Option<Session>, Status>;
}

/// Asks the sessions service (`SessionCredentials.CheckSession`).
#[derive(Clone)]
pub struct GrpcSessionDirectory {
    client: SessionCredentialsClient<ResendingChannel>,
    cluster: ClusterCredential,
}

impl GrpcSessionDirectory {
    pub fn new(channel: Channel, cluster_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: SessionCredentialsClient::new(ResendingChannel::new(channel)),
            cluster: ClusterCredential::new(cluster_key)?,
        })
    }
}

#[async_trait::async_trait]
impl SessionDirectory for GrpcSessionDirectory {
    async fn session(&self, token: &str) -> Result<Option<Session>, Status> {
        let request = self.cluster.request(CheckSessionRequest {
            token: token.to_string(),
        });
        match self.client.clone().check_session(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let Some(ids) = response.session_ids else {
                    return Ok(None);
                };
                Ok(Some(Session {
                    user_id: ids.user_ids.map(|u| u.user_id).unwrap_or_default(),
                    session_id: ids.session_id,
                    expires_at: response
                        .expires_at
                        .as_ref()
                        .and_then(roster_core::time::from_timestamp),
                    created_at: response
                        .created_at
                        .as_ref()
                        .and_then(roster_core::time::from_timestamp),
                    password_update_only: response.password_update_only,
                }))
            }
            Err(status) if status.code() == Code::Unauthenticated => Ok(None),
            // No sessions service in this deployment: no session is valid.
            Err(status) if status.code() == Code::Unimplemented => Ok(None),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "session check failed");
                Err(Status::unavailable("the sessions service is unavailable"))
            }
        }
    }
}
