//! The sessions service's work on other services' events: a user's
//! sessions end when the user is deleted, purged or deactivated, when a
//! password change asks to revoke all access, and when the user is
//! suspended, rejected or sent back to approval. A durable consumer shared by every replica
//! handles each event (at least once; ending sessions twice is harmless).
//!
//! An event only says what happened; before ending anything the worker asks
//! the user registry, which owns users, whether it did: the user is gone,
//! its state is one whose sessions end, or its password changed (and then
//! only sessions older than that change end). A forged event for a live
//! user ends nothing and is logged at `warn`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use roster_core::auth::CallContext;
use roster_core::events::{EventBus, lifecycle, names, spawn_worker, user_ids};
use roster_proto::v1::{Event, State, UserEventData};
use tonic::Status;

use crate::peers::Peers;
use crate::service::SessionsService;

/// The durable consumer's name.
pub const CONSUMER: &str = "sessions";

/// Events the worker handles.
pub const PATTERNS: &[&str] = &[
    names::USER_UPDATE,
    names::USER_DELETE,
    names::USER_PURGE,
    lifecycle::DEACTIVATE,
    lifecycle::END_SESSIONS,
];

/// How long a failed event waits before it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Why an event would end a user's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `user.delete` or `user.purge`: the user is gone.
    UserGone,
    /// The user's state changed to one whose sessions end (suspended,
    /// rejected, back to requested).
    StateEnds,
    /// A password change that asked to revoke all access.
    PasswordChanged,
    /// `user.lifecycle.deactivate` (the account was deactivated; its
    /// sessions end for good, reactivation brings back API keys only) or
    /// `user.lifecycle.end_sessions` (a first second factor ended the
    /// sessions that were limited to enrolling one): the registry ended
    /// the sessions made until its `sessions_ended_at`.
    SessionsEnded,
}

/// What `event` claims ends its user's sessions, in the order the claims
/// are checked.
pub fn endings(event: &Event) -> Vec<Ending> {
    match event.name.as_str() {
        names::USER_DELETE | names::USER_PURGE => vec![Ending::UserGone],
        name if name == lifecycle::DEACTIVATE || name == lifecycle::END_SESSIONS => {
            vec![Ending::SessionsEnded]
        }
        names::USER_UPDATE => {
            let Some(data) = event
                .data
                .as_ref()
                .and_then(|any| UserEventData::decode(any.value.as_slice()).ok())
            else {
                return Vec::new();
            };
            let state_ends = data.changed_paths.iter().any(|p| p == "state")
                && data
                    .user
                    .as_ref()
                    .is_some_and(|user| !state_keeps_sessions(user.state));
            let mut endings = Vec::new();
            if state_ends {
                endings.push(Ending::StateEnds);
            }
            if data.revoke_all_access {
                endings.push(Ending::PasswordChanged);
            }
            endings
        }
        _ => Vec::new(),
    }
}

/// Whether `event` claims to end every session of its user.
pub fn ends_sessions(event: &Event) -> bool {
    !endings(event).is_empty()
}

fn state_keeps_sessions(state: i32) -> bool {
    matches!(State::try_from(state), Ok(State::Approved | State::Flagged))
}

/// Which of the user's sessions the user registry confirms `ending` ends:
/// all of them, those made before a time, or none (the registry says
/// otherwise than the event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmed {
    All,
    MadeBefore(DateTime<Utc>),
    Nothing,
}

/// Asks the user registry whether `ending` holds for `user_id`: events are
/// input like any other, and a forged one must not log a live user out.
async fn confirm(peers: &dyn Peers, user_id: &str, ending: Ending) -> Result<Confirmed, Status> {
    Ok(match ending {
        Ending::UserGone => match peers.account(user_id).await? {
            None => Confirmed::All,
            Some(_) => Confirmed::Nothing,
        },
        Ending::StateEnds => match peers.account(user_id).await? {
            Some(account) if state_keeps_sessions(account.state as i32) => Confirmed::Nothing,
            _ => Confirmed::All,
        },
        // Only sessions older than the password the registry holds end, so
        // a forged event cannot end a session made with that password.
        Ending::PasswordChanged => match peers.password_changed_at(user_id).await? {
            Some(at) => Confirmed::MadeBefore(at),
            None => Confirmed::Nothing,
        },
        // The sessions made until the registry's `sessions_ended_at` end
        // (the access service refuses them already), also when the event
        // comes after a reactivation. While the user is deactivated still,
        // every session ends, one made by a login that raced the
        // deactivation too. A forged event for a user whose sessions the
        // registry never ended ends nothing.
        Ending::SessionsEnded => match peers.deactivation(user_id).await? {
            Some(d) if d.holds => Confirmed::All,
            Some(d) => {
                Confirmed::MadeBefore(d.sessions_ended_at + chrono::Duration::microseconds(1))
            }
            None => Confirmed::Nothing,
        },
    })
}

/// Ends the sessions of `user_id` that the registry confirms `ending`
/// ends.
async fn end_confirmed(
    service: &SessionsService,
    ctx: &CallContext,
    user_id: &str,
    ending: Ending,
) -> anyhow::Result<()> {
    let confirmed = confirm(service.peers().as_ref(), user_id, ending)
        .await
        .map_err(|status| anyhow::anyhow!("asking the user registry about {user_id}: {status}"))?;
    let ended = match confirmed {
        Confirmed::All => service.end_all_sessions(ctx, user_id).await,
        Confirmed::MadeBefore(at) => service.end_sessions_made_before(ctx, user_id, at).await,
        Confirmed::Nothing => {
            tracing::warn!(%user_id, ?ending, correlation_id = %ctx.correlation_id, "an event claims what the user registry denies; sessions stay");
            return Ok(());
        }
    };
    ended.map_err(|e| anyhow::anyhow!("ending the sessions of {user_id}: {e}"))?;
    Ok(())
}

/// Ends the sessions `event` calls to end, as far as the user registry
/// confirms it.
async fn handle(service: &SessionsService, event: Event) -> anyhow::Result<()> {
    let endings = endings(&event);
    if endings.is_empty() {
        return Ok(());
    }
    // The work is done on behalf of the service that caused it.
    let ctx = CallContext::for_event(&event);
    for user_id in user_ids(&event) {
        for ending in &endings {
            end_confirmed(service, &ctx, &user_id, *ending).await?;
        }
    }
    Ok(())
}

/// Joins the durable consumer and returns the task that works through it
/// until `shutdown` resolves.
pub async fn spawn(
    service: Arc<SessionsService>,
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
            async move { handle(&service, event).await }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_core::events::{new_event, pack};
    use roster_proto::v1::User;

    fn update(paths: &[&str], state: State, revoke: bool) -> Event {
        new_event(
            "user.update",
            vec![],
            Some(pack(&UserEventData {
                user: Some(User {
                    state: state as i32,
                    ..Default::default()
                }),
                changed_paths: paths.iter().map(|p| p.to_string()).collect(),
                revoke_all_access: revoke,
            })),
        )
    }

    #[test]
    fn which_events_end_a_users_sessions() {
        assert!(ends_sessions(&new_event("user.delete", vec![], None)));
        assert!(ends_sessions(&new_event("user.purge", vec![], None)));
        assert!(ends_sessions(&update(&["state"], State::Suspended, false)));
        assert!(ends_sessions(&update(&["state"], State::Rejected, false)));
        assert!(ends_sessions(&update(
            &["password_updated_at"],
            State::Approved,
            true
        )));
        assert!(!ends_sessions(&update(
            &["password_updated_at"],
            State::Approved,
            false
        )));
        assert!(!ends_sessions(&update(&["state"], State::Flagged, false)));
        assert!(!ends_sessions(&update(&["name"], State::Suspended, false)));
        assert!(!ends_sessions(&new_event("user.update", vec![], None)));
        assert!(!ends_sessions(&new_event("user.restore", vec![], None)));
        assert!(ends_sessions(&new_event(
            lifecycle::DEACTIVATE,
            vec![],
            None
        )));
        assert!(ends_sessions(&new_event(
            lifecycle::END_SESSIONS,
            vec![],
            None
        )));
        assert!(!ends_sessions(&new_event(lifecycle::LOCK, vec![], None)));
        assert!(!ends_sessions(&new_event(
            lifecycle::REACTIVATE,
            vec![],
            None
        )));
    }

    #[test]
    fn a_suspension_with_a_revoking_password_change_makes_two_claims_to_check() {
        assert_eq!(
            endings(&update(
                &["state", "password_updated_at"],
                State::Suspended,
                true
            )),
            vec![Ending::StateEnds, Ending::PasswordChanged]
        );
        assert_eq!(
            endings(&new_event("user.purge", vec![], None)),
            vec![Ending::UserGone]
        );
    }
}
