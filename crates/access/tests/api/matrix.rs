//! The authorisation matrix: every RPC × every kind of caller.
//!
//! Rows are the RPCs served by the user registry, the access service and
//! the sessions service, each with a closure that builds and sends a
//! fresh, valid request for a target user; columns are kinds of caller;
//! cells are the expected gRPC code. Every cell gets its own freshly created target user, so
//! destructive rows (Delete, Purge, DeleteAPIKey…) spoil nothing else and
//! the only reason a call can fail is who makes it.
//!
//! The expectations follow the reference rules ("Rights model" and "State
//! limits" in tts-user-api.md, and the proto comments):
//! - no credential: UNAUTHENTICATED for authenticated methods;
//! - a malformed or expired credential: UNAUTHENTICATED, on every method
//!   (a bad credential is refused even where none is needed);
//! - a missing right: PERMISSION_DENIED; non-admins have no rights on other
//!   users, so acting on another user is PERMISSION_DENIED;
//! - a suspended user keeps only RIGHT_USER_INFO on itself;
//! - admins (and the cluster key) may do everything on every user, except
//!   call the internal methods;
//! - internal methods (UserCredentials, EntityAccess, SessionCredentials)
//!   take the cluster key only: PERMISSION_DENIED for every user
//!   credential, UNAUTHENTICATED for no or a bad credential;
//! - a session (the target's own, from Authentication.Login) carries every
//!   user right on its own account, so it answers as the target's own
//!   RIGHT_USER_ALL key everywhere, and it is the only credential that can
//!   log out (API keys and the cluster key: INVALID_ARGUMENT);
//! - Login and LoginWithToken need no credential; a suspended target cannot
//!   log in (FAILED_PRECONDITION, its password or token being right).
//! - UserLifecycle: GetStatus and GetWithStatus need RIGHT_USER_INFO (which a suspended
//!   user keeps); every change and GetUserStatistics are for admins only.
//!   UnlockUser and ReactivateUser act on a locked or deactivated target,
//!   whose own credentials are refused (UNAUTHENTICATED), as Restore's
//!   deleted target's are.
//! - UserMetadata: ListUserMetadata needs RIGHT_USER_INFO (which a
//!   suspended user keeps); SetUserMetadata and DeleteUserMetadata need
//!   RIGHT_USER_SETTINGS_BASIC, as Update does.
//! - UserAuthenticationFactors: listing needs RIGHT_USER_INFO; adding a
//!   factor to a user without one RIGHT_USER_SETTINGS_BASIC; removing one
//!   RIGHT_USER_ALL and the password (or an admin). SecondFactorCredentials
//!   is internal. CompleteLogin and SendLoginEmailCode need no credential,
//!   only a challenge.
//!
//! On mismatch the test fails once, listing every wrong cell.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use roster_access::store::{ApiKeyRecord, open};
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::entity_registry_search_client::EntityRegistrySearchClient;
use roster_proto::v1::external_user_registry_client::ExternalUserRegistryClient;
use roster_proto::v1::second_factor_credentials_client::SecondFactorCredentialsClient;
use roster_proto::v1::session_credentials_client::SessionCredentialsClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_authentication_factors_client::UserAuthenticationFactorsClient;
use roster_proto::v1::user_credentials_client::UserCredentialsClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_metadata_client::UserMetadataClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::user_session_registry_client::UserSessionRegistryClient;
use roster_proto::v1::{
    AddOtpEmailRequest, CheckSecondFactorRequest, CompleteLoginRequest,
    GenerateRecoveryCodesRequest, ListAuthenticationFactorsRequest,
    ListAuthenticationMethodTypesRequest, RegisterTotpRequest, RemoveAuthenticationFactorRequest,
    SendLoginEmailCodeRequest, VerifyTotpRegistrationRequest, check_second_factor_request,
    complete_login_request,
};
use roster_proto::v1::{
    ApiKey, AuthInfoRequest, AuthenticationProviderIdentifiers, CheckPasswordRequest,
    CheckSessionRequest, ConsumeLoginTokenRequest, CreateExternalUserRequest,
    CreateLoginTokenRequest, CreateTemporaryPasswordRequest, CreateUserApiKeyRequest,
    CreateUserRequest, DeactivateUserRequest, DeleteExternalUserRequest, DeleteUserApiKeyRequest,
    DeleteUserMetadataRequest, ExternalUser, GetExternalUserByExternalIdRequest,
    GetExternalUserByUserIdRequest, GetUserApiKeyRequest, GetUserRequest, ListUserApiKeysRequest,
    ListUserMetadataRequest, ListUserSessionsRequest, ListUsersRequest, LockUserRequest,
    LoginRequest, LoginWithTokenRequest, Right, SearchUsersRequest, SetRequiredActionsRequest,
    SetUserMetadataRequest, State, UpdateUserApiKeyRequest, UpdateUserPasswordRequest,
    UpdateUserRequest, User, UserIdentifiers, UserMetadataEntry, UserRequiredAction,
    UserSessionIdentifiers,
};
use roster_test_support::{
    Backend, TEST_PASSWORD, TestConfig, TestEnv, with_cluster_key, with_token,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The approved admin whose RIGHT_ALL key is the "admin" caller.
const ADMIN: &str = "mx-admin";
/// The approved user whose RIGHT_USER_ALL key is the "other" caller.
const OTHER: &str = "mx-other";
/// The external identity provider of the ExternalUserRegistry rows.
const PROVIDER: &str = "mx-idp";
/// A new password that meets the policy and differs from TEST_PASSWORD.
const NEW_PASSWORD: &str = "Changed-Passw0rd-for-roster";

/// The kinds of caller: the columns of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No credential at all.
    None,
    /// `authorization: Bearer not-a-token`.
    Malformed,
    /// The target's own RIGHT_USER_ALL key, expired an hour ago.
    Expired,
    /// The target's own key with only RIGHT_USER_INFO.
    TooFew,
    /// Another approved user's RIGHT_USER_ALL key, acting on the target.
    Other,
    /// The target's own RIGHT_USER_ALL key.
    Own,
    /// The target's own session token, from Authentication.Login.
    Session,
    /// The target's own RIGHT_USER_ALL key, the target being suspended.
    Suspended,
    /// A RIGHT_ALL key of an approved admin.
    Admin,
    /// The cluster key (other Roster services).
    Cluster,
}

const KINDS: [Kind; 10] = [
    Kind::None,
    Kind::Malformed,
    Kind::Expired,
    Kind::TooFew,
    Kind::Other,
    Kind::Own,
    Kind::Session,
    Kind::Suspended,
    Kind::Admin,
    Kind::Cluster,
];

impl Kind {
    fn slug(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Malformed => "malformed",
            Kind::Expired => "expired",
            Kind::TooFew => "too-few",
            Kind::Other => "other",
            Kind::Own => "own",
            Kind::Session => "session",
            Kind::Suspended => "suspended",
            Kind::Admin => "admin",
            Kind::Cluster => "cluster",
        }
    }
}

/// How a request is authenticated.
#[derive(Debug, Clone)]
enum Cred {
    None,
    Bearer(String),
    Cluster,
}

/// What a row needs of its target before the call, made with the cluster
/// key after the caller's credential exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Nothing,
    /// The target is soft-deleted (Restore).
    Deleted,
    /// The target has a RIGHT_USER_ALL API key (`Fixture::key_id`/`key`).
    ApiKey,
    /// The target is linked to `Fixture::external_id` at [`PROVIDER`].
    ExternalLink,
    /// The target has a live login token (`Fixture::login_token`).
    LoginToken,
    /// An admin locked the target (UnlockUser).
    Locked,
    /// An admin deactivated the target (ReactivateUser).
    Deactivated,
    /// The target has the metadata entry `matrix` (DeleteUserMetadata).
    Metadata,
    /// The target has a session of its own besides any caller's
    /// (`Fixture::session_id`/`session_token`). Made before the caller's
    /// credential, while the target can still log in (the "suspended"
    /// column suspends it).
    Session,
    /// The target has a pending TOTP registration (`Fixture::totp_secret`).
    PendingTotp,
    /// The target has an active TOTP.
    Totp,
    /// The target uses mailed codes.
    OtpEmail,
    /// The target has recovery codes.
    RecoveryCodes,
    /// The target has recovery codes and a login challenge
    /// (`Fixture::challenge`, `Fixture::recovery_code`).
    Challenge,
    /// The target uses mailed codes and has a login challenge.
    EmailChallenge,
}

/// What [`Setup`] made.
#[derive(Debug, Clone, Default)]
struct Fixture {
    key_id: String,
    key: String,
    external_id: String,
    login_token: String,
    session_id: String,
    session_token: String,
    totp_secret: String,
    challenge: String,
    recovery_code: String,
}

/// One cell's call: the target, the caller's credential, the fixture.
struct Ctx {
    channel: Channel,
    target: String,
    cred: Cred,
    fx: Fixture,
}

impl Ctx {
    /// `message` with the caller's credential.
    fn req<T>(&self, message: T) -> Request<T> {
        match &self.cred {
            Cred::None => Request::new(message),
            Cred::Bearer(token) => with_token(message, token),
            Cred::Cluster => with_cluster_key(message),
        }
    }

    fn ids(&self) -> Option<UserIdentifiers> {
        Some(ids(&self.target))
    }

    fn users(&self) -> UserRegistryClient<Channel> {
        UserRegistryClient::new(self.channel.clone())
    }

    fn external(&self) -> ExternalUserRegistryClient<Channel> {
        ExternalUserRegistryClient::new(self.channel.clone())
    }

    fn access(&self) -> UserAccessClient<Channel> {
        UserAccessClient::new(self.channel.clone())
    }

    fn entity_access(&self) -> EntityAccessClient<Channel> {
        EntityAccessClient::new(self.channel.clone())
    }

    fn authentication(&self) -> AuthenticationClient<Channel> {
        AuthenticationClient::new(self.channel.clone())
    }

    fn sessions(&self) -> UserSessionRegistryClient<Channel> {
        UserSessionRegistryClient::new(self.channel.clone())
    }

    fn lifecycle(&self) -> UserLifecycleClient<Channel> {
        UserLifecycleClient::new(self.channel.clone())
    }

    fn factors(&self) -> UserAuthenticationFactorsClient<Channel> {
        UserAuthenticationFactorsClient::new(self.channel.clone())
    }

    fn metadata(&self) -> UserMetadataClient<Channel> {
        UserMetadataClient::new(self.channel.clone())
    }
}

/// A removal of one of the target's factors, with its password.
fn remove_factor(c: &Ctx) -> RemoveAuthenticationFactorRequest {
    RemoveAuthenticationFactorRequest {
        user_ids: c.ids(),
        password: TEST_PASSWORD.into(),
    }
}

/// The current RFC 6238 code (HMAC-SHA-1, 6 digits, 30 s) of a base32
/// secret.
fn totp_now(secret: &str) -> String {
    use hmac::Mac as _;
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap_or_default();
    let step = (chrono::Utc::now().timestamp() / 30) as u64;
    let mut mac = <hmac::Hmac<sha1::Sha1> as hmac::Mac>::new_from_slice(&key).unwrap();
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = usize::from(h[19] & 0xf);
    let n = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]);
    format!("{:06}", n % 1_000_000)
}

type Outcome = Result<(), Status>;
type Call<'a> = Pin<Box<dyn Future<Output = Outcome> + 'a>>;
type SendFn = for<'a> fn(&'a Ctx) -> Call<'a>;

/// One RPC: its name, what its target needs, how to call it, and the
/// expected code per caller kind (in [`KINDS`] order).
struct Row {
    rpc: &'static str,
    setup: Setup,
    send: SendFn,
    expect: [Code; 10],
}

fn row(rpc: &'static str, setup: Setup, send: SendFn, expect: [Code; 10]) -> Row {
    Row {
        rpc,
        setup,
        send,
        expect,
    }
}

fn ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.into(),
        email: String::new(),
    }
}

fn provider() -> Option<AuthenticationProviderIdentifiers> {
    Some(AuthenticationProviderIdentifiers {
        provider_id: PROVIDER.into(),
    })
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// The table. Columns: none, malformed, expired, too-few, other, own,
/// session, suspended, admin, cluster.
fn rows() -> Vec<Row> {
    use Code::{
        FailedPrecondition as F, InvalidArgument as I, Ok as O, PermissionDenied as P,
        Unauthenticated as U,
    };
    vec![
        // ---- UserRegistry --------------------------------------------
        // Registration needs no credential; a new user each time.
        row(
            "UserRegistry.Create",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    let user_id = format!("{}-new", c.target);
                    c.users()
                        .create(c.req(CreateUserRequest {
                            user: Some(User {
                                ids: Some(ids(&user_id)),
                                primary_email_address: format!("{user_id}@example.com"),
                                password: TEST_PASSWORD.into(),
                                ..Default::default()
                            }),
                            invitation_token: String::new(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, O, O, O],
        ),
        // Any authenticated caller; without RIGHT_USER_INFO only public
        // fields come back (so "other" gets OK, not PERMISSION_DENIED).
        row(
            "UserRegistry.Get",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.users()
                        .get(c.req(GetUserRequest {
                            user_ids: c.ids(),
                            field_mask: None,
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, O, O, O, O, O, O],
        ),
        row(
            "UserRegistry.List",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.users()
                        .list(c.req(ListUsersRequest::default()))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        row(
            "UserRegistry.Update",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.users()
                        .update(c.req(UpdateUserRequest {
                            user: Some(User {
                                ids: c.ids(),
                                name: "Renamed".into(),
                                ..Default::default()
                            }),
                            field_mask: mask(&["name"]),
                            password: String::new(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserRegistry.Delete",
            Setup::Nothing,
            |c| Box::pin(async move { c.users().delete(c.req(ids(&c.target))).await.map(drop) }),
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // The target is soft-deleted, so its own keys no longer resolve
        // (AuthInfo: UNAUTHENTICATED for a token of a deleted user): in
        // practice only admins restore.
        row(
            "UserRegistry.Restore",
            Setup::Deleted,
            |c| Box::pin(async move { c.users().restore(c.req(ids(&c.target))).await.map(drop) }),
            [U, U, U, U, P, U, U, U, O, O],
        ),
        // Admins only; the service purges live users too, so the target
        // stays live and its own keys keep resolving.
        row(
            "UserRegistry.Purge",
            Setup::Nothing,
            |c| Box::pin(async move { c.users().purge(c.req(ids(&c.target))).await.map(drop) }),
            [U, U, U, P, P, P, P, P, O, O],
        ),
        // No rights check: the old password is the credential.
        row(
            "UserRegistry.UpdatePassword",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.users()
                        .update_password(c.req(UpdateUserPasswordRequest {
                            user_ids: c.ids(),
                            new: NEW_PASSWORD.into(),
                            old: TEST_PASSWORD.into(),
                            revoke_all_access: false,
                        }))
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, O, O, O],
        ),
        // The forgotten-password flow needs no credential.
        row(
            "UserRegistry.CreateTemporaryPassword",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.users()
                        .create_temporary_password(
                            c.req(CreateTemporaryPasswordRequest { user_ids: c.ids() }),
                        )
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, O, O, O],
        ),
        // ---- EntityRegistrySearch ------------------------------------
        row(
            "EntityRegistrySearch.SearchUsers",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    EntityRegistrySearchClient::new(c.channel.clone())
                        .search_users(c.req(SearchUsersRequest {
                            query: c.target.clone(),
                            ..Default::default()
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        // ---- ExternalUserRegistry ------------------------------------
        row(
            "ExternalUserRegistry.Create",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.external()
                        .create(c.req(CreateExternalUserRequest {
                            external_user: Some(ExternalUser {
                                user_ids: c.ids(),
                                provider_ids: provider(),
                                external_id: format!("sub|{}", c.target),
                                ..Default::default()
                            }),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        // Admins, and the user itself with RIGHT_USER_INFO.
        row(
            "ExternalUserRegistry.GetByUserID",
            Setup::ExternalLink,
            |c| {
                Box::pin(async move {
                    c.external()
                        .get_by_user_id(c.req(GetExternalUserByUserIdRequest {
                            provider_ids: provider(),
                            user_ids: c.ids(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, P, O, O, O, O, O],
        ),
        row(
            "ExternalUserRegistry.GetByExternalID",
            Setup::ExternalLink,
            |c| {
                Box::pin(async move {
                    c.external()
                        .get_by_external_id(c.req(GetExternalUserByExternalIdRequest {
                            provider_ids: provider(),
                            external_id: c.fx.external_id.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        row(
            "ExternalUserRegistry.Delete",
            Setup::ExternalLink,
            |c| {
                Box::pin(async move {
                    c.external()
                        .delete(c.req(DeleteExternalUserRequest {
                            provider_ids: provider(),
                            external_id: c.fx.external_id.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        // ---- UserCredentials (internal) ------------------------------
        // Anonymous callers: UNAUTHENTICATED, as for the EntityAccess
        // methods (a missing credential, not a missing right).
        row(
            "UserCredentials.CheckPassword",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    UserCredentialsClient::new(c.channel.clone())
                        .check_password(c.req(CheckPasswordRequest {
                            user_ids: c.ids(),
                            password: TEST_PASSWORD.into(),
                            client_key: String::new(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        row(
            "UserCredentials.ForgetPasswordFailures",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    UserCredentialsClient::new(c.channel.clone())
                        .forget_password_failures(c.req(ids(&c.target)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        // ---- UserAccess ----------------------------------------------
        // Any authenticated caller; empty rights when it has none.
        row(
            "UserAccess.ListRights",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.access()
                        .list_rights(c.req(ids(&c.target)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, O, O, O, O, O, O],
        ),
        row(
            "UserAccess.CreateAPIKey",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.access()
                        .create_api_key(c.req(CreateUserApiKeyRequest {
                            user_ids: c.ids(),
                            name: "matrix".into(),
                            rights: vec![Right::UserInfo as i32],
                            expires_at: None,
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserAccess.DeleteAPIKey",
            Setup::ApiKey,
            |c| {
                Box::pin(async move {
                    c.access()
                        .delete_api_key(c.req(DeleteUserApiKeyRequest {
                            user_ids: c.ids(),
                            key_id: c.fx.key_id.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserAccess.ListAPIKeys",
            Setup::ApiKey,
            |c| {
                Box::pin(async move {
                    c.access()
                        .list_api_keys(c.req(ListUserApiKeysRequest {
                            user_ids: c.ids(),
                            ..Default::default()
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserAccess.GetAPIKey",
            Setup::ApiKey,
            |c| {
                Box::pin(async move {
                    c.access()
                        .get_api_key(c.req(GetUserApiKeyRequest {
                            user_ids: c.ids(),
                            key_id: c.fx.key_id.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // A new name only: no rights change, so no escalation check.
        row(
            "UserAccess.UpdateAPIKey",
            Setup::ApiKey,
            |c| {
                Box::pin(async move {
                    c.access()
                        .update_api_key(c.req(UpdateUserApiKeyRequest {
                            user_ids: c.ids(),
                            api_key: Some(ApiKey {
                                id: c.fx.key_id.clone(),
                                name: "renamed".into(),
                                ..Default::default()
                            }),
                            field_mask: mask(&["name"]),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // Unauthenticated by design (the token goes out by email), so any
        // caller with a good or no credential gets OK.
        row(
            "UserAccess.CreateLoginToken",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.access()
                        .create_login_token(c.req(CreateLoginTokenRequest {
                            user_ids: c.ids(),
                            skip_email: false,
                        }))
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, O, O, O],
        ),
        // ---- EntityAccess (internal) ---------------------------------
        // Resolves the target's own valid key.
        row(
            "EntityAccess.AuthInfo",
            Setup::ApiKey,
            |c| {
                Box::pin(async move {
                    c.entity_access()
                        .auth_info(c.req(AuthInfoRequest {
                            token: c.fx.key.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        // Uses up a live login token of the target.
        row(
            "EntityAccess.ConsumeLoginToken",
            Setup::LoginToken,
            |c| {
                Box::pin(async move {
                    c.entity_access()
                        .consume_login_token(c.req(ConsumeLoginTokenRequest {
                            token: c.fx.login_token.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        // ---- Authentication (sessions service) -----------------------
        // No credential needed; a bad one is refused before the method
        // runs. The suspended target cannot log in though its password is
        // right.
        row(
            "Authentication.Login",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.authentication()
                        .login(c.req(LoginRequest {
                            user_ids: c.ids(),
                            password: TEST_PASSWORD.into(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, F, O, O],
        ),
        // Uses up a live login token of the target (made after the
        // suspension in the "suspended" column, so it is used up there
        // too, before the state refuses the login).
        row(
            "Authentication.LoginWithToken",
            Setup::LoginToken,
            |c| {
                Box::pin(async move {
                    c.authentication()
                        .login_with_token(c.req(LoginWithTokenRequest {
                            token: c.fx.login_token.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, F, O, O],
        ),
        // Ends the caller's own session: only a session can log out; any
        // other credential is the wrong kind of argument.
        row(
            "Authentication.Logout",
            Setup::Nothing,
            |c| Box::pin(async move { c.authentication().logout(c.req(())).await.map(drop) }),
            [U, U, U, I, I, I, O, I, I, I],
        ),
        // ---- UserSessionRegistry -------------------------------------
        // RIGHT_USER_ALL on the target.
        row(
            "UserSessionRegistry.List",
            Setup::Session,
            |c| {
                Box::pin(async move {
                    c.sessions()
                        .list(c.req(ListUserSessionsRequest {
                            user_ids: c.ids(),
                            ..Default::default()
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // Ends the target's fixture session (not the caller's).
        row(
            "UserSessionRegistry.Delete",
            Setup::Session,
            |c| {
                Box::pin(async move {
                    c.sessions()
                        .delete(c.req(UserSessionIdentifiers {
                            user_ids: c.ids(),
                            session_id: c.fx.session_id.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // ---- SessionCredentials (internal) ---------------------------
        // Checks the target's fixture session.
        row(
            "SessionCredentials.CheckSession",
            Setup::Session,
            |c| {
                Box::pin(async move {
                    SessionCredentialsClient::new(c.channel.clone())
                        .check_session(c.req(CheckSessionRequest {
                            token: c.fx.session_token.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        // ---- UserLifecycle -------------------------------------------
        // RIGHT_USER_INFO, which a suspended user keeps.
        row(
            "UserLifecycle.GetStatus",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.lifecycle()
                        .get_status(c.req(ids(&c.target)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, P, O, O, O, O, O],
        ),
        // RIGHT_USER_INFO, as GetStatus.
        row(
            "UserLifecycle.GetWithStatus",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.lifecycle()
                        .get_with_status(c.req(GetUserRequest {
                            user_ids: c.ids(),
                            field_mask: None,
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, P, O, O, O, O, O],
        ),
        // Admins only.
        row(
            "UserLifecycle.LockUser",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.lifecycle()
                        .lock_user(c.req(LockUserRequest {
                            user_ids: c.ids(),
                            reason: "matrix".into(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        // The target is locked, so its own credentials are refused: in
        // practice only admins unlock.
        row(
            "UserLifecycle.UnlockUser",
            Setup::Locked,
            |c| {
                Box::pin(async move {
                    c.lifecycle()
                        .unlock_user(c.req(ids(&c.target)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, U, P, U, U, U, O, O],
        ),
        row(
            "UserLifecycle.DeactivateUser",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.lifecycle()
                        .deactivate_user(c.req(DeactivateUserRequest {
                            user_ids: c.ids(),
                            reason: "matrix".into(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        // The target is deactivated, its own credentials refused.
        row(
            "UserLifecycle.ReactivateUser",
            Setup::Deactivated,
            |c| {
                Box::pin(async move {
                    c.lifecycle()
                        .reactivate_user(c.req(ids(&c.target)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, U, P, U, U, U, O, O],
        ),
        row(
            "UserLifecycle.SetRequiredActions",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.lifecycle()
                        .set_required_actions(c.req(SetRequiredActionsRequest {
                            user_ids: c.ids(),
                            actions: vec![UserRequiredAction::UpdatePassword as i32],
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        row(
            "UserLifecycle.GetUserStatistics",
            Setup::Nothing,
            |c| {
                Box::pin(
                    async move { c.lifecycle().get_user_statistics(c.req(())).await.map(drop) },
                )
            },
            [U, U, U, P, P, P, P, P, O, O],
        ),
        // ---- UserAuthenticationFactors -------------------------------
        // Adding a factor to a user without one needs
        // RIGHT_USER_SETTINGS_BASIC, which a suspended user lacks.
        row(
            "UserAuthenticationFactors.RegisterTOTP",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .register_totp(c.req(RegisterTotpRequest {
                            user_ids: c.ids(),
                            ..Default::default()
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // With the app's current code for the pending secret.
        row(
            "UserAuthenticationFactors.VerifyTOTPRegistration",
            Setup::PendingTotp,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .verify_totp_registration(c.req(VerifyTotpRegistrationRequest {
                            user_ids: c.ids(),
                            code: totp_now(&c.fx.totp_secret),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // Removing needs RIGHT_USER_ALL and the password (given), or an
        // admin.
        row(
            "UserAuthenticationFactors.RemoveTOTP",
            Setup::Totp,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .remove_totp(c.req(remove_factor(c)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserAuthenticationFactors.AddOTPEmail",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .add_otp_email(c.req(AddOtpEmailRequest {
                            user_ids: c.ids(),
                            ..Default::default()
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserAuthenticationFactors.RemoveOTPEmail",
            Setup::OtpEmail,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .remove_otp_email(c.req(remove_factor(c)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserAuthenticationFactors.GenerateRecoveryCodes",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .generate_recovery_codes(c.req(GenerateRecoveryCodesRequest {
                            user_ids: c.ids(),
                            ..Default::default()
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        row(
            "UserAuthenticationFactors.RemoveRecoveryCodes",
            Setup::RecoveryCodes,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .remove_recovery_codes(c.req(remove_factor(c)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // RIGHT_USER_INFO, which a suspended user keeps.
        row(
            "UserAuthenticationFactors.ListAuthenticationFactors",
            Setup::Totp,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .list_authentication_factors(
                            c.req(ListAuthenticationFactorsRequest { user_ids: c.ids() }),
                        )
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, P, O, O, O, O, O],
        ),
        row(
            "UserAuthenticationFactors.ListAuthenticationMethodTypes",
            Setup::Totp,
            |c| {
                Box::pin(async move {
                    c.factors()
                        .list_authentication_method_types(
                            c.req(ListAuthenticationMethodTypesRequest { user_ids: c.ids() }),
                        )
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, P, O, O, O, O, O],
        ),
        // ---- SecondFactorCredentials (internal) ----------------------
        row(
            "SecondFactorCredentials.CheckSecondFactor",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    SecondFactorCredentialsClient::new(c.channel.clone())
                        .check_second_factor(c.req(CheckSecondFactorRequest {
                            user_ids: c.ids(),
                            code: Some(check_second_factor_request::Code::RecoveryCode(
                                "not-a-code".into(),
                            )),
                            client_key: String::new(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        row(
            "SecondFactorCredentials.SendSecondFactorEmailCode",
            Setup::OtpEmail,
            |c| {
                Box::pin(async move {
                    SecondFactorCredentialsClient::new(c.channel.clone())
                        .send_second_factor_email_code(c.req(ids(&c.target)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        row(
            "SecondFactorCredentials.ActiveSecondFactors",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    SecondFactorCredentialsClient::new(c.channel.clone())
                        .active_second_factors(c.req(ids(&c.target)))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, P, P, P, P, O],
        ),
        // ---- Authentication: the second step -------------------------
        // Needs no credential: the challenge and a recovery code are the
        // proof. The suspended target cannot log in, so it has no
        // challenge to complete and the call carries none.
        row(
            "Authentication.CompleteLogin",
            Setup::Challenge,
            |c| {
                Box::pin(async move {
                    c.authentication()
                        .complete_login(c.req(CompleteLoginRequest {
                            challenge: c.fx.challenge.clone(),
                            code: Some(complete_login_request::Code::RecoveryCode(
                                c.fx.recovery_code.clone(),
                            )),
                        }))
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, I, O, O],
        ),
        row(
            "Authentication.SendLoginEmailCode",
            Setup::EmailChallenge,
            |c| {
                Box::pin(async move {
                    c.authentication()
                        .send_login_email_code(c.req(SendLoginEmailCodeRequest {
                            challenge: c.fx.challenge.clone(),
                        }))
                        .await
                        .map(drop)
                })
            },
            [O, U, U, O, O, O, O, I, O, O],
        ),
        // ---- UserMetadata --------------------------------------------
        // RIGHT_USER_SETTINGS_BASIC, as Update.
        row(
            "UserMetadata.SetUserMetadata",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.metadata()
                        .set_user_metadata(c.req(SetUserMetadataRequest {
                            user_ids: c.ids(),
                            metadata: vec![UserMetadataEntry {
                                key: "matrix".into(),
                                value: b"cell".to_vec(),
                                ..Default::default()
                            }],
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
        // RIGHT_USER_INFO, which a suspended user keeps.
        row(
            "UserMetadata.ListUserMetadata",
            Setup::Nothing,
            |c| {
                Box::pin(async move {
                    c.metadata()
                        .list_user_metadata(c.req(ListUserMetadataRequest {
                            user_ids: c.ids(),
                            ..Default::default()
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, O, P, O, O, O, O, O],
        ),
        row(
            "UserMetadata.DeleteUserMetadata",
            Setup::Metadata,
            |c| {
                Box::pin(async move {
                    c.metadata()
                        .delete_user_metadata(c.req(DeleteUserMetadataRequest {
                            user_ids: c.ids(),
                            keys: vec!["matrix".into()],
                        }))
                        .await
                        .map(drop)
                })
            },
            [U, U, U, P, P, O, O, P, O, O],
        ),
    ]
}

/// A new session of `user_id` from Authentication.Login with
/// [`TEST_PASSWORD`]: its ID and its token.
async fn login(env: &TestEnv, user_id: &str) -> (String, String) {
    let session = AuthenticationClient::new(env.channel())
        .login(LoginRequest {
            user_ids: Some(ids(user_id)),
            password: TEST_PASSWORD.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("cannot log {user_id} in: {s}"))
        .into_inner();
    let id = session
        .session_ids
        .map(|s| s.session_id)
        .unwrap_or_default();
    assert!(!id.is_empty(), "no session ID for {user_id}");
    (id, session.token)
}

/// A RIGHT_USER_ALL key of `user_id` that expired an hour ago, written
/// straight into the access service's store (the API refuses past expiry).
async fn expired_key(env: &TestEnv, user_id: &str) -> String {
    let store = open(&env.access_db, Arc::default(), Arc::default());
    let token = Token::generate(TokenType::ApiKey);
    let at = roster_access::store::now();
    store
        .insert_api_key(
            &ApiKeyRecord {
                id: token.id().to_string(),
                user_id: user_id.to_string(),
                secret_hash: TokenHasher::new("").hash(&token),
                name: "expired".into(),
                rights: vec![Right::UserAll as i32],
                created_at: at,
                updated_at: at,
                expires_at: Some(at - chrono::Duration::hours(1)),
            },
            &[],
        )
        .await
        .expect("insert an expired API key");
    token.to_string()
}

/// Suspends `user_id` as the admin, through UserRegistry.Update.
async fn suspend(env: &TestEnv, admin: &str, user_id: &str) {
    UserRegistryClient::new(env.channel())
        .update(with_token(
            UpdateUserRequest {
                user: Some(User {
                    ids: Some(ids(user_id)),
                    state: State::Suspended as i32,
                    ..Default::default()
                }),
                field_mask: mask(&["state"]),
                password: String::new(),
            },
            admin,
        ))
        .await
        .unwrap_or_else(|s| panic!("cannot suspend {user_id}: {s}"));
}

/// Prepares the target of one cell with the cluster key.
async fn prepare(env: &TestEnv, setup: Setup, target: &str) -> Fixture {
    let mut fx = Fixture::default();
    match setup {
        Setup::Nothing => {}
        Setup::Deleted => {
            UserRegistryClient::new(env.channel())
                .delete(with_cluster_key(ids(target)))
                .await
                .unwrap_or_else(|s| panic!("cannot delete {target}: {s}"));
        }
        Setup::ApiKey => {
            (fx.key_id, fx.key) = env.api_key(target, &[Right::UserAll]).await;
        }
        Setup::ExternalLink => {
            fx.external_id = format!("sub|{target}");
            ExternalUserRegistryClient::new(env.channel())
                .create(with_cluster_key(CreateExternalUserRequest {
                    external_user: Some(ExternalUser {
                        user_ids: Some(ids(target)),
                        provider_ids: provider(),
                        external_id: fx.external_id.clone(),
                        ..Default::default()
                    }),
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot link {target}: {s}"));
        }
        Setup::LoginToken => {
            // A cluster caller counts as an admin, so the token comes back.
            fx.login_token = UserAccessClient::new(env.channel())
                .create_login_token(with_cluster_key(CreateLoginTokenRequest {
                    user_ids: Some(ids(target)),
                    skip_email: true,
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot create a login token for {target}: {s}"))
                .into_inner()
                .token;
            assert!(!fx.login_token.is_empty(), "no login token for {target}");
        }
        Setup::Locked => {
            UserLifecycleClient::new(env.channel())
                .lock_user(with_cluster_key(LockUserRequest {
                    user_ids: Some(ids(target)),
                    reason: String::new(),
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot lock {target}: {s}"));
        }
        Setup::Deactivated => {
            UserLifecycleClient::new(env.channel())
                .deactivate_user(with_cluster_key(DeactivateUserRequest {
                    user_ids: Some(ids(target)),
                    reason: String::new(),
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot deactivate {target}: {s}"));
        }
        Setup::Metadata => {
            UserMetadataClient::new(env.channel())
                .set_user_metadata(with_cluster_key(SetUserMetadataRequest {
                    user_ids: Some(ids(target)),
                    metadata: vec![UserMetadataEntry {
                        key: "matrix".into(),
                        value: b"cell".to_vec(),
                        ..Default::default()
                    }],
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot set metadata of {target}: {s}"));
        }
        // Made in `cell`, before the caller's credential.
        Setup::Session => {}
        Setup::PendingTotp | Setup::Totp => {
            let factors = UserAuthenticationFactorsClient::new(env.channel());
            fx.totp_secret = factors
                .clone()
                .register_totp(with_cluster_key(RegisterTotpRequest {
                    user_ids: Some(ids(target)),
                    ..Default::default()
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot register a TOTP for {target}: {s}"))
                .into_inner()
                .secret;
            if setup == Setup::Totp {
                factors
                    .clone()
                    .verify_totp_registration(with_cluster_key(VerifyTotpRegistrationRequest {
                        user_ids: Some(ids(target)),
                        code: totp_now(&fx.totp_secret),
                    }))
                    .await
                    .unwrap_or_else(|s| panic!("cannot verify the TOTP of {target}: {s}"));
            }
        }
        Setup::OtpEmail | Setup::EmailChallenge => {
            UserAuthenticationFactorsClient::new(env.channel())
                .add_otp_email(with_cluster_key(AddOtpEmailRequest {
                    user_ids: Some(ids(target)),
                    ..Default::default()
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot add OTP email for {target}: {s}"));
            if setup == Setup::EmailChallenge {
                fx.challenge = challenge(env, target).await;
            }
        }
        Setup::RecoveryCodes | Setup::Challenge => {
            let codes = UserAuthenticationFactorsClient::new(env.channel())
                .generate_recovery_codes(with_cluster_key(GenerateRecoveryCodesRequest {
                    user_ids: Some(ids(target)),
                    ..Default::default()
                }))
                .await
                .unwrap_or_else(|s| panic!("cannot make recovery codes for {target}: {s}"))
                .into_inner()
                .codes;
            fx.recovery_code = codes[0].clone();
            if setup == Setup::Challenge {
                fx.challenge = challenge(env, target).await;
            }
        }
    }
    fx
}

/// A login challenge of `user_id`, who has a second factor; empty when
/// the user cannot log in (suspended).
async fn challenge(env: &TestEnv, user_id: &str) -> String {
    let response = AuthenticationClient::new(env.channel())
        .login(LoginRequest {
            user_ids: Some(ids(user_id)),
            password: TEST_PASSWORD.into(),
        })
        .await;
    match response {
        Ok(response) => {
            let response = response.into_inner();
            assert!(
                response.second_factor_required,
                "no challenge for {user_id}"
            );
            response.challenge
        }
        Err(status) if status.code() == Code::FailedPrecondition => String::new(),
        Err(status) => panic!("cannot log {user_id} in: {status}"),
    }
}

fn short(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Unauthenticated => "UNAUTH",
        Code::PermissionDenied => "DENIED",
        Code::NotFound => "NOT_FOUND",
        Code::InvalidArgument => "INVALID",
        Code::FailedPrecondition => "PRECOND",
        Code::ResourceExhausted => "EXHAUSTED",
        Code::Unavailable => "UNAVAIL",
        Code::AlreadyExists => "EXISTS",
        Code::Internal => "INTERNAL",
        _ => "OTHER",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_answers_every_kind_of_caller_as_the_rights_model_says() {
    let mut config = TestConfig::default();
    // CreateLoginToken is off unless enabled.
    config.access.login_tokens_enabled = true;
    // Every cell comes from 127.0.0.1: without this, the per-address
    // limits on the unauthenticated methods would answer RESOURCE_EXHAUSTED
    // long before the table is done.
    config.access.login_token_rate_limit.max_attempts = 0;
    config.user_registry.rate_limit.max_attempts = 0;
    config.user_registry.registration_rate_limit.max_attempts = 0;
    config.sessions.login_rate_limit.max_attempts = 0;
    let env = TestEnv::start_configured(Backend::Postgres, config).await;

    let admin = env.admin_token(ADMIN).await;
    let other = env.user_token(OTHER, &[Right::UserAll]).await;

    let rows = rows();
    // Cells are independent (each has its own target), so they run a few
    // at a time.
    let mut results: Vec<(usize, usize, Code, String)> =
        futures::stream::iter(rows.iter().enumerate().flat_map(|(r, row)| {
            KINDS
                .iter()
                .enumerate()
                .map(move |(k, &kind)| (r, k, row, kind))
        }))
        .map(|(r, k, row, kind)| {
            let (env, admin, other) = (&env, &admin, &other);
            async move {
                let (code, message) = cell(env, admin, other, r, row, kind).await;
                (r, k, code, message)
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    results.sort_by_key(|(r, k, _, _)| (*r, *k));

    let mut mismatches = Vec::new();
    let mut observed = vec![Vec::new(); rows.len()];
    for (r, k, got, message) in results {
        let (row, kind, expected) = (&rows[r], KINDS[k], rows[r].expect[k]);
        // An expired key must be refused for its expiry, not as unknown
        // (which a wrong hash key or a broken insert would also give).
        let wrong_reason = kind == Kind::Expired && !message.contains("expired");
        if got == expected && !wrong_reason {
            observed[r].push(short(got).to_string());
        } else {
            observed[r].push(format!("{}!", short(got)));
            mismatches.push(format!(
                "{} × {}: expected {}{}, got {} ({message})",
                row.rpc,
                kind.slug(),
                short(expected),
                if wrong_reason { " (for expiry)" } else { "" },
                short(got),
            ));
        }
    }

    let table = render(&rows, &observed);
    println!("{table}");
    assert!(
        mismatches.is_empty(),
        "{} of {} cells differ from the rights model (`!` marks them):\n{table}\n{}",
        mismatches.len(),
        rows.len() * KINDS.len(),
        mismatches.join("\n"),
    );
}

/// Runs one cell: a fresh target for row `r`, the caller of `kind`, the
/// row's setup, then the call. The code and message it answered.
async fn cell(
    env: &TestEnv,
    admin: &str,
    other: &str,
    r: usize,
    row: &Row,
    kind: Kind,
) -> (Code, String) {
    let target = format!("mx{r:02}-{}", kind.slug());
    env.ensure_user(&target, false).await;
    // A session of the target is made while the target can log in.
    let session = match row.setup {
        Setup::Session => Some(login(env, &target).await),
        _ => None,
    };
    let cred = match kind {
        Kind::None => Cred::None,
        Kind::Malformed => Cred::Bearer("not-a-token".into()),
        Kind::Expired => Cred::Bearer(expired_key(env, &target).await),
        Kind::TooFew => Cred::Bearer(env.api_key(&target, &[Right::UserInfo]).await.1),
        Kind::Other => Cred::Bearer(other.to_string()),
        Kind::Own => Cred::Bearer(env.api_key(&target, &[Right::UserAll]).await.1),
        Kind::Session => Cred::Bearer(login(env, &target).await.1),
        Kind::Suspended => {
            let key = env.api_key(&target, &[Right::UserAll]).await.1;
            suspend(env, admin, &target).await;
            Cred::Bearer(key)
        }
        Kind::Admin => Cred::Bearer(admin.to_string()),
        Kind::Cluster => Cred::Cluster,
    };
    let mut fx = prepare(env, row.setup, &target).await;
    if let Some((id, token)) = session {
        (fx.session_id, fx.session_token) = (id, token);
    }
    let ctx = Ctx {
        channel: env.channel(),
        target,
        cred,
        fx,
    };
    match (row.send)(&ctx).await {
        Ok(()) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

/// The observed matrix as a text table.
fn render(rows: &[Row], observed: &[Vec<String>]) -> String {
    let width = rows.iter().map(|r| r.rpc.len()).max().unwrap_or(0);
    let mut out = format!("{:width$}", "rpc \\ caller");
    for kind in KINDS {
        out.push_str(&format!(" {:>10}", kind.slug()));
    }
    out.push('\n');
    for (row, cells) in rows.iter().zip(observed) {
        out.push_str(&format!("{:width$}", row.rpc));
        for cell in cells {
            out.push_str(&format!(" {cell:>10}"));
        }
        out.push('\n');
    }
    out
}
