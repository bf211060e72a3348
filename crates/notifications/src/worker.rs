//! What the notifications service makes of other services' events: a new
//! or changed API key, a changed password, a requested temporary password,
//! a login token, a state change, a user waiting for approval (to every
//! admin), an accepted invitation (to whoever sent it), a locked account
//! (after failed logins or by an administrator) and a deactivated account
//! each become a notification; a purged user's notifications, and those
//! about them, are forgotten.
//!
//! A durable consumer shared by every replica handles each event at least
//! once. Each notification's ID is derived from the event's unique ID and
//! the notification type, and storing an ID that exists does nothing, so a
//! redelivered event makes no second notification.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use roster_core::auth::CallContext;
use roster_core::events::{EventBus, lifecycle, mfa, names, spawn_worker, user_ids};
use roster_proto::v1::{
    EntityIdentifiers, Event, Invitation, NotificationReceiver, NotificationType, State, User,
    UserEventData, UserIdentifiers, UserLifecycleStatus, entity_identifiers,
};
use sha2::{Digest, Sha256};

use crate::service::{Note, NotificationsService};

/// The durable consumer's name.
pub const CONSUMER: &str = "notifications";

/// Events the worker turns into notifications.
pub const PATTERNS: &[&str] = &[
    names::USER_CREATE,
    names::USER_UPDATE,
    names::API_KEY_CREATE,
    names::API_KEY_UPDATE,
    names::LOGIN_TOKEN_CREATE,
    names::USER_LOCK,
    lifecycle::LOCK,
    lifecycle::DEACTIVATE,
    mfa::TOTP_ADDED,
    mfa::TOTP_REMOVED,
    mfa::OTP_EMAIL_ADDED,
    mfa::OTP_EMAIL_REMOVED,
    mfa::RECOVERY_CODES_GENERATED,
    mfa::RECOVERY_CODES_REMOVED,
    mfa::RECOVERY_CODE_USED,
    names::INVITATION_ACCEPT,
    names::USER_PURGE,
];

/// How long a failed event waits before it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Who a planned notification goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The user the event is about.
    Subject(String),
    /// Every live admin.
    Admins,
    /// These users.
    Users(Vec<String>),
}

/// A notification an event calls for, before its audience is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub notification_type: NotificationType,
    pub entity_ids: EntityIdentifiers,
    pub audience: Audience,
    pub data: Option<prost_types::Any>,
}

fn user_entity(user_id: &str) -> EntityIdentifiers {
    EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::UserIds(UserIdentifiers {
            user_id: user_id.to_string(),
            email: String::new(),
        })),
    }
}

fn any_of<M: prost::Name>(message: &M) -> Option<prost_types::Any> {
    prost_types::Any::from_msg(message).ok()
}

/// The user as a notification may show it: who, and where the account
/// stands; nothing else (no hashes, no secrets, no picture).
fn public_user(user: &User) -> User {
    User {
        ids: user.ids.clone(),
        name: user.name.clone(),
        primary_email_address: user.primary_email_address.clone(),
        state: user.state,
        state_description: user.state_description.clone(),
        created_at: user.created_at,
        ..Default::default()
    }
}

/// The notifications `event` calls for. Pure: resolving the audience and
/// storing are the caller's.
pub fn plan(event: &Event) -> Vec<Planned> {
    let subject = user_ids(event).into_iter().next();
    let data = event.data.as_ref();
    let about_subject = |kind: NotificationType, data: Option<prost_types::Any>| {
        subject.as_ref().map(|user_id| Planned {
            notification_type: kind,
            entity_ids: user_entity(user_id),
            audience: Audience::Subject(user_id.clone()),
            data,
        })
    };
    match event.name.as_str() {
        names::USER_CREATE => {
            let Some(user) = data
                .and_then(|any| UserEventData::decode(any.value.as_slice()).ok())
                .and_then(|d| d.user)
            else {
                return Vec::new();
            };
            if user.state != State::Requested as i32 {
                return Vec::new();
            }
            let Some(user_id) = subject.clone() else {
                return Vec::new();
            };
            vec![Planned {
                notification_type: NotificationType::UserRequested,
                entity_ids: user_entity(&user_id),
                audience: Audience::Admins,
                data: any_of(&public_user(&user)),
            }]
        }
        names::USER_UPDATE => {
            let Some(update) =
                data.and_then(|any| UserEventData::decode(any.value.as_slice()).ok())
            else {
                return Vec::new();
            };
            let changed = |path: &str| update.changed_paths.iter().any(|p| p == path);
            let user = update.user.clone().unwrap_or_default();
            let mut planned = Vec::new();
            if changed("password_updated_at") {
                planned.extend(about_subject(NotificationType::PasswordChanged, None));
            }
            // Set (not cleared by using it): a temporary password was made.
            if changed("temporary_password") && user.temporary_password_created_at.is_some() {
                planned.extend(about_subject(NotificationType::TemporaryPassword, None));
            }
            if changed("state") {
                planned.extend(about_subject(
                    NotificationType::EntityStateChanged,
                    any_of(&public_user(&user)),
                ));
            }
            planned
        }
        names::API_KEY_CREATE => about_subject(NotificationType::ApiKeyCreated, data.cloned())
            .into_iter()
            .collect(),
        names::API_KEY_UPDATE => about_subject(NotificationType::ApiKeyChanged, data.cloned())
            .into_iter()
            .collect(),
        names::LOGIN_TOKEN_CREATE => about_subject(NotificationType::LoginToken, data.cloned())
            .into_iter()
            .collect(),
        names::USER_LOCK => about_subject(NotificationType::AccountLocked, data.cloned())
            .into_iter()
            .collect(),
        name if name == lifecycle::LOCK || name == lifecycle::DEACTIVATE => {
            let kind = if name == lifecycle::LOCK {
                NotificationType::AccountLockedByAdmin
            } else {
                NotificationType::AccountDeactivated
            };
            // The status without the administrator's reasons, which are
            // for admins only.
            let status = data
                .and_then(|any| UserLifecycleStatus::decode(any.value.as_slice()).ok())
                .map(|status| UserLifecycleStatus {
                    lock_reason: String::new(),
                    deactivation_reason: String::new(),
                    ..status
                });
            about_subject(kind, status.as_ref().and_then(any_of))
                .into_iter()
                .collect()
        }
        // The factor without secrets, as the event carries it.
        name if mfa::ADDED.contains(&name) => {
            about_subject(NotificationType::SecondFactorAdded, data.cloned())
                .into_iter()
                .collect()
        }
        name if mfa::REMOVED.contains(&name) => {
            about_subject(NotificationType::SecondFactorRemoved, data.cloned())
                .into_iter()
                .collect()
        }
        name if name == mfa::RECOVERY_CODE_USED => {
            about_subject(NotificationType::RecoveryCodeUsed, data.cloned())
                .into_iter()
                .collect()
        }
        names::INVITATION_ACCEPT => {
            let Some(invitation) =
                data.and_then(|any| Invitation::decode(any.value.as_slice()).ok())
            else {
                return Vec::new();
            };
            let Some(sender) = invitation
                .sent_by
                .as_ref()
                .map(|u| u.user_id.clone())
                .filter(|id| !id.is_empty())
            else {
                return Vec::new();
            };
            let shown = Invitation {
                token: String::new(),
                ..invitation.clone()
            };
            vec![Planned {
                notification_type: NotificationType::InvitationAccepted,
                entity_ids: EntityIdentifiers {
                    ids: Some(entity_identifiers::Ids::InvitationEmail(
                        invitation.email.clone(),
                    )),
                },
                audience: Audience::Users(vec![sender]),
                data: any_of(&shown),
            }]
        }
        _ => Vec::new(),
    }
}

/// The notification ID for `kind` made from the event `unique_id`: the same
/// event always gives the same ID.
pub fn note_id(unique_id: &str, kind: NotificationType) -> String {
    let digest = Sha256::digest(format!("{unique_id}/{}", kind.as_str_name()).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Forgets `user_id` once the user registry confirms that no such user
/// exists: events are input like any other, so a forged or stray
/// `user.purge` for a user the registry still has forgets nothing.
async fn forget_if_purged(service: &NotificationsService, user_id: &str) -> anyhow::Result<()> {
    if let Some(contact) = service.directory().contact(user_id).await? {
        tracing::warn!(
            %user_id,
            deleted = contact.deleted,
            "a user.purge event names a user the registry still has; its notifications stay"
        );
        return Ok(());
    }
    service.forget_user(user_id).await?;
    Ok(())
}

/// Makes the notifications `event` calls for.
pub async fn handle(service: &NotificationsService, event: &Event) -> anyhow::Result<()> {
    if event.name == names::USER_PURGE {
        for user_id in user_ids(event) {
            forget_if_purged(service, &user_id).await?;
        }
        return Ok(());
    }
    let planned = plan(event);
    if planned.is_empty() {
        return Ok(());
    }
    // The work is done on behalf of the service that caused it.
    let ctx = CallContext::for_event(event);
    let sender_ids = event
        .authentication
        .as_ref()
        .and_then(|a| a.user_ids.clone())
        .filter(|u| !u.user_id.is_empty());
    for plan in planned {
        let (receivers, receiver_user_ids) = match plan.audience {
            Audience::Subject(_) => (
                vec![NotificationReceiver::AdministrativeContact],
                Vec::new(),
            ),
            Audience::Admins => (Vec::new(), service.directory().admins().await?),
            Audience::Users(users) => (Vec::new(), users),
        };
        if receivers.is_empty() && receiver_user_ids.is_empty() {
            // No admin to tell (yet): nothing to do.
            continue;
        }
        let note = Note {
            id: Some(note_id(&event.unique_id, plan.notification_type)),
            entity_ids: plan.entity_ids,
            notification_type: plan.notification_type,
            data: plan.data,
            sender_ids: sender_ids.clone(),
            receivers,
            receiver_user_ids,
            email: true,
        };
        match service.notify(&ctx, note).await {
            Ok(_) => {}
            // Its receivers are gone (a user deleted since): nobody to tell.
            Err(crate::error::Error::InvalidArgument(v))
                if v.reason.starts_with("no_receiver_user_ids") => {}
            Err(error) => return Err(anyhow::Error::new(error)),
        }
    }
    Ok(())
}

/// Joins the durable consumer and returns the task that works through it
/// until `shutdown` resolves.
pub async fn spawn(
    service: Arc<NotificationsService>,
    bus: Arc<dyn EventBus>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    spawn_worker(
        bus,
        CONSUMER,
        PATTERNS,
        RETRY_DELAY,
        shutdown,
        move |event| {
            let service = service.clone();
            async move { handle(&service, &event).await }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_core::events::new_event;

    fn user_event(name: &str, user: User, changed: &[&str]) -> Event {
        let user_id = user.ids.as_ref().unwrap().user_id.clone();
        new_event(
            name,
            vec![user_entity(&user_id)],
            any_of(&UserEventData {
                user: Some(user),
                changed_paths: changed.iter().map(|p| p.to_string()).collect(),
                revoke_all_access: false,
            }),
        )
    }

    fn alice(state: State) -> User {
        User {
            ids: Some(UserIdentifiers {
                user_id: "alice".into(),
                email: String::new(),
            }),
            state: state as i32,
            password_updated_at: Some(prost_types::Timestamp::default()),
            ..Default::default()
        }
    }

    fn kinds(event: &Event) -> Vec<NotificationType> {
        plan(event).iter().map(|p| p.notification_type).collect()
    }

    #[test]
    fn a_requested_user_is_announced_to_the_admins_only() {
        let planned = plan(&user_event("user.create", alice(State::Requested), &[]));
        assert_eq!(planned.len(), 1);
        assert_eq!(
            planned[0].notification_type,
            NotificationType::UserRequested
        );
        assert_eq!(planned[0].audience, Audience::Admins);
        assert!(plan(&user_event("user.create", alice(State::Approved), &[])).is_empty());
    }

    #[test]
    fn updates_say_what_changed() {
        let event = user_event(
            "user.update",
            alice(State::Suspended),
            &["password_updated_at", "state"],
        );
        assert_eq!(
            kinds(&event),
            [
                NotificationType::PasswordChanged,
                NotificationType::EntityStateChanged
            ]
        );
        assert!(
            kinds(&user_event(
                "user.update",
                alice(State::Approved),
                &["name"]
            ))
            .is_empty()
        );
    }

    #[test]
    fn only_a_new_temporary_password_is_announced() {
        let mut with_one = alice(State::Approved);
        with_one.temporary_password_created_at = Some(prost_types::Timestamp::default());
        assert_eq!(
            kinds(&user_event(
                "user.update",
                with_one,
                &["temporary_password"]
            )),
            [NotificationType::TemporaryPassword]
        );
        // Using it up clears it: that is the password change, not a request.
        assert!(
            kinds(&user_event(
                "user.update",
                alice(State::Approved),
                &["temporary_password"]
            ))
            .is_empty()
        );
    }

    #[test]
    fn state_change_data_carries_no_secret_fields() {
        let mut user = alice(State::Suspended);
        user.password = "never".into();
        user.temporary_password = "never".into();
        let planned = plan(&user_event("user.update", user, &["state"]));
        let shown: User = planned[0].data.as_ref().unwrap().to_msg().unwrap();
        assert!(shown.password.is_empty() && shown.temporary_password.is_empty());
        assert_eq!(shown.state, State::Suspended as i32);
    }

    #[test]
    fn an_admins_lock_and_a_deactivation_reach_the_user_without_the_reasons() {
        let about = vec![user_entity("alice")];
        let status = UserLifecycleStatus {
            locked: true,
            lock_reason: "fraud review".into(),
            deactivation_reason: "left".into(),
            ..Default::default()
        };
        for (name, kind) in [
            (lifecycle::LOCK, NotificationType::AccountLockedByAdmin),
            (lifecycle::DEACTIVATE, NotificationType::AccountDeactivated),
        ] {
            let planned = plan(&new_event(name, about.clone(), any_of(&status)));
            assert_eq!(planned.len(), 1, "{name}");
            assert_eq!(planned[0].notification_type, kind);
            assert_eq!(planned[0].audience, Audience::Subject("alice".into()));
            let shown: UserLifecycleStatus = planned[0].data.as_ref().unwrap().to_msg().unwrap();
            assert!(shown.locked);
            assert!(shown.lock_reason.is_empty() && shown.deactivation_reason.is_empty());
        }
        assert!(
            plan(&new_event(
                lifecycle::UNLOCK,
                about.clone(),
                any_of(&status)
            ))
            .is_empty()
        );
        assert!(plan(&new_event(lifecycle::REACTIVATE, about, any_of(&status))).is_empty());
    }

    #[test]
    fn second_factor_changes_reach_the_user() {
        let about = vec![user_entity("alice")];
        for (name, kind) in [
            (mfa::TOTP_ADDED, NotificationType::SecondFactorAdded),
            (mfa::OTP_EMAIL_ADDED, NotificationType::SecondFactorAdded),
            (
                mfa::RECOVERY_CODES_GENERATED,
                NotificationType::SecondFactorAdded,
            ),
            (mfa::TOTP_REMOVED, NotificationType::SecondFactorRemoved),
            (
                mfa::OTP_EMAIL_REMOVED,
                NotificationType::SecondFactorRemoved,
            ),
            (
                mfa::RECOVERY_CODES_REMOVED,
                NotificationType::SecondFactorRemoved,
            ),
            (mfa::RECOVERY_CODE_USED, NotificationType::RecoveryCodeUsed),
        ] {
            assert!(PATTERNS.contains(&name), "{name}");
            let planned = plan(&new_event(name, about.clone(), None));
            assert_eq!(planned.len(), 1, "{name}");
            assert_eq!(planned[0].notification_type, kind);
            assert_eq!(planned[0].audience, Audience::Subject("alice".into()));
        }
    }

    #[test]
    fn an_accepted_invitation_goes_to_its_sender() {
        let event = new_event(
            "invitation.accept",
            vec![],
            any_of(&Invitation {
                email: "carol@example.com".into(),
                sent_by: Some(UserIdentifiers {
                    user_id: "ops".into(),
                    email: String::new(),
                }),
                ..Default::default()
            }),
        );
        let planned = plan(&event);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].audience, Audience::Users(vec!["ops".into()]));
    }

    #[test]
    fn the_same_event_always_gives_the_same_ids() {
        let a = note_id("e1", NotificationType::PasswordChanged);
        assert_eq!(a, note_id("e1", NotificationType::PasswordChanged));
        assert_ne!(a, note_id("e2", NotificationType::PasswordChanged));
        assert_ne!(a, note_id("e1", NotificationType::EntityStateChanged));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}
