//! What the notifications service needs to know about its receivers, asked
//! of the services that own them over gRPC with the cluster key: a user's
//! address, name, mail preferences and whether it is deleted (the user
//! registry), every admin (the user registry), and who sent the invitation
//! to an address (the invitations service).

use roster_core::auth::ClusterCredential;
use roster_core::resend::ResendingChannel;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    GetUserRequest, ListInvitationsRequest, ListUsersRequest, State, UserIdentifiers,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The page size used when paging through users or invitations.
const PAGE: u32 = 1000;

/// Invitations looked through at most (in pages of [`PAGE`]) for the
/// sender of one address; past that the address counts as having no
/// sender, and a warning says so.
const MAX_INVITATION_PAGES: u32 = 100;

/// A receiver as the notifications service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub user_id: String,
    /// The primary email address; mails go there.
    pub email: String,
    /// The name, for the mail's greeting.
    pub name: String,
    /// `User.email_notification_preferences.types`: the notification types
    /// the user also wants by email (enum numbers).
    pub email_types: Vec<i32>,
    /// Soft-deleted: gets no notifications.
    pub deleted: bool,
}

/// Looks receivers up.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + 'static {
    /// The user, deleted or not; `None` when there is no such user (never
    /// created, purged, or an ID no user can have). `UNAVAILABLE` when the
    /// answer cannot be had.
    async fn contact(&self, user_id: &str) -> Result<Option<Contact>, Status>;

    /// The user ID of every live admin: not deleted, `admin` set and in the
    /// state `STATE_APPROVED` or `STATE_FLAGGED` (the admins whose rights
    /// work). For USER_REQUESTED, which goes to every admin.
    async fn admins(&self) -> Result<Vec<String>, Status>;

    /// Who sent the most recent invitation to `email` (compared
    /// case-insensitively), if any invitation to it exists and a user sent
    /// it. The default knows no invitations: a directory without an
    /// invitations service answers `None`, and notifications about
    /// invitations then need `receiver_user_ids`.
    async fn invitation_sender(&self, email: &str) -> Result<Option<String>, Status> {
        let _ = email;
        Ok(None)
    }
}

/// Asks the user registry (`UserRegistry.Get` and `List`) and the
/// invitations service (`UserInvitationRegistry.List`) as a cluster caller,
/// which sees soft-deleted users and every invitation.
#[derive(Clone)]
pub struct GrpcDirectory {
    users: UserRegistryClient<ResendingChannel>,
    invitations: UserInvitationRegistryClient<ResendingChannel>,
    cluster: ClusterCredential,
}

impl GrpcDirectory {
    /// `user_registry` and `invitations` reach those services (in one
    /// process: the same channel).
    pub fn new(
        user_registry: Channel,
        invitations: Channel,
        cluster_key: &str,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            users: UserRegistryClient::new(ResendingChannel::new(user_registry)),
            invitations: UserInvitationRegistryClient::new(ResendingChannel::new(invitations)),
            cluster: ClusterCredential::new(cluster_key)?,
        })
    }
}

/// The answer for a peer that failed: logged here, `UNAVAILABLE` for the
/// caller (the peer's message may say more than a caller should see).
fn unavailable(peer: &str, status: &Status) -> Status {
    tracing::warn!(peer, code = ?status.code(), message = status.message(), "peer call failed");
    Status::unavailable(format!("the {peer} is unavailable"))
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[async_trait::async_trait]
impl Directory for GrpcDirectory {
    async fn contact(&self, user_id: &str) -> Result<Option<Contact>, Status> {
        let request = self.cluster.request(GetUserRequest {
            user_ids: Some(UserIdentifiers {
                user_id: user_id.to_string(),
                email: String::new(),
            }),
            // `ids` and the timestamps (`deleted_at` among them) always come.
            field_mask: mask(&[
                "primary_email_address",
                "name",
                "email_notification_preferences",
            ]),
        });
        let user = match self.users.clone().get(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            // An ID the registry refuses as malformed names no user.
            Err(status) if status.code() == Code::InvalidArgument => return Ok(None),
            Err(status) => return Err(unavailable("user registry", &status)),
        };
        Ok(Some(Contact {
            user_id: user
                .ids
                .map(|ids| ids.user_id)
                .unwrap_or_else(|| user_id.to_string()),
            email: user.primary_email_address,
            name: user.name,
            email_types: user
                .email_notification_preferences
                .map(|p| p.types)
                .unwrap_or_default(),
            deleted: user.deleted_at.is_some(),
        }))
    }

    async fn admins(&self) -> Result<Vec<String>, Status> {
        let mut admins = Vec::new();
        // Admins first (`-admin`, the user ID breaking ties, so pages are
        // stable): page until the first user who is not one.
        for page in 1.. {
            let request = self.cluster.request(ListUsersRequest {
                field_mask: mask(&["admin", "state"]),
                order: "-admin".into(),
                limit: PAGE,
                page,
                deleted: false,
                ..Default::default()
            });
            let users = self
                .users
                .clone()
                .list(request)
                .await
                .map_err(|status| unavailable("user registry", &status))?
                .into_inner()
                .users;
            let full = users.len() == PAGE as usize;
            for user in users {
                if !user.admin {
                    return Ok(admins);
                }
                let working = matches!(
                    State::try_from(user.state),
                    Ok(State::Approved | State::Flagged)
                );
                if let (true, Some(ids)) = (working, user.ids) {
                    admins.push(ids.user_id);
                }
            }
            if !full {
                break;
            }
        }
        Ok(admins)
    }

    async fn invitation_sender(&self, email: &str) -> Result<Option<String>, Status> {
        // The registry has no filter by address, but orders by the
        // lowercased address (byte order on both backends, as `str` sorts):
        // page until the address is passed.
        let key = email.to_lowercase();
        let mut latest: Option<(prost_types::Timestamp, String)> = None;
        for page in 1..=MAX_INVITATION_PAGES {
            let request = self.cluster.request(ListInvitationsRequest {
                limit: PAGE,
                page,
                order: "email".into(),
            });
            let invitations = self
                .invitations
                .clone()
                .list(request)
                .await
                .map_err(|status| unavailable("invitations service", &status))?
                .into_inner()
                .invitations;
            let full = invitations.len() == PAGE as usize;
            for invitation in invitations {
                let this = invitation.email.to_lowercase();
                if this > key {
                    return Ok(latest.map(|(_, sender)| sender));
                }
                if this != key {
                    continue;
                }
                let Some(sender) = invitation.sent_by.map(|ids| ids.user_id) else {
                    continue;
                };
                let created = invitation.created_at.unwrap_or_default();
                let newer = latest.as_ref().is_none_or(|(at, _)| {
                    (created.seconds, created.nanos) >= (at.seconds, at.nanos)
                });
                if newer && !sender.is_empty() {
                    latest = Some((created, sender));
                }
            }
            if !full {
                return Ok(latest.map(|(_, sender)| sender));
            }
        }
        tracing::warn!(
            pages = MAX_INVITATION_PAGES,
            "gave up looking for an invitation's sender: too many invitations sort before its address"
        );
        Ok(latest.map(|(_, sender)| sender))
    }
}
