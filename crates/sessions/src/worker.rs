//! The sessions service's work on other services' events: a user's
//! sessions end when the user is deleted or purged, when a password change
//! asks to revoke all access, and when the user is suspended, rejected or
//! sent back to approval. A durable consumer shared by every replica
//! handles each event (at least once; ending sessions twice is harmless).

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use roster_core::auth::{CallContext, Caller};
use roster_core::events::{EventBus, spawn_worker, user_ids};
use roster_proto::v1::{Event, State, UserEventData};

use crate::service::SessionsService;

/// The durable consumer's name.
pub const CONSUMER: &str = "sessions";

/// Events the worker handles.
pub const PATTERNS: &[&str] = &["user.update", "user.delete", "user.purge"];

/// How long a failed event waits before it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Whether `event` ends every session of its user.
pub fn ends_sessions(event: &Event) -> bool {
    match event.name.as_str() {
        "user.delete" | "user.purge" => true,
        "user.update" => {
            let Some(data) = event
                .data
                .as_ref()
                .and_then(|any| UserEventData::decode(any.value.as_slice()).ok())
            else {
                return false;
            };
            let state_ends = data.changed_paths.iter().any(|p| p == "state")
                && data.user.as_ref().is_some_and(|user| {
                    !matches!(
                        State::try_from(user.state),
                        Ok(State::Approved | State::Flagged)
                    )
                });
            data.revoke_all_access || state_ends
        }
        _ => false,
    }
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
            async move {
                if !ends_sessions(&event) {
                    return Ok(());
                }
                // The work is done on behalf of the service that caused it.
                let ctx = CallContext {
                    caller: Caller::Cluster,
                    remote_ip: event.remote_ip.clone(),
                    user_agent: event.user_agent.clone(),
                    correlation_id: format!("event:{}", event.unique_id),
                };
                for user_id in user_ids(&event) {
                    service
                        .end_all_sessions(&ctx, &user_id)
                        .await
                        .map_err(|e| anyhow::anyhow!("ending the sessions of {user_id}: {e}"))?;
                }
                Ok(())
            }
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
    }
}
