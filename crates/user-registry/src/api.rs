//! The gRPC face of the user registry: find out who calls, hand the request
//! to the service, map its error. No SQL and no rules here.

use std::sync::Arc;

use roster_core::auth::Authenticator;
use roster_core::handle;
use roster_core::list::{NEXT_PAGE_TOKEN_HEADER, with_total_count};
use roster_proto::v1::entity_registry_search_server::EntityRegistrySearch;
use roster_proto::v1::external_user_registry_server::ExternalUserRegistry;
use roster_proto::v1::second_factor_credentials_server::SecondFactorCredentials;
use roster_proto::v1::user_authentication_factors_server::UserAuthenticationFactors;
use roster_proto::v1::user_credentials_server::UserCredentials;
use roster_proto::v1::user_lifecycle_server::UserLifecycle;
use roster_proto::v1::user_metadata_server::UserMetadata;
use roster_proto::v1::user_registry_server::UserRegistry;
use roster_proto::v1::{
    AddOtpEmailRequest, CheckSecondFactorRequest, CheckSecondFactorResponse,
    GenerateRecoveryCodesRequest, GenerateRecoveryCodesResponse, ListAuthenticationFactorsRequest,
    ListAuthenticationFactorsResponse, ListAuthenticationMethodTypesRequest,
    ListAuthenticationMethodTypesResponse, RegisterTotpRequest, RegisterTotpResponse,
    RemoveAuthenticationFactorRequest, VerifyTotpRegistrationRequest,
};
use roster_proto::v1::{
    CheckPasswordRequest, CheckPasswordResponse, CreateExternalUserRequest,
    CreateTemporaryPasswordRequest, CreateUserRequest, DeactivateUserRequest,
    DeleteExternalUserRequest, DeleteUserMetadataRequest, DeleteUserMetadataResponse, ExternalUser,
    GetExternalUserByExternalIdRequest, GetExternalUserByUserIdRequest, GetUserRequest,
    ListUserMetadataRequest, ListUsersRequest, LockUserRequest, SearchUsersRequest,
    SendEmailValidationRequest, SendEmailValidationResponse, SetRequiredActionsRequest,
    SetUserMetadataRequest, SetUserMetadataResponse, UpdateUserPasswordRequest, UpdateUserRequest,
    User, UserIdentifiers, UserLifecycleStatus, UserMetadataEntries, UserStatistics,
    UserWithStatus, Users, ValidateEmailRequest, ValidateEmailResponse,
};
use tonic::{Request, Response, Status};

use crate::service::{UserPage, UserRegistryService};
use crate::store::factors::FactorKind;

/// Implements every gRPC service of the user registry. After a change
/// that can take rights away (update, delete, purge, a lifecycle change)
/// it drops this
/// process's cached credentials of the user at once; other processes do
/// when the change's event reaches them.
#[derive(Clone)]
pub struct UserRegistryApi {
    service: Arc<UserRegistryService>,
    auth: Arc<Authenticator>,
}

impl UserRegistryApi {
    pub fn new(service: Arc<UserRegistryService>, auth: Arc<Authenticator>) -> Self {
        Self { service, auth }
    }

    /// After a lifecycle change: the user's cached credentials go at once
    /// in this process (other processes drop theirs on the event).
    fn forget(&self, status: &UserLifecycleStatus) {
        if let Some(ids) = &status.user_ids {
            self.auth.forget_user(&ids.user_id);
        }
    }
}

#[tonic::async_trait]
impl UserRegistry for UserRegistryApi {
    async fn create(&self, request: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .create(&ctx, msg))
        .map(Response::new)
    }

    async fn get(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.get(&ctx, msg)).map(Response::new)
    }

    async fn list(&self, request: Request<ListUsersRequest>) -> Result<Response<Users>, Status> {
        let page = handle!(self.auth, request, |ctx, msg| self.service.list(&ctx, msg))?;
        Ok(page_response(page))
    }

    async fn update(&self, request: Request<UpdateUserRequest>) -> Result<Response<User>, Status> {
        let user = handle!(self.auth, request, |ctx, msg| self
            .service
            .update(&ctx, msg))?;
        if let Some(ids) = &user.ids {
            self.auth.forget_user(&ids.user_id);
        }
        Ok(Response::new(user))
    }

    async fn delete(&self, request: Request<UserIdentifiers>) -> Result<Response<()>, Status> {
        let user_id = request.get_ref().user_id.clone();
        handle!(self.auth, request, |ctx, msg| self
            .service
            .delete(&ctx, msg))?;
        self.auth.forget_user(&user_id);
        Ok(Response::new(()))
    }

    async fn restore(&self, request: Request<UserIdentifiers>) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .restore(&ctx, msg))
        .map(Response::new)
    }

    async fn purge(&self, request: Request<UserIdentifiers>) -> Result<Response<()>, Status> {
        let user_id = request.get_ref().user_id.clone();
        handle!(self.auth, request, |ctx, msg| self.service.purge(&ctx, msg))?;
        self.auth.forget_user(&user_id);
        Ok(Response::new(()))
    }

    async fn update_password(
        &self,
        request: Request<UpdateUserPasswordRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .update_password(&ctx, msg))
        .map(Response::new)
    }

    async fn create_temporary_password(
        &self,
        request: Request<CreateTemporaryPasswordRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .create_temporary_password(&ctx, msg))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl EntityRegistrySearch for UserRegistryApi {
    async fn search_users(
        &self,
        request: Request<SearchUsersRequest>,
    ) -> Result<Response<Users>, Status> {
        let page = handle!(self.auth, request, |ctx, msg| self
            .service
            .search(&ctx, msg))?;
        Ok(page_response(page))
    }
}

#[tonic::async_trait]
impl ExternalUserRegistry for UserRegistryApi {
    async fn create(
        &self,
        request: Request<CreateExternalUserRequest>,
    ) -> Result<Response<ExternalUser>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .create_external_user(&ctx, msg))
        .map(Response::new)
    }

    async fn get_by_user_id(
        &self,
        request: Request<GetExternalUserByUserIdRequest>,
    ) -> Result<Response<ExternalUser>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .get_external_user_by_user_id(&ctx, msg))
        .map(Response::new)
    }

    async fn get_by_external_id(
        &self,
        request: Request<GetExternalUserByExternalIdRequest>,
    ) -> Result<Response<ExternalUser>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .get_external_user_by_external_id(&ctx, msg))
        .map(Response::new)
    }

    async fn delete(
        &self,
        request: Request<DeleteExternalUserRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .delete_external_user(&ctx, msg))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl UserCredentials for UserRegistryApi {
    async fn check_password(
        &self,
        request: Request<CheckPasswordRequest>,
    ) -> Result<Response<CheckPasswordResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .check_password(&ctx, msg))
        .map(Response::new)
    }

    async fn forget_password_failures(
        &self,
        request: Request<UserIdentifiers>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .forget_password_failures(&ctx, msg))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl UserLifecycle for UserRegistryApi {
    async fn get_with_status(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<UserWithStatus>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .get_with_status(&ctx, msg))
        .map(Response::new)
    }

    async fn get_status(
        &self,
        request: Request<UserIdentifiers>,
    ) -> Result<Response<UserLifecycleStatus>, Status> {
        let status = handle!(self.auth, request, |ctx, msg| self
            .service
            .get_status(&ctx, msg))?;
        Ok(Response::new(status))
    }

    async fn lock_user(
        &self,
        request: Request<LockUserRequest>,
    ) -> Result<Response<UserLifecycleStatus>, Status> {
        let status = handle!(self.auth, request, |ctx, msg| self
            .service
            .lock_user(&ctx, msg))?;
        self.forget(&status);
        Ok(Response::new(status))
    }

    async fn unlock_user(
        &self,
        request: Request<UserIdentifiers>,
    ) -> Result<Response<UserLifecycleStatus>, Status> {
        let status = handle!(self.auth, request, |ctx, msg| self
            .service
            .unlock_user(&ctx, msg))?;
        self.forget(&status);
        Ok(Response::new(status))
    }

    async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<Response<UserLifecycleStatus>, Status> {
        let status = handle!(self.auth, request, |ctx, msg| self
            .service
            .deactivate_user(&ctx, msg))?;
        self.forget(&status);
        Ok(Response::new(status))
    }

    async fn reactivate_user(
        &self,
        request: Request<UserIdentifiers>,
    ) -> Result<Response<UserLifecycleStatus>, Status> {
        let status = handle!(self.auth, request, |ctx, msg| self
            .service
            .reactivate_user(&ctx, msg))?;
        self.forget(&status);
        Ok(Response::new(status))
    }

    async fn send_email_validation(
        &self,
        request: Request<SendEmailValidationRequest>,
    ) -> Result<Response<SendEmailValidationResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .send_email_validation(&ctx, msg))
        .map(Response::new)
    }

    async fn validate_email(
        &self,
        request: Request<ValidateEmailRequest>,
    ) -> Result<Response<ValidateEmailResponse>, Status> {
        let response = handle!(self.auth, request, |ctx, msg| self
            .service
            .validate_email(&ctx, msg))?;
        // The user's credentials may do more now (an unvalidated address
        // can limit them).
        if let Some(ids) = &response.user_ids {
            self.auth.forget_user(&ids.user_id);
        }
        Ok(Response::new(response))
    }

    async fn set_required_actions(
        &self,
        request: Request<SetRequiredActionsRequest>,
    ) -> Result<Response<UserLifecycleStatus>, Status> {
        let status = handle!(self.auth, request, |ctx, msg| self
            .service
            .set_required_actions(&ctx, msg))?;
        self.forget(&status);
        Ok(Response::new(status))
    }

    async fn get_user_statistics(
        &self,
        request: Request<()>,
    ) -> Result<Response<UserStatistics>, Status> {
        handle!(self.auth, request, |ctx, _msg| self
            .service
            .user_statistics(&ctx))
        .map(Response::new)
    }
}

/// A page of users with its headers: `x-total-count` (and
/// `x-total-count-capped`) when counted, `x-next-page-token` while more
/// users follow.
fn page_response(page: UserPage) -> Response<Users> {
    let mut response = match page.total {
        Some(total) => with_total_count(page.users, total),
        None => Response::new(page.users),
    };
    if page.capped {
        response.metadata_mut().insert(
            "x-total-count-capped",
            tonic::metadata::MetadataValue::from_static("true"),
        );
    }
    // A token is base64url, always a valid header value.
    if let Some(token) = page
        .next_page_token
        .and_then(|t| tonic::metadata::MetadataValue::try_from(t).ok())
    {
        response
            .metadata_mut()
            .insert(NEXT_PAGE_TOKEN_HEADER, token);
    }
    response
}

#[tonic::async_trait]
impl UserMetadata for UserRegistryApi {
    async fn set_user_metadata(
        &self,
        request: Request<SetUserMetadataRequest>,
    ) -> Result<Response<SetUserMetadataResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .set_metadata(&ctx, msg))
        .map(Response::new)
    }

    async fn list_user_metadata(
        &self,
        request: Request<ListUserMetadataRequest>,
    ) -> Result<Response<UserMetadataEntries>, Status> {
        let (entries, total) = handle!(self.auth, request, |ctx, msg| self
            .service
            .list_metadata(&ctx, msg))?;
        Ok(with_total_count(entries, total))
    }

    async fn delete_user_metadata(
        &self,
        request: Request<DeleteUserMetadataRequest>,
    ) -> Result<Response<DeleteUserMetadataResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .delete_metadata(&ctx, msg))
        .map(Response::new)
    }
}

impl UserRegistryApi {
    /// After a factor was added: this process forgets the user's cached
    /// credentials at once, since a first factor of a user required to
    /// enrol one ends the user's sessions (`user.lifecycle.end_sessions`
    /// does the same in every other process).
    fn forget_enrolled(&self, user_id: &str) {
        self.auth.forget_user(user_id);
    }
}

#[tonic::async_trait]
impl UserAuthenticationFactors for UserRegistryApi {
    async fn register_totp(
        &self,
        request: Request<RegisterTotpRequest>,
    ) -> Result<Response<RegisterTotpResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .register_totp(&ctx, msg))
        .map(Response::new)
    }

    async fn verify_totp_registration(
        &self,
        request: Request<VerifyTotpRegistrationRequest>,
    ) -> Result<Response<()>, Status> {
        let user_id = user_id_in(request.get_ref().user_ids.as_ref());
        let answer = handle!(self.auth, request, |ctx, msg| self
            .service
            .verify_totp_registration(&ctx, msg))?;
        self.forget_enrolled(&user_id);
        Ok(Response::new(answer))
    }

    async fn remove_totp(
        &self,
        request: Request<RemoveAuthenticationFactorRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.remove_factor(
            &ctx,
            msg,
            FactorKind::Totp
        ))
        .map(Response::new)
    }

    async fn add_otp_email(
        &self,
        request: Request<AddOtpEmailRequest>,
    ) -> Result<Response<()>, Status> {
        let user_id = user_id_in(request.get_ref().user_ids.as_ref());
        let answer = handle!(self.auth, request, |ctx, msg| self
            .service
            .add_otp_email(&ctx, msg))?;
        self.forget_enrolled(&user_id);
        Ok(Response::new(answer))
    }

    async fn remove_otp_email(
        &self,
        request: Request<RemoveAuthenticationFactorRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.remove_factor(
            &ctx,
            msg,
            FactorKind::OtpEmail
        ))
        .map(Response::new)
    }

    async fn generate_recovery_codes(
        &self,
        request: Request<GenerateRecoveryCodesRequest>,
    ) -> Result<Response<GenerateRecoveryCodesResponse>, Status> {
        let user_id = user_id_in(request.get_ref().user_ids.as_ref());
        let answer = handle!(self.auth, request, |ctx, msg| self
            .service
            .generate_recovery_codes(&ctx, msg))?;
        self.forget_enrolled(&user_id);
        Ok(Response::new(answer))
    }

    async fn remove_recovery_codes(
        &self,
        request: Request<RemoveAuthenticationFactorRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self.service.remove_factor(
            &ctx,
            msg,
            FactorKind::RecoveryCodes
        ))
        .map(Response::new)
    }

    async fn list_authentication_factors(
        &self,
        request: Request<ListAuthenticationFactorsRequest>,
    ) -> Result<Response<ListAuthenticationFactorsResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .list_authentication_factors(&ctx, msg))
        .map(Response::new)
    }

    async fn list_authentication_method_types(
        &self,
        request: Request<ListAuthenticationMethodTypesRequest>,
    ) -> Result<Response<ListAuthenticationMethodTypesResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .list_authentication_method_types(&ctx, msg.user_ids))
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl SecondFactorCredentials for UserRegistryApi {
    async fn check_second_factor(
        &self,
        request: Request<CheckSecondFactorRequest>,
    ) -> Result<Response<CheckSecondFactorResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .check_second_factor(&ctx, msg))
        .map(Response::new)
    }

    async fn send_second_factor_email_code(
        &self,
        request: Request<UserIdentifiers>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .send_second_factor_email_code(&ctx, msg))
        .map(Response::new)
    }

    async fn active_second_factors(
        &self,
        request: Request<UserIdentifiers>,
    ) -> Result<Response<ListAuthenticationMethodTypesResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .active_second_factors(&ctx, msg))
        .map(Response::new)
    }
}

/// The user ID a request names, or empty.
fn user_id_in(ids: Option<&UserIdentifiers>) -> String {
    ids.map(|i| i.user_id.clone()).unwrap_or_default()
}
