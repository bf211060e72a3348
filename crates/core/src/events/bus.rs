//! The [`EventBus`] trait that both buses implement, so services and the
//! outbox relay do not care whether events travel through NATS or stay in
//! the process, and the [`Delivery`] that work consumers acknowledge.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use roster_proto::v1::Event;

/// Events matching one subscription, in the order the bus delivered them.
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// The events of one work consumer ([`EventBus::consume`]), each to be
/// acknowledged once handled.
pub type DeliveryStream = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// Why the bus could not publish or subscribe.
///
/// Messages carry their cause inline because they end up in the outbox's
/// `last_error` column and in logs as one line.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The pattern is not a valid NATS-style pattern.
    #[error("invalid subscription pattern {0:?}")]
    InvalidPattern(String),
    /// The event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// The bus did not accept the event (no stream, no acknowledgement,
    /// connection lost); the caller keeps it and retries.
    #[error("publish failed: {0}")]
    Publish(String),
    /// The subscription or work consumer could not be set up.
    #[error("subscribe failed: {0}")]
    Subscribe(String),
    /// The bus did not confirm an acknowledgement; the event will be
    /// delivered again.
    #[error("acknowledgement failed: {0}")]
    Ack(String),
}

/// Carries domain events between services.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `event` and returns once the bus has accepted it for good
    /// (for JetStream: stored and acknowledged). Only the outbox relay
    /// should call this, after the event's transaction committed.
    async fn publish(&self, event: &Event) -> Result<(), BusError>;

    /// Publishes `events` in order, as [`publish`](EventBus::publish) does
    /// one, and returns one result per event it tried. This default tries
    /// one after the other and stops after the first failure; JetStream
    /// sends them all before it waits for the acknowledgements, which it
    /// reads in order, so a batch costs about one round trip.
    async fn publish_batch(&self, events: &[Event]) -> Vec<Result<(), BusError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let result = self.publish(event).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }

    /// Subscribes to the events whose *name* matches `pattern`, with NATS
    /// wildcard semantics over the dot-separated tokens: `*` stands for one
    /// token, a trailing `>` for one or more (`>` alone for every event,
    /// `user.>`, `user.api-key.*`).
    ///
    /// This is fan-out: every subscription, in every process, sees every
    /// matching event published after it was set up. It suits cache
    /// invalidation; work that must happen once per service belongs on a
    /// work consumer ([`consume`](EventBus::consume)) instead.
    async fn subscribe(&self, pattern: &str) -> Result<EventStream, BusError>;

    /// Joins the work consumer called `durable`, which receives the events
    /// whose name matches any of `patterns` (as for
    /// [`subscribe`](EventBus::subscribe)).
    ///
    /// The durable name identifies the consuming *service* (`access`,
    /// `notifications`), not the process: every replica of a service calls
    /// `consume` with the same name and the replicas share the work, each
    /// event going to one of them. Consumers with different names each get
    /// every matching event.
    ///
    /// Every replica should pass the same patterns. Joining with other
    /// patterns changes them for the whole consumer, yet each replica hands
    /// out only events matching the patterns it passed itself and
    /// acknowledges the rest unhandled; so change a consumer's patterns
    /// only with all its replicas restarting, or take a new durable name.
    ///
    /// Delivery is at least once. A handler [acks](Delivery::ack) an event
    /// after handling it (its effects committed); an event that is
    /// [nacked](Delivery::nack), dropped unsettled, or not acknowledged in
    /// time (the handler's process died, the ack got lost) is delivered
    /// again, possibly to another replica. Handlers must therefore be
    /// idempotent, for instance by recording the `unique_id`s of handled
    /// events in the same transaction as their effects and acking events
    /// already recorded without handling them again. Order holds for first
    /// deliveries to one replica, not across replicas or redeliveries.
    ///
    /// How long events wait for a consumer depends on the bus: JetStream
    /// keeps them in the stream, so a new consumer starts with the oldest
    /// event the stream still holds and a consumer that was down catches up
    /// on what it missed; the in-process bus only queues events published
    /// after the consumer was first joined, and loses them with the process.
    async fn consume(&self, durable: &str, patterns: &[&str]) -> Result<DeliveryStream, BusError>;
}

/// One event handed to a work consumer, with the handle that settles it.
///
/// Settle every delivery with [`ack`](Delivery::ack) or
/// [`nack`](Delivery::nack). A delivery dropped unsettled counts as a
/// handler that crashed: the event is delivered again once the bus's
/// acknowledgement wait (30 s unless configured otherwise) has passed.
pub struct Delivery {
    /// The event to handle.
    pub event: Event,
    attempt: u64,
    settle: Option<Box<dyn Acknowledge>>,
}

impl Delivery {
    /// A delivery of `event` for the `attempt`-th time (counting from 1),
    /// settled through `settle`. Buses make these; so can test doubles.
    pub fn new(event: Event, attempt: u64, settle: impl Acknowledge) -> Self {
        Self {
            event,
            attempt: attempt.max(1),
            settle: Some(Box::new(settle)),
        }
    }

    /// How many times this event has been delivered to this consumer,
    /// this delivery included: 1 the first time. Handlers can grow their
    /// [`nack`](Delivery::nack) delay with it.
    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// Marks the event handled, so it is not delivered again. An error
    /// means the bus may not have recorded the acknowledgement and may
    /// deliver the event again.
    pub async fn ack(mut self) -> Result<(), BusError> {
        match self.settle.take() {
            Some(settle) => settle.ack().await,
            None => Ok(()),
        }
    }

    /// Gives the event back unhandled, to be delivered again (to any
    /// replica) after `delay`. It never fails: should the bus not get the
    /// message, the event comes back after the acknowledgement wait.
    pub async fn nack(mut self, delay: Duration) {
        if let Some(settle) = self.settle.take() {
            settle.nack(delay).await;
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.abandon();
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event)
            .field("attempt", &self.attempt)
            .field("settled", &self.settle.is_none())
            .finish()
    }
}

/// How a bus settles one [`Delivery`]; each method is called at most once
/// per delivery, and only one of them.
#[async_trait]
pub trait Acknowledge: Send + 'static {
    /// The event was handled.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Deliver the event again after `delay`.
    async fn nack(self: Box<Self>, delay: Duration);
    /// The delivery was dropped unsettled. By default nothing happens,
    /// which suits buses that redeliver unacknowledged events by
    /// themselves.
    fn abandon(self: Box<Self>) {}
}

/// Checks the arguments of [`EventBus::consume`]: a durable name that is
/// not blank, and at least one valid pattern.
pub(crate) fn validate_consumer(durable: &str, patterns: &[&str]) -> Result<(), BusError> {
    if durable.trim().is_empty() {
        return Err(BusError::Subscribe(
            "a work consumer needs a durable name".into(),
        ));
    }
    if patterns.is_empty() {
        return Err(BusError::Subscribe(format!(
            "work consumer {durable:?} has no patterns"
        )));
    }
    patterns
        .iter()
        .try_for_each(|pattern| validate_pattern(pattern))
}

/// Checks that `pattern` is one a NATS server accepts as a subscription:
/// non-empty tokens, and `>` only as the last token.
pub(crate) fn validate_pattern(pattern: &str) -> Result<(), BusError> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    let last = tokens.len() - 1;
    let valid = tokens.iter().enumerate().all(|(i, token)| {
        !token.is_empty()
            && !token.contains(char::is_whitespace)
            && (*token != ">" || i == last)
            && (token.len() == 1 || !token.contains(['*', '>']))
    });
    if valid {
        Ok(())
    } else {
        Err(BusError::InvalidPattern(pattern.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_pattern;

    #[test]
    fn nats_style_patterns_are_accepted() {
        for pattern in [">", "user.>", "user.api-key.*", "*.create", "user.create"] {
            assert!(validate_pattern(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for pattern in [
            "",
            "user.",
            ".user",
            "user..create",
            ">.user",
            "us*r",
            "a b",
        ] {
            assert!(validate_pattern(pattern).is_err(), "{pattern}");
        }
    }
}
