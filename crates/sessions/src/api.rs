//! The gRPC face of the sessions service: find out who calls, hand the
//! request to the service, map its error. No SQL and no rules here.

use std::sync::Arc;

use roster_core::auth::Authenticator;
use roster_core::handle;
use roster_core::list::with_total_count;
use roster_proto::v1::authentication_server::Authentication;
use roster_proto::v1::session_credentials_server::SessionCredentials;
use roster_proto::v1::user_session_registry_server::UserSessionRegistry;
use roster_proto::v1::{
    CheckSessionRequest, CheckSessionResponse, CompleteLoginRequest, ListUserSessionsRequest,
    LoginRequest, LoginResponse, LoginWithTokenRequest, SendLoginEmailCodeRequest,
    UserSessionIdentifiers, UserSessions,
};
use tonic::{Request, Response, Status};

use crate::service::SessionsService;

/// Implements every gRPC service of the sessions service.
#[derive(Clone)]
pub struct SessionsApi {
    service: Arc<SessionsService>,
    auth: Arc<Authenticator>,
}

impl SessionsApi {
    pub fn new(service: Arc<SessionsService>, auth: Arc<Authenticator>) -> Self {
        Self { service, auth }
    }
}

#[tonic::async_trait]
impl Authentication for SessionsApi {
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.login(&ctx, msg)).map(Response::new)
    }

    async fn login_with_token(
        &self,
        request: Request<LoginWithTokenRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .login_with_token(&ctx, msg.token))
        .map(Response::new)
    }

    async fn complete_login(
        &self,
        request: Request<CompleteLoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .complete_login(&ctx, msg))
        .map(Response::new)
    }

    async fn send_login_email_code(
        &self,
        request: Request<SendLoginEmailCodeRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .send_login_email_code(&ctx, msg.challenge))
        .map(Response::new)
    }

    async fn logout(&self, request: Request<()>) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, _msg| self.service.logout(&ctx)).map(Response::new)
    }
}

#[tonic::async_trait]
impl UserSessionRegistry for SessionsApi {
    async fn list(
        &self,
        request: Request<ListUserSessionsRequest>,
    ) -> Result<Response<UserSessions>, Status> {
        let (sessions, total) =
            handle!(self.auth, request, |ctx, msg| self.service.list(&ctx, msg))?;
        Ok(with_total_count(sessions, total))
    }

    async fn delete(
        &self,
        request: Request<UserSessionIdentifiers>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .delete(&ctx, msg))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl SessionCredentials for SessionsApi {
    async fn check_session(
        &self,
        request: Request<CheckSessionRequest>,
    ) -> Result<Response<CheckSessionResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .check_session(&ctx, &msg.token))
        .map(Response::new)
    }
}
