//! The access service's work on other services' events: when a user is
//! purged, its API keys and login tokens go too. A durable consumer shared
//! by every replica handles each `user.purge` once (at least once; deleting
//! twice is harmless).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use roster_core::events::EventBus;
use roster_proto::v1::entity_identifiers::Ids;

use crate::service::AccessService;

/// The durable consumer's name.
pub const CONSUMER: &str = "access";

/// Events the worker handles.
pub const PATTERNS: &[&str] = &["user.purge"];

/// How long a failed event waits before it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Joins the durable consumer and returns the task that works through it
/// until `shutdown` resolves.
pub async fn spawn(
    service: Arc<AccessService>,
    bus: Arc<dyn EventBus>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut deliveries = bus.consume(CONSUMER, PATTERNS).await?;
    Ok(tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let delivery = tokio::select! {
                _ = &mut shutdown => break,
                next = deliveries.next() => match next {
                    Some(delivery) => delivery,
                    None => break,
                },
            };
            let users: Vec<String> = delivery
                .event
                .identifiers
                .iter()
                .filter_map(|ids| match &ids.ids {
                    Some(Ids::UserIds(user)) => Some(user.user_id.clone()),
                    _ => None,
                })
                .collect();
            let mut failed = false;
            for user_id in &users {
                if let Err(error) = service.forget_user_credentials(user_id).await {
                    tracing::warn!(%user_id, %error, "cannot delete the credentials of a purged user");
                    failed = true;
                }
            }
            if failed {
                delivery.nack(RETRY_DELAY).await;
            } else if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, "cannot acknowledge an event");
            }
        }
    }))
}
