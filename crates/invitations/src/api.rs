//! The gRPC face of the invitations service: find out who calls, hand the
//! request to the service, map its error. No SQL and no rules here.

use std::sync::Arc;

use roster_core::auth::Authenticator;
use roster_core::handle;
use roster_proto::v1::mailer_server::Mailer;
use roster_proto::v1::{EnqueueMailRequest, EnqueueMailResponse};
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
