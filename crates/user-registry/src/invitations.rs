//! The invitations service as the user registry sees it: registering with
//! an invitation token claims the invitation, creates the user, and then
//! accepts the claim (or releases it when the user could not be created).
//!
//! The invitations service owns invitations and the user registry owns
//! users, so neither can do both in one transaction. The claim is what
//! makes the pair safe: of concurrent registrations on one token only one
//! claim succeeds, so only one user is created; an invitation is only
//! accepted once its user exists; and a claim whose Accept was lost (a
//! crash between the two) is settled by the invitations service, which asks
//! this registry whether the claiming user exists before it lets anyone
//! else claim the invitation.

use roster_core::auth::ClusterCredential;
use roster_core::resend::ResendingChannel;
use roster_proto::v1::invitation_tokens_client::InvitationTokensClient;
use roster_proto::v1::{ClaimInvitationRequest, SettleInvitationClaimRequest};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// An invitation reserved for a user about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub invitation_id: String,
    pub claim_id: String,
    /// The address the invitation was sent to.
    pub email: String,
}

/// Claims, accepts and releases invitations.
#[async_trait::async_trait]
pub trait Invitations: Send + Sync + 'static {
    /// Reserves the invitation of `token` for `user_id`. Errors the caller
    /// should see (a wrong, expired or used token) come back as they are;
    /// anything else is UNAVAILABLE.
    async fn claim(&self, token: &str, user_id: &str) -> Result<Claim, Status>;

    /// The user exists: the invitation is used up.
    async fn accept(&self, claim: &Claim) -> Result<(), Status>;

    /// The user was not created: the token works again.
    async fn release(&self, claim: &Claim) -> Result<(), Status>;
}

/// Calls `InvitationTokens` with the cluster key.
#[derive(Clone)]
pub struct GrpcInvitations {
    client: InvitationTokensClient<ResendingChannel>,
    cluster: ClusterCredential,
}

impl GrpcInvitations {
    pub fn new(channel: Channel, cluster_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: InvitationTokensClient::new(ResendingChannel::new(channel)),
            cluster: ClusterCredential::new(cluster_key)?,
        })
    }

    fn settle(claim: &Claim) -> SettleInvitationClaimRequest {
        SettleInvitationClaimRequest {
            invitation_id: claim.invitation_id.clone(),
            claim_id: claim.claim_id.clone(),
        }
    }
}

/// Answers meant for the registering caller pass through; the rest means
/// the invitations service cannot help right now.
fn for_caller(status: Status) -> Status {
    match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::ResourceExhausted => status,
        code => {
            tracing::warn!(
                ?code,
                message = status.message(),
                "invitation service call failed"
            );
            Status::unavailable("the invitations service is unavailable; try again")
        }
    }
}

#[async_trait::async_trait]
impl Invitations for GrpcInvitations {
    async fn claim(&self, token: &str, user_id: &str) -> Result<Claim, Status> {
        let response = self
            .client
            .clone()
            .claim(self.cluster.request(ClaimInvitationRequest {
                token: token.to_string(),
                user_id: user_id.to_string(),
            }))
            .await
            .map_err(for_caller)?
            .into_inner();
        let invitation = response.invitation.unwrap_or_default();
        Ok(Claim {
            invitation_id: invitation.id,
            claim_id: response.claim_id,
            email: invitation.email,
        })
    }

    async fn accept(&self, claim: &Claim) -> Result<(), Status> {
        self.client
            .clone()
            .accept(self.cluster.request(Self::settle(claim)))
            .await
            .map(|_| ())
    }

    async fn release(&self, claim: &Claim) -> Result<(), Status> {
        self.client
            .clone()
            .release(self.cluster.request(Self::settle(claim)))
            .await
            .map(|_| ())
    }
}
