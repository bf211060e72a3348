//! The in-process bus, for the embedded setup without NATS: one broadcast
//! channel, filtered per subscriber by event name. It is fed by the same
//! outbox relay as the JetStream bus, so services behave the same on both.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use roster_proto::v1::Event;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::bus::{BusError, EventBus, EventStream, validate_pattern};

/// How many events the channel keeps for slow subscribers. Large, because a
/// subscriber that falls further behind loses events (and then relies on
/// cache TTLs to heal).
const CAPACITY: usize = 16_384;

/// An [`EventBus`] that only reaches subscribers in this process.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self { sender }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        // An error only means nobody is subscribed, which is not a failure:
        // like core NATS, the bus does not keep events for later subscribers.
        let _ = self.sender.send(Arc::new(event.clone()));
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<EventStream, BusError> {
        validate_pattern(pattern)?;
        let pattern = pattern.to_owned();
        let stream = BroadcastStream::new(self.sender.subscribe()).filter_map(move |item| {
            let event = match item {
                Ok(event) if name_matches(&pattern, &event.name) => Some((*event).clone()),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                    tracing::warn!(
                        pattern = %pattern,
                        skipped,
                        "event subscriber fell behind; skipping ahead"
                    );
                    None
                }
            };
            futures::future::ready(event)
        });
        Ok(Box::pin(stream))
    }
}

/// Whether the event name `name` matches the subscription `pattern`, with
/// NATS semantics over dot-separated tokens: `*` matches exactly one token,
/// a trailing `>` one or more tokens. A `>` that is not last is taken
/// literally (NATS would reject such a pattern; see
/// [`EventBus::subscribe`]), so the function is total.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let mut pattern_tokens = pattern.split('.').peekable();
    let mut name_tokens = name.split('.');
    while let Some(want) = pattern_tokens.next() {
        if want == ">" && pattern_tokens.peek().is_none() {
            return name_tokens.next().is_some();
        }
        match name_tokens.next() {
            Some(got) if want == "*" || want == got => {}
            _ => return false,
        }
    }
    name_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;
    use tokio::time::timeout;

    fn event(name: &str) -> Event {
        super::super::new_event(name, vec![], None)
    }

    #[test]
    fn wildcards_follow_nats_semantics() {
        assert!(name_matches(">", "user.create"));
        assert!(name_matches("user.>", "user.create"));
        assert!(name_matches("user.>", "user.api-key.create"));
        assert!(!name_matches("user.>", "user"));
        assert!(!name_matches("user.>", "invitation.create"));
        assert!(name_matches("user.api-key.*", "user.api-key.create"));
        assert!(!name_matches("user.api-key.*", "user.api-key"));
        assert!(!name_matches("user.api-key.*", "user.api-key.create.x"));
        assert!(name_matches("*.create", "user.create"));
        assert!(!name_matches("*.create", "user.api-key.create"));
        assert!(name_matches("user.create", "user.create"));
        assert!(!name_matches("user.create", "user.created"));
        assert!(!name_matches("user.create", "user"));
    }

    proptest! {
        #[test]
        fn matching_never_panics(pattern in ".*", name in ".*") {
            let _ = name_matches(&pattern, &name);
        }

        #[test]
        fn the_full_wildcard_matches_every_name(name in ".*") {
            prop_assert!(name_matches(">", &name));
        }

        #[test]
        fn every_name_matches_itself(name in ".*") {
            prop_assert!(name_matches(&name, &name));
        }

        #[test]
        fn event_like_names_match_themselves_and_their_prefix_wildcard(
            tokens in proptest::collection::vec("[a-z_-]{1,8}", 2..5)
        ) {
            let name = tokens.join(".");
            prop_assert!(name_matches(&name, &name));
            let prefix = format!("{}.>", tokens[0]);
            prop_assert!(name_matches(&prefix, &name));
            let mut star = tokens.clone();
            star[tokens.len() - 1] = "*".into();
            prop_assert!(name_matches(&star.join("."), &name));
        }
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_matching_event() {
        let bus = MemoryBus::new();
        let mut all = bus.subscribe(">").await.unwrap();
        let mut users = bus.subscribe("user.>").await.unwrap();

        bus.publish(&event("invitation.create")).await.unwrap();
        let create = event("user.create");
        bus.publish(&create).await.unwrap();

        let wait = Duration::from_secs(5);
        let first = timeout(wait, all.next()).await.unwrap().unwrap();
        assert_eq!(first.name, "invitation.create");
        let second = timeout(wait, all.next()).await.unwrap().unwrap();
        assert_eq!(second, create);
        let only = timeout(wait, users.next()).await.unwrap().unwrap();
        assert_eq!(only, create);
    }

    #[tokio::test]
    async fn subscribers_only_see_events_published_after_they_subscribed() {
        let bus = MemoryBus::new();
        bus.publish(&event("user.create")).await.unwrap();
        let mut sub = bus.subscribe(">").await.unwrap();
        let later = event("user.update");
        bus.publish(&later).await.unwrap();
        let got = timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, later);
    }

    #[tokio::test]
    async fn publishing_without_subscribers_succeeds() {
        let bus = MemoryBus::new();
        assert!(bus.publish(&event("user.create")).await.is_ok());
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_ahead_and_keeps_receiving() {
        let bus = MemoryBus::new();
        let mut sub = bus.subscribe(">").await.unwrap();
        for _ in 0..CAPACITY + 10 {
            bus.publish(&event("user.update")).await.unwrap();
        }
        let last = event("user.delete");
        bus.publish(&last).await.unwrap();

        let mut received = 0;
        loop {
            let got = timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap()
                .unwrap();
            received += 1;
            if got == last {
                break;
            }
        }
        assert!(received <= CAPACITY);
    }

    #[tokio::test]
    async fn malformed_patterns_are_refused() {
        let bus = MemoryBus::new();
        assert!(matches!(
            bus.subscribe("user.>.create").await,
            Err(BusError::InvalidPattern(_))
        ));
    }
}
