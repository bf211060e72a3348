//! The user registry's work on events: every process forgets its cached
//! copy of a user when a `user.*` event of a change to the user's row
//! arrives, from whichever process made it ([`events::USER_ROW_CHANGES`]).
//!
//! A fan-out subscription, not a work consumer: every replica must hear
//! every change. It is set up while the service is built, before the
//! server answers, so no change made after the first answer goes unheard
//! while the bus delivers; what a lost event leaves, the cache's TTL ends.

use std::sync::Arc;

use futures::StreamExt;
use roster_core::events::{EventBus, EventStream};

use crate::events;
use crate::store::UserCache;

/// The subscription that keeps a [`UserCache`] in step with the changes of
/// every process.
pub struct CacheInvalidation {
    cache: Arc<UserCache>,
    events: EventStream,
}

impl CacheInvalidation {
    /// Subscribes to the row-changing events on `bus`.
    pub async fn subscribe(bus: &dyn EventBus, cache: Arc<UserCache>) -> anyhow::Result<Self> {
        let mut streams = Vec::new();
        for pattern in events::USER_ROW_CHANGES {
            streams.push(bus.subscribe(pattern).await?);
        }
        Ok(Self {
            cache,
            events: Box::pin(futures::stream::select_all(streams)),
        })
    }

    /// Forgets the users each event names (every user for an event that
    /// names none) until `shutdown` resolves or the bus ends the
    /// subscription.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let event = tokio::select! {
                () = &mut shutdown => return,
                event = self.events.next() => event,
            };
            let Some(event) = event else {
                tracing::error!(
                    "the bus ended the subscription that keeps cached users fresh; \
                     a change made by another process now shows after the cache's TTL"
                );
                self.cache.forget_all();
                return;
            };
            let users = roster_core::events::user_ids(&event);
            if users.is_empty() {
                self.cache.forget_all();
            }
            for user in &users {
                self.cache.forget(user);
            }
        }
    }
}
