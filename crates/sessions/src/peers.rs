//! The other services the sessions service asks, over gRPC with the
//! cluster key: the user registry (passwords, users) and the access service
//! (login tokens).

use chrono::{DateTime, Utc};
use roster_core::auth::ClusterCredential;
use roster_core::resend::ResendingChannel;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::second_factor_credentials_client::SecondFactorCredentialsClient;
use roster_proto::v1::user_credentials_client::UserCredentialsClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CheckPasswordRequest, CheckSecondFactorRequest, ConsumeLoginTokenRequest, GetUserRequest,
    State, User, UserIdentifiers, check_second_factor_request,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// What the sessions service needs to know about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    pub state: State,
    pub require_password_update: bool,
}

impl Account {
    fn of(user: &User) -> Option<Self> {
        Some(Self {
            user_id: user.ids.as_ref()?.user_id.clone(),
            state: State::try_from(user.state).unwrap_or(State::Requested),
            require_password_update: user.require_password_update,
        })
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// No such (live) user.
    UnknownUser,
    /// The user exists; the password is right or not. `throttled`: the
    /// account is locked for this client, so even the right password was
    /// refused (for the records; the caller hears "wrong").
    Known {
        account: Account,
        valid: bool,
        throttled: bool,
        /// The account's wrong passwords in the lockout window.
        failures: u32,
        /// The user's active second factors (AuthenticationMethodType
        /// numbers), when the password is right.
        second_factors: Vec<i32>,
    },
}

/// The outcome of a second-factor check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondFactorCheck {
    /// The code was right, and is now used up.
    pub valid: bool,
    /// The account is locked for this client: no code was accepted.
    pub throttled: bool,
    /// Wrong guesses of the account in the lockout window.
    pub failures: u32,
}

/// The services the sessions service depends on.
#[async_trait::async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Checks a password (the user registry hashes on its blocking pool; an
    /// unknown user costs the same).
    async fn check_password(
        &self,
        user_ids: UserIdentifiers,
        password: String,
        client_key: String,
    ) -> Result<PasswordCheck, Status>;

    /// Checks a second-factor code of a known user and uses it up; wrong
    /// codes count in the user's lockout.
    async fn check_second_factor(
        &self,
        user_id: &str,
        code: check_second_factor_request::Code,
        client_key: String,
    ) -> Result<SecondFactorCheck, Status>;

    /// Mails the user a one-time code (FAILED_PRECONDITION when the user
    /// does not use mailed codes).
    async fn send_second_factor_email_code(&self, user_id: &str) -> Result<(), Status>;

    /// The user's active second factors (AuthenticationMethodType numbers).
    async fn active_second_factors(&self, user_id: &str) -> Result<Vec<i32>, Status>;

    /// A live user, or `None`.
    async fn account(&self, user_id: &str) -> Result<Option<Account>, Status>;

    /// Uses up a login token: the user it logs in, or UNAUTHENTICATED.
    async fn consume_login_token(&self, token: String) -> Result<String, Status>;

    /// Lifts the user's password locks (the user proved the mailbox).
    async fn forget_password_failures(&self, user_id: &str) -> Result<(), Status>;
    /// When a live user's password last changed, as the user registry
    /// says; `None` for no such live user or a password never changed.
    async fn password_changed_at(&self, user_id: &str) -> Result<Option<DateTime<Utc>>, Status>;
    /// The last deactivation of a live user, as the user registry says;
    /// `None` for no such live user or one never deactivated.
    async fn deactivation(&self, user_id: &str) -> Result<Option<Deactivation>, Status>;
}

/// A user's last deactivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deactivation {
    /// When it ended the user's sessions.
    pub sessions_ended_at: DateTime<Utc>,
    /// Whether the user is deactivated still (not reactivated since).
    pub holds: bool,
}

/// The peers over gRPC.
#[derive(Clone)]
pub struct GrpcPeers {
    users: ResendingChannel,
    access: ResendingChannel,
    cluster: ClusterCredential,
}

impl GrpcPeers {
    pub fn new(users: Channel, access: Channel, cluster_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            users: ResendingChannel::new(users),
            access: ResendingChannel::new(access),
            cluster: ClusterCredential::new(cluster_key)?,
        })
    }
}

fn user_ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
    }
}

/// A peer's failure as this service reports it: a bad request stays one,
/// anything else means the peer is unavailable.
fn unavailable(status: Status) -> Status {
    match status.code() {
        Code::InvalidArgument => status,
        code => {
            tracing::warn!(?code, message = status.message(), "a peer service failed");
            Status::unavailable("a service Roster depends on is unavailable")
        }
    }
}

#[async_trait::async_trait]
impl Peers for GrpcPeers {
    async fn check_password(
        &self,
        user_ids: UserIdentifiers,
        password: String,
        client_key: String,
    ) -> Result<PasswordCheck, Status> {
        let checked = UserCredentialsClient::new(self.users.clone())
            .check_password(self.cluster.request(CheckPasswordRequest {
                user_ids: Some(user_ids),
                password,
                client_key,
            }))
            .await;
        match checked {
            Ok(response) => {
                let response = response.into_inner();
                let account = response
                    .user
                    .as_ref()
                    .and_then(Account::of)
                    .ok_or_else(|| Status::internal("a password check without its user"))?;
                Ok(PasswordCheck::Known {
                    account,
                    valid: response.valid,
                    throttled: response.throttled,
                    failures: response.failures,
                    second_factors: response.second_factors,
                })
            }
            Err(status) if status.code() == Code::NotFound => Ok(PasswordCheck::UnknownUser),
            Err(status) => Err(unavailable(status)),
        }
    }

    async fn check_second_factor(
        &self,
        user_id: &str,
        code: check_second_factor_request::Code,
        client_key: String,
    ) -> Result<SecondFactorCheck, Status> {
        let response = SecondFactorCredentialsClient::new(self.users.clone())
            .check_second_factor(self.cluster.request(CheckSecondFactorRequest {
                user_ids: Some(user_ids(user_id)),
                code: Some(code),
                client_key,
            }))
            .await
            .map_err(unavailable)?
            .into_inner();
        Ok(SecondFactorCheck {
            valid: response.valid,
            throttled: response.throttled,
            failures: response.failures,
        })
    }

    async fn send_second_factor_email_code(&self, user_id: &str) -> Result<(), Status> {
        let sent = SecondFactorCredentialsClient::new(self.users.clone())
            .send_second_factor_email_code(self.cluster.request(user_ids(user_id)))
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(status)
                if matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::ResourceExhausted
                ) =>
            {
                Err(status)
            }
            Err(status) => Err(unavailable(status)),
        }
    }

    async fn active_second_factors(&self, user_id: &str) -> Result<Vec<i32>, Status> {
        Ok(SecondFactorCredentialsClient::new(self.users.clone())
            .active_second_factors(self.cluster.request(user_ids(user_id)))
            .await
            .map_err(unavailable)?
            .into_inner()
            .auth_method_types)
    }

    async fn account(&self, user_id: &str) -> Result<Option<Account>, Status> {
        let got = UserRegistryClient::new(self.users.clone())
            .get(
                self.cluster.request(GetUserRequest {
                    user_ids: Some(UserIdentifiers {
                        user_id: user_id.to_string(),
                        email: String::new(),
                    }),
                    field_mask: Some(prost_types::FieldMask {
                        paths: ["ids", "state", "require_password_update", "deleted_at"]
                            .iter()
                            .map(|p| p.to_string())
                            .collect(),
                    }),
                }),
            )
            .await;
        match got {
            Ok(response) => {
                let user = response.into_inner();
                Ok(if user.deleted_at.is_some() {
                    None
                } else {
                    Account::of(&user)
                })
            }
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                Ok(None)
            }
            Err(status) => Err(unavailable(status)),
        }
    }

    async fn forget_password_failures(&self, user_id: &str) -> Result<(), Status> {
        UserCredentialsClient::new(self.users.clone())
            .forget_password_failures(self.cluster.request(UserIdentifiers {
                user_id: user_id.to_string(),
                email: String::new(),
            }))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn password_changed_at(&self, user_id: &str) -> Result<Option<DateTime<Utc>>, Status> {
        let got = UserRegistryClient::new(self.users.clone())
            .get(self.cluster.request(GetUserRequest {
                user_ids: Some(UserIdentifiers {
                    user_id: user_id.to_string(),
                    email: String::new(),
                }),
                field_mask: Some(prost_types::FieldMask {
                    paths: vec!["password_updated_at".into()],
                }),
            }))
            .await;
        let user = match got {
            Ok(response) => response.into_inner(),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                return Ok(None);
            }
            Err(status) => return Err(unavailable(status)),
        };
        Ok(user
            .password_updated_at
            .filter(|_| user.deleted_at.is_none())
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)))
    }

    async fn deactivation(&self, user_id: &str) -> Result<Option<Deactivation>, Status> {
        let got = UserLifecycleClient::new(self.users.clone())
            .get_status(self.cluster.request(UserIdentifiers {
                user_id: user_id.to_string(),
                email: String::new(),
            }))
            .await;
        match got {
            Ok(response) => {
                let status = response.into_inner();
                Ok(status
                    .sessions_ended_at
                    .as_ref()
                    .and_then(roster_core::time::from_timestamp)
                    .map(|sessions_ended_at| Deactivation {
                        sessions_ended_at,
                        holds: status.deactivated,
                    }))
            }
            // A user registry from before the lifecycle (during a rolling
            // upgrade) has deactivated nobody.
            Err(status)
                if matches!(
                    status.code(),
                    Code::NotFound | Code::InvalidArgument | Code::Unimplemented
                ) =>
            {
                Ok(None)
            }
            Err(status) => Err(unavailable(status)),
        }
    }

    async fn consume_login_token(&self, token: String) -> Result<String, Status> {
        let consumed = EntityAccessClient::new(self.access.clone())
            .consume_login_token(self.cluster.request(ConsumeLoginTokenRequest { token }))
            .await;
        match consumed {
            Ok(response) => response
                .into_inner()
                .user_ids
                .map(|ids| ids.user_id)
                .ok_or_else(|| Status::internal("a login token without its user")),
            Err(status) if status.code() == Code::Unauthenticated => Err(status),
            Err(status) => Err(unavailable(status)),
        }
    }
}
