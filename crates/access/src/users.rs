//! What the access service needs to know about a user, asked of the user
//! registry (which owns users) over gRPC with the cluster key.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use roster_core::auth::ClusterCredential;
use roster_core::resend::ResendingChannel;
use roster_core::rights::RightSet;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    GetUserRequest, State, User, UserIdentifiers, UserLifecycleStatus, UserRequiredAction, UserType,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The facts about a user that decide what its credentials may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    /// Soft-deleted: its credentials do nothing until it is restored.
    pub deleted: bool,
    pub state: State,
    pub admin: bool,
    /// `User.universal_rights`: when set, no credential of the user may
    /// exceed it, admin or not.
    pub restriction: Option<RightSet>,
    pub email_validated: bool,
    pub require_password_update: bool,
    /// Where the user's mail goes (login tokens).
    pub email: String,
    pub name: String,
    /// Deactivated, or locked by an administrator: every credential of the
    /// user is refused (`UserLifecycle`).
    pub suspended: bool,
    /// Pending `UserRequiredAction`s besides the password change
    /// (`require_password_update`).
    pub required_actions: Vec<UserRequiredAction>,
    /// When the last deactivation ended the user's sessions: no session
    /// made before it works, also after reactivation.
    pub sessions_ended_at: Option<DateTime<Utc>>,
    /// A machine user (`UserType::Machine`): no login, no address; its API
    /// keys are its personal access tokens.
    pub machine: bool,
}

/// Looks users up.
#[async_trait::async_trait]
pub trait UserDirectory: Send + Sync + 'static {
    /// The user, deleted or not; `None` when there is no such user (never
    /// created, or purged).
    async fn subject(&self, user_id: &str) -> Result<Option<Subject>, Status>;
}

/// Asks the user registry, as a cluster caller: `UserLifecycle.GetWithStatus`,
/// one call and one statement there. A registry from before that method
/// (during a rolling upgrade) answers UNIMPLEMENTED; the directory then asks
/// `UserRegistry.Get` and `UserLifecycle.GetStatus` at once instead, and
/// tries the one call again after [`RETRY_ONE_CALL`].
#[derive(Clone)]
pub struct GrpcUserDirectory {
    client: UserRegistryClient<ResendingChannel>,
    lifecycle: UserLifecycleClient<ResendingChannel>,
    cluster: ClusterCredential,
    /// Until when (milliseconds since the epoch) to use the two calls: a
    /// registry answered UNIMPLEMENTED to the one.
    two_calls_until: Arc<AtomicI64>,
}

/// How long a registry without `GetWithStatus` is asked with two calls
/// before the one is tried again.
const RETRY_ONE_CALL: Duration = Duration::from_secs(60);

const SUBJECT_PATHS: &[&str] = &[
    "created_at",
    "deleted_at",
    "state",
    "admin",
    "universal_rights",
    "primary_email_address_validated_at",
    "require_password_update",
    "primary_email_address",
    "name",
    "type",
];

impl GrpcUserDirectory {
    pub fn new(channel: Channel, cluster_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: UserRegistryClient::new(ResendingChannel::new(channel.clone())),
            lifecycle: UserLifecycleClient::new(ResendingChannel::new(channel)),
            cluster: ClusterCredential::new(cluster_key)?,
            two_calls_until: Arc::default(),
        })
    }

    fn get_request(user_id: &str, paths: &[&str]) -> GetUserRequest {
        GetUserRequest {
            user_ids: Some(UserIdentifiers {
                user_id: user_id.to_string(),
                email: String::new(),
            }),
            field_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        }
    }

    /// The user and its status in one call; `None` when the registry does
    /// not have the method.
    async fn one_call(&self, user_id: &str) -> Option<Lookup> {
        let now = Utc::now().timestamp_millis();
        if self.two_calls_until.load(Ordering::Relaxed) > now {
            return None;
        }
        let request = self
            .cluster
            .request(Self::get_request(user_id, SUBJECT_PATHS));
        match self.lifecycle.clone().get_with_status(request).await {
            Ok(response) => {
                let both = response.into_inner();
                Some(Ok(both.user.map(|user| (user, both.status))))
            }
            Err(status) if status.code() == Code::Unimplemented => {
                let retry = now.saturating_add(RETRY_ONE_CALL.as_millis() as i64);
                self.two_calls_until.store(retry, Ordering::Relaxed);
                None
            }
            Err(status) => Some(user_answer(status)),
        }
    }

    /// The user and its status in two calls at once, as a registry from
    /// before `GetWithStatus` answers them.
    async fn two_calls(&self, user_id: &str) -> Lookup {
        let request = |paths| self.cluster.request(Self::get_request(user_id, paths));
        let status_request = self.cluster.request(UserIdentifiers {
            user_id: user_id.to_string(),
            email: String::new(),
        });
        let mut lifecycle = self.lifecycle.clone();
        let mut client = self.client.clone();
        let (mut got, status) = tokio::join!(
            client.get(request(SUBJECT_PATHS)),
            lifecycle.get_status(status_request)
        );
        // A user registry from before machine users refuses the `type`
        // path; it has humans only.
        if got
            .as_ref()
            .is_err_and(|s| s.code() == Code::InvalidArgument && s.message().contains("type"))
        {
            let without_type: Vec<&str> = SUBJECT_PATHS
                .iter()
                .copied()
                .filter(|p| *p != "type")
                .collect();
            got = client.get(request(&without_type)).await;
        }
        // A soft-deleted user has no status (NOT_FOUND); its credentials
        // are refused for the deletion anyway.
        let status = match status {
            Ok(response) => Some(response.into_inner()),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => None,
            // A user registry from before the lifecycle (during a rolling
            // upgrade) has no locks or deactivations to report.
            Err(status) if status.code() == Code::Unimplemented => None,
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "user status lookup failed");
                return Err(Status::unavailable("the user registry is unavailable"));
            }
        };
        match got {
            Ok(response) => Ok(Some((response.into_inner(), status))),
            Err(err) => user_answer(err),
        }
    }
}

/// A user and its status as the registry answered, `None` for no user.
type Lookup = Result<Option<(User, Option<UserLifecycleStatus>)>, Status>;

/// What an error reading the user means.
fn user_answer(status: Status) -> Lookup {
    match status.code() {
        Code::NotFound => Ok(None),
        // An ID the registry refuses as malformed names no user.
        Code::InvalidArgument => Ok(None),
        _ => {
            tracing::warn!(code = ?status.code(), message = status.message(), "user lookup failed");
            Err(Status::unavailable("the user registry is unavailable"))
        }
    }
}

#[async_trait::async_trait]
impl UserDirectory for GrpcUserDirectory {
    async fn subject(&self, user_id: &str) -> Result<Option<Subject>, Status> {
        let found = match self.one_call(user_id).await {
            Some(found) => found?,
            None => self.two_calls(user_id).await?,
        };
        let Some((user, status)) = found else {
            return Ok(None);
        };
        let created_at = user
            .created_at
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_default();
        Ok(Some(Subject {
            user_id: user_id.to_string(),
            created_at,
            deleted: user.deleted_at.is_some(),
            state: State::try_from(user.state).unwrap_or(State::Requested),
            admin: user.admin,
            restriction: user
                .universal_rights
                .as_ref()
                .map(|r| RightSet::from_i32s(&r.rights)),
            email_validated: user.primary_email_address_validated_at.is_some(),
            require_password_update: user.require_password_update,
            email: user.primary_email_address,
            name: user.name,
            suspended: status
                .as_ref()
                .is_some_and(|s| s.deactivated || s.locked_at.is_some()),
            sessions_ended_at: status
                .as_ref()
                .and_then(|s| s.sessions_ended_at.as_ref())
                .and_then(roster_core::time::from_timestamp),
            required_actions: status
                .map(|s| {
                    s.required_actions
                        .iter()
                        .filter_map(|a| UserRequiredAction::try_from(*a).ok())
                        .filter(|a| *a != UserRequiredAction::UpdatePassword)
                        .collect()
                })
                .unwrap_or_default(),
            machine: user.r#type == UserType::Machine as i32,
        }))
    }
}
