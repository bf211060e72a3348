//! The access service's work on other services' events: when a user is
//! purged, its API keys and login tokens go too. A durable consumer shared
//! by every replica handles each `user.purge` once (at least once; deleting
//! twice is harmless). Nothing is deleted before the user registry confirms
//! the purge (see [`AccessService::forget_user_credentials`]).

use std::sync::Arc;
use std::time::Duration;

use roster_core::events::{EventBus, spawn_worker, user_ids};

use crate::service::AccessService;

/// The durable consumer's name.
pub const CONSUMER: &str = "access";

/// Events the worker handles.
pub const PATTERNS: &[&str] = &[roster_core::events::names::USER_PURGE];

/// How long a failed event waits before it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Joins the durable consumer and returns the task that works through it
/// until `shutdown` resolves.
pub async fn spawn(
    service: Arc<AccessService>,
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
                for user_id in user_ids(&event) {
                    service
                        .forget_user_credentials(&user_id)
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("deleting the credentials of {user_id}: {e}")
                        })?;
                }
                Ok(())
            }
        },
    )
    .await
}
