//! The [`EventBus`] trait that both buses implement, so services and the
//! outbox relay do not care whether events travel through NATS or stay in
//! the process.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use roster_proto::v1::Event;

/// Events matching one subscription, in the order the bus delivered them.
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

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
    /// The subscription could not be set up.
    #[error("subscribe failed: {0}")]
    Subscribe(String),
}

/// Carries domain events between services.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `event` and returns once the bus has accepted it for good
    /// (for JetStream: stored and acknowledged). Only the outbox relay
    /// should call this, after the event's transaction committed.
    async fn publish(&self, event: &Event) -> Result<(), BusError>;

    /// Subscribes to the events whose *name* matches `pattern`, with NATS
    /// wildcard semantics over the dot-separated tokens: `*` stands for one
    /// token, a trailing `>` for one or more (`>` alone for every event,
    /// `user.>`, `user.api-key.*`).
    ///
    /// This is fan-out: every subscription, in every process, sees every
    /// matching event published after it was set up. It suits cache
    /// invalidation; work that must happen once per service belongs on a
    /// durable consumer instead.
    async fn subscribe(&self, pattern: &str) -> Result<EventStream, BusError>;
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
