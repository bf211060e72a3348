//! The JetStream bus: events are stored in one stream (`ROSTER_EVENTS`),
//! each on subject `<prefix>.<event name>`, with the event's unique id as
//! `Nats-Msg-Id` so JetStream drops the duplicates that outbox retries
//! produce.
//!
//! Fan-out subscriptions are core NATS subscriptions on the same subjects:
//! cheap, and every process gets its own copy. They see every publish
//! attempt that reached the server, so a retried event can show up twice;
//! cache invalidation does not mind. Work that must happen once per service
//! uses a durable consumer on [`NatsBus::jetstream`] instead.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_trait::async_trait;
use futures::StreamExt;
use prost::Message;
use roster_proto::v1::Event;

use super::EventsConfig;
use super::bus::{BusError, EventBus, EventStream, validate_pattern};

/// How long JetStream remembers message ids to drop duplicates. It must
/// outlast the outbox's longest retry gap after a publish whose
/// acknowledgement was lost.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// An [`EventBus`] over NATS JetStream.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    prefix: String,
}

impl NatsBus {
    /// Connects to `config.nats_url` and, when `config.create_stream` is
    /// set, makes sure the stream exists (an existing stream is used as it
    /// is, whatever its limits).
    #[tracing::instrument(skip_all, fields(stream = %config.stream))]
    pub async fn connect(config: &EventsConfig) -> anyhow::Result<NatsBus> {
        anyhow::ensure!(
            !config.subject_prefix.is_empty(),
            "events.subject_prefix must not be empty"
        );
        let client = async_nats::ConnectOptions::new()
            .name("roster")
            .connect(config.nats_url.as_str())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to NATS at {}: {e}",
                    crate::config::redacted_url(&config.nats_url)
                )
            })?;
        let jetstream = jetstream::new(client.clone());
        let bus = NatsBus {
            client,
            jetstream,
            stream: config.stream.clone(),
            prefix: config.subject_prefix.clone(),
        };
        if config.create_stream {
            bus.ensure_stream().await?;
        }
        Ok(bus)
    }

    /// Gets or creates the stream with Roster's settings. The server can
    /// fail a create with a storage error while another stream of the same
    /// account is being deleted (it removes and recreates the account's
    /// directory), so a failed attempt is retried a few times.
    pub async fn ensure_stream(&self) -> anyhow::Result<()> {
        let mut delay = std::time::Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match self
                .jetstream
                .get_or_create_stream(self.stream_config())
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 5 => {
                    tracing::warn!(stream = %self.stream, error = %e, attempt, "creating the stream failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    anyhow::bail!("cannot get or create stream {}: {e}", self.stream)
                }
            }
        }
    }

    /// The configuration Roster creates its stream with.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }

    /// The core NATS client, for subscriptions of its own.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context, for durable consumers.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The subject an event called `name` is published on; also works for
    /// patterns (`user.>` gives `<prefix>.user.>`).
    pub fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }
}

#[async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let message = PublishMessage::build()
            .payload(event.encode_to_vec().into())
            .message_id(&event.unique_id)
            // Refuse a subject captured by some other stream: the event
            // would be acknowledged yet not be where consumers read.
            .expected_stream(&self.stream);
        let ack = self
            .jetstream
            .send_publish(self.subject(&event.name), message)
            .await
            .map_err(|e| BusError::Publish(e.to_string()))?;
        ack.await.map_err(|e| BusError::Publish(e.to_string()))?;
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<EventStream, BusError> {
        validate_pattern(pattern)?;
        let subscriber = self
            .client
            .subscribe(self.subject(pattern))
            .await
            .map_err(|e| BusError::Subscribe(e.to_string()))?;
        // Once the server answered a ping it has registered the
        // subscription, so anything published after this returns reaches it.
        self.client
            .flush()
            .await
            .map_err(|e| BusError::Subscribe(e.to_string()))?;
        let stream = subscriber.filter_map(|message| {
            let event = match Event::decode(message.payload) {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(
                        subject = %message.subject,
                        %error,
                        "skipping a message that is not an event"
                    );
                    None
                }
            };
            futures::future::ready(event)
        });
        Ok(Box::pin(stream))
    }
}
