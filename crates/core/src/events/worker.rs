//! Work on other services' events: a durable consumer (see
//! [`EventBus::consume`]) whose events one handler works through, acking
//! each handled event and trying a failed one again later.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use roster_proto::v1::Event;
use roster_proto::v1::entity_identifiers::Ids;

use super::EventBus;

/// The users an event is about.
pub fn user_ids(event: &Event) -> Vec<String> {
    event
        .identifiers
        .iter()
        .filter_map(|ids| match &ids.ids {
            Some(Ids::UserIds(user)) => Some(user.user_id.clone()),
            _ => None,
        })
        .collect()
}

/// Joins the durable consumer `durable` on `patterns` and returns the task
/// that hands each event to `handle` until `shutdown` resolves. An event is
/// acknowledged once `handle` succeeded; after a failure it comes again
/// after `retry`. Delivery is at least once, so `handle` must be idempotent.
pub async fn spawn_worker<H, F>(
    bus: Arc<dyn EventBus>,
    durable: &str,
    patterns: &[&str],
    retry: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handle: H,
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    H: Fn(Event) -> F + Send + Sync + 'static,
    F: Future<Output = anyhow::Result<()>> + Send,
{
    let mut deliveries = bus.consume(durable, patterns).await?;
    let durable = durable.to_string();
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
            let name = delivery.event.name.clone();
            match handle(delivery.event.clone()).await {
                Ok(()) => {
                    if let Err(error) = delivery.ack().await {
                        tracing::warn!(consumer = %durable, event = %name, %error, "cannot acknowledge an event");
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = %durable, event = %name, error = format!("{error:#}"), "handling an event failed; it comes again");
                    delivery.nack(retry).await;
                }
            }
        }
    }))
}
