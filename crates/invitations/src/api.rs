//! The gRPC face of the invitations service: find out who calls, hand the
//! request to the service, map its error. No SQL and no rules here.

use std::sync::Arc;

use roster_core::auth::Authenticator;
use roster_core::handle;
use roster_core::list::with_total_count;
use roster_proto::v1::invitation_tokens_server::InvitationTokens;
use roster_proto::v1::mailer_server::Mailer;
use roster_proto::v1::user_invitation_registry_server::UserInvitationRegistry;
use roster_proto::v1::{
    ClaimInvitationRequest, ClaimInvitationResponse, DeleteInvitationRequest, EnqueueMailRequest,
    EnqueueMailResponse, GetInvitationRequest, Invitation, Invitations, ListInvitationsRequest,
    ResendInvitationRequest, SendInvitationRequest, SendInvitationsResponse,
    SettleInvitationClaimRequest,
};
use tonic::{Request, Response, Status};

use crate::service::InvitationsService;

/// Implements the gRPC services of the invitations service.
#[derive(Clone)]
pub struct InvitationsApi {
    service: Arc<InvitationsService>,
    auth: Arc<Authenticator>,
}

impl InvitationsApi {
    pub fn new(service: Arc<InvitationsService>, auth: Arc<Authenticator>) -> Self {
        Self { service, auth }
    }
}

#[tonic::async_trait]
impl Mailer for InvitationsApi {
    async fn enqueue(
        &self,
        request: Request<EnqueueMailRequest>,
    ) -> Result<Response<EnqueueMailResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .enqueue(&ctx, msg))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl UserInvitationRegistry for InvitationsApi {
    async fn send(
        &self,
        request: Request<SendInvitationRequest>,
    ) -> Result<Response<SendInvitationsResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.send(&ctx, msg)).map(Response::new)
    }

    async fn list(
        &self,
        request: Request<ListInvitationsRequest>,
    ) -> Result<Response<Invitations>, Status> {
        let (invitations, total) =
            handle!(self.auth, request, |ctx, msg| self.service.list(&ctx, msg))?;
        Ok(with_total_count(invitations, total))
    }

    async fn delete(
        &self,
        request: Request<DeleteInvitationRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .delete(&ctx, msg))
        .map(Response::new)
    }

    async fn get(
        &self,
        request: Request<GetInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.get(&ctx, msg)).map(Response::new)
    }

    async fn resend(
        &self,
        request: Request<ResendInvitationRequest>,
    ) -> Result<Response<Invitation>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .resend(&ctx, msg))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl InvitationTokens for InvitationsApi {
    async fn claim(
        &self,
        request: Request<ClaimInvitationRequest>,
    ) -> Result<Response<ClaimInvitationResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.claim(&ctx, msg)).map(Response::new)
    }

    async fn accept(
        &self,
        request: Request<SettleInvitationClaimRequest>,
    ) -> Result<Response<Invitation>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .accept(&ctx, msg))
        .map(Response::new)
    }

    async fn release(
        &self,
        request: Request<SettleInvitationClaimRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .release(&ctx, msg))
        .map(Response::new)
    }
}
