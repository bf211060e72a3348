//! The in-process bus, for the embedded setup without NATS: one broadcast
//! channel, filtered per subscriber by event name, and one queue per work
//! consumer. It is fed by the same outbox relay as the JetStream bus, so
//! services behave the same on both.
//!
//! Work consumers here are not durable: a consumer's queue starts with its
//! first [`consume`](EventBus::consume) call and lives as long as the bus,
//! that is as long as the process. Events published before that call, and
//! events still queued or unacknowledged when the process stops, are lost.
//! That is the price of the embedded default; run NATS where it matters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use roster_proto::v1::Event;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::bus::{
    Acknowledge, BusError, Delivery, DeliveryStream, EventBus, EventStream, validate_consumer,
    validate_pattern,
};

/// How many events the channel keeps for slow subscribers. Large, because a
/// subscriber that falls further behind loses events (and then relies on
/// cache TTLs to heal).
const CAPACITY: usize = 16_384;

/// How long after a work delivery was dropped unsettled its event is
/// queued again, as JetStream does after its acknowledgement wait.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// An [`EventBus`] that only reaches subscribers in this process.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    sender: broadcast::Sender<Arc<Event>>,
    /// The work consumers, by durable name.
    groups: Arc<Mutex<HashMap<String, Arc<Group>>>>,
    ack_wait: Duration,
}

/// One work consumer: a queue that all its [`consume`](EventBus::consume)
/// streams take from, so each event goes to one of them.
#[derive(Debug)]
struct Group {
    /// The patterns of the latest `consume` call; publishing queues the
    /// events matching any of them.
    patterns: Mutex<Vec<String>>,
    sender: mpsc::UnboundedSender<Queued>,
    /// Held by the stream waiting for the next event. Tokio's mutex is fair,
    /// so waiting streams take turns.
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
}

/// An event in a work consumer's queue, with how often it was delivered.
#[derive(Debug)]
struct Queued {
    event: Arc<Event>,
    delivered: u64,
}

impl MemoryBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self {
            sender,
            groups: Arc::default(),
            ack_wait: ACK_WAIT,
        }
    }

    /// Sets how long after a work delivery was dropped unsettled its event
    /// is delivered again (30 s by default). Unlike JetStream, this bus
    /// never takes back a delivery that is still held, however long.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// The queue of the work consumer `durable`, created on first use, now
    /// taking the events that match `patterns`.
    fn group(&self, durable: &str, patterns: &[String]) -> Arc<Group> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let group = groups
            .entry(durable.to_owned())
            .or_insert_with(|| {
                let (sender, receiver) = mpsc::unbounded_channel();
                Arc::new(Group {
                    patterns: Mutex::new(Vec::new()),
                    sender,
                    receiver: tokio::sync::Mutex::new(receiver),
                })
            })
            .clone();
        *group.patterns.lock().unwrap_or_else(|e| e.into_inner()) = patterns.to_vec();
        group
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
        let event = Arc::new(event.clone());
        // An error only means nobody is subscribed, which is not a failure:
        // like core NATS, the bus does not keep events for later subscribers.
        let _ = self.sender.send(event.clone());
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for group in groups.values() {
            let wanted = group
                .patterns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|pattern| name_matches(pattern, &event.name));
            if wanted {
                // The group holds its receiver, so the queue is open.
                let _ = group.sender.send(Queued {
                    event: event.clone(),
                    delivered: 0,
                });
            }
        }
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

    /// Joins the in-process work consumer `durable`; see the
    /// [module documentation](self) for what it does not keep.
    async fn consume(&self, durable: &str, patterns: &[&str]) -> Result<DeliveryStream, BusError> {
        validate_consumer(durable, patterns)?;
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        let group = self.group(durable, &patterns);
        let ack_wait = self.ack_wait;
        let stream = futures::stream::unfold(group, move |group| {
            let patterns = patterns.clone();
            async move {
                loop {
                    // The group holds a sender, so the queue never ends.
                    let queued = group.receiver.lock().await.recv().await?;
                    if !patterns
                        .iter()
                        .any(|pattern| name_matches(pattern, &queued.event.name))
                    {
                        // Queued under another replica's patterns.
                        continue;
                    }
                    let delivered = queued.delivered + 1;
                    let delivery = Delivery::new(
                        (*queued.event).clone(),
                        delivered,
                        MemoryAck {
                            event: queued.event,
                            delivered,
                            queue: group.sender.clone(),
                            ack_wait,
                        },
                    );
                    return Some((delivery, group));
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

/// Settles an in-process work delivery: acking forgets the event, anything
/// else queues it again.
struct MemoryAck {
    event: Arc<Event>,
    delivered: u64,
    queue: mpsc::UnboundedSender<Queued>,
    ack_wait: Duration,
}

impl MemoryAck {
    /// Queues the event again after `delay`, on the current runtime; with
    /// no runtime (dropped during shutdown), at once.
    fn requeue_after(self, delay: Duration) {
        let queued = Queued {
            event: self.event,
            delivered: self.delivered,
        };
        let queue = self.queue;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !delay.is_zero() => {
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = queue.send(queued);
                });
            }
            _ => {
                let _ = queue.send(queued);
            }
        }
    }
}

#[async_trait]
impl Acknowledge for MemoryAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }

    async fn nack(self: Box<Self>, delay: Duration) {
        self.requeue_after(delay);
    }

    fn abandon(self: Box<Self>) {
        let ack_wait = self.ack_wait;
        self.requeue_after(ack_wait);
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

    /// The next work delivery, failing the test after five seconds.
    async fn next(deliveries: &mut DeliveryStream) -> Delivery {
        timeout(Duration::from_secs(5), deliveries.next())
            .await
            .expect("no delivery in time")
            .expect("the delivery stream ended")
    }

    #[tokio::test]
    async fn replicas_of_a_work_consumer_share_its_events() {
        const EVENTS: usize = 50;
        let bus = MemoryBus::new();
        let one = bus.consume("notifications", &["user.>"]).await.unwrap();
        let two = bus.consume("notifications", &["user.>"]).await.unwrap();
        let mut shared: DeliveryStream = Box::pin(
            futures::stream::select(
                one.map(|delivery| (1, delivery)),
                two.map(|delivery| (2, delivery)),
            )
            .map(|(_, delivery)| delivery),
        );
        let mut published = std::collections::HashSet::new();
        for i in 0..EVENTS {
            let event = event(&format!("user.e{i}"));
            bus.publish(&event).await.unwrap();
            published.insert(event.unique_id);
        }

        let mut seen = std::collections::HashSet::new();
        while seen.len() < EVENTS {
            let delivery = next(&mut shared).await;
            assert!(
                seen.insert(delivery.event.unique_id.clone()),
                "delivered twice"
            );
            assert_eq!(delivery.attempt(), 1);
            delivery.ack().await.unwrap();
        }
        assert_eq!(seen, published);
        // Nothing else was queued: the next delivery is the next event.
        let last = event("user.last");
        bus.publish(&last).await.unwrap();
        assert_eq!(next(&mut shared).await.event, last);
    }

    #[tokio::test]
    async fn every_work_consumer_gets_every_matching_event() {
        let bus = MemoryBus::new();
        let mut access = bus.consume("access", &["user.>"]).await.unwrap();
        let mut notifications = bus
            .consume("notifications", &["user.create", "invitation.*"])
            .await
            .unwrap();
        let events: Vec<Event> = ["user.create", "invitation.create", "user.delete"]
            .into_iter()
            .map(event)
            .collect();
        for event in &events {
            bus.publish(event).await.unwrap();
        }
        for want in [&events[0], &events[2]] {
            let delivery = next(&mut access).await;
            assert_eq!(&delivery.event, want);
            delivery.ack().await.unwrap();
        }
        for want in [&events[0], &events[1]] {
            let delivery = next(&mut notifications).await;
            assert_eq!(&delivery.event, want);
            delivery.ack().await.unwrap();
        }
    }

    #[tokio::test]
    async fn work_consumers_only_get_events_published_after_they_joined() {
        let bus = MemoryBus::new();
        bus.publish(&event("user.create")).await.unwrap();
        let mut deliveries = bus.consume("access", &[">"]).await.unwrap();
        let later = event("user.update");
        bus.publish(&later).await.unwrap();
        assert_eq!(next(&mut deliveries).await.event, later);
    }

    #[tokio::test]
    async fn a_nacked_delivery_comes_again() {
        let bus = MemoryBus::new();
        let mut deliveries = bus.consume("access", &["user.>"]).await.unwrap();
        let first = event("user.create");
        bus.publish(&first).await.unwrap();

        let delivery = next(&mut deliveries).await;
        delivery.nack(Duration::from_millis(20)).await;
        let again = next(&mut deliveries).await;
        assert_eq!(again.event, first);
        assert_eq!(again.attempt(), 2);
        again.nack(Duration::ZERO).await;
        let third = next(&mut deliveries).await;
        assert_eq!(third.event, first);
        assert_eq!(third.attempt(), 3);
        third.ack().await.unwrap();

        let second = event("user.delete");
        bus.publish(&second).await.unwrap();
        assert_eq!(next(&mut deliveries).await.event, second);
    }

    #[tokio::test]
    async fn a_delivery_dropped_unsettled_comes_again_after_the_ack_wait() {
        let bus = MemoryBus::new().with_ack_wait(Duration::from_millis(20));
        let mut deliveries = bus.consume("access", &[">"]).await.unwrap();
        let created = event("user.create");
        bus.publish(&created).await.unwrap();
        drop(next(&mut deliveries).await);
        drop(deliveries);

        let mut restarted = bus.consume("access", &[">"]).await.unwrap();
        let again = next(&mut restarted).await;
        assert_eq!(again.event, created);
        assert_eq!(again.attempt(), 2);
    }

    #[tokio::test]
    async fn work_consumers_need_a_name_and_valid_patterns() {
        let bus = MemoryBus::new();
        assert!(matches!(
            bus.consume("", &[">"]).await,
            Err(BusError::Subscribe(_))
        ));
        assert!(matches!(
            bus.consume("access", &[]).await,
            Err(BusError::Subscribe(_))
        ));
        assert!(matches!(
            bus.consume("access", &["user", "user.>.create"]).await,
            Err(BusError::InvalidPattern(_))
        ));
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
