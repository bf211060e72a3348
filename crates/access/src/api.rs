//! The gRPC face of the access service: find out who calls, hand the
//! request to the service, map its error. No SQL and no rules here.

use std::sync::Arc;

use roster_core::auth::Authenticator;
use roster_core::handle;
use roster_core::list::with_total_count;
use roster_proto::v1::entity_access_server::EntityAccess;
use roster_proto::v1::user_access_server::UserAccess;
use roster_proto::v1::{
    ApiKey, ApiKeys, AuthInfoRequest, AuthInfoResponse, ConsumeLoginTokenRequest,
    ConsumeLoginTokenResponse, CreateLoginTokenRequest, CreateLoginTokenResponse,
    CreateUserApiKeyRequest, DeleteUserApiKeyRequest, GetUserApiKeyRequest, ListUserApiKeysRequest,
    Rights, UpdateUserApiKeyRequest, UserIdentifiers,
};
use tonic::{Request, Response, Status};

use crate::service::AccessService;

/// Implements every gRPC service of the access service.
#[derive(Clone)]
pub struct AccessApi {
    service: Arc<AccessService>,
    auth: Arc<Authenticator>,
}

impl AccessApi {
    pub fn new(service: Arc<AccessService>, auth: Arc<Authenticator>) -> Self {
        Self { service, auth }
    }
}

#[tonic::async_trait]
impl UserAccess for AccessApi {
    async fn list_rights(
        &self,
        request: Request<UserIdentifiers>,
    ) -> Result<Response<Rights>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .list_rights(&ctx, msg))
        .map(Response::new)
    }

    async fn create_api_key(
        &self,
        request: Request<CreateUserApiKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .create_api_key(&ctx, msg))
        .map(Response::new)
    }

    async fn delete_api_key(
        &self,
        request: Request<DeleteUserApiKeyRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .delete_api_key(&ctx, msg))
        .map(Response::new)
    }

    async fn list_api_keys(
        &self,
        request: Request<ListUserApiKeysRequest>,
    ) -> Result<Response<ApiKeys>, Status> {
        let (keys, total) = handle!(self.auth, request, |ctx, msg| self
            .service
            .list_api_keys(&ctx, msg))?;
        Ok(with_total_count(keys, total))
    }

    async fn get_api_key(
        &self,
        request: Request<GetUserApiKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .get_api_key(&ctx, msg))
        .map(Response::new)
    }

    async fn update_api_key(
        &self,
        request: Request<UpdateUserApiKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .update_api_key(&ctx, msg))
        .map(Response::new)
    }

    async fn create_login_token(
        &self,
        request: Request<CreateLoginTokenRequest>,
    ) -> Result<Response<CreateLoginTokenResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .create_login_token(&ctx, msg))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl EntityAccess for AccessApi {
    async fn auth_info(
        &self,
        request: Request<AuthInfoRequest>,
    ) -> Result<Response<AuthInfoResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .auth_info(&ctx, &msg.token))
        .map(Response::new)
    }

    async fn consume_login_token(
        &self,
        request: Request<ConsumeLoginTokenRequest>,
    ) -> Result<Response<ConsumeLoginTokenResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .consume_login_token(&ctx, &msg.token))
        .map(|user_ids| {
            Response::new(ConsumeLoginTokenResponse {
                user_ids: Some(user_ids),
            })
        })
    }
}
