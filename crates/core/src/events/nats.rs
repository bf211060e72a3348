//! The JetStream bus: events are stored in one stream (`ROSTER_EVENTS`),
//! each on subject `<prefix>.<event name>`, with the event's unique id as
//! `Nats-Msg-Id` so JetStream drops the duplicates that outbox retries
//! produce.
//!
//! Fan-out subscriptions are core NATS subscriptions on the same subjects:
//! cheap, and every process gets its own copy. They see every publish
//! attempt that reached the server, so a retried event can show up twice;
//! cache invalidation does not mind. Work that must happen once per service
//! uses a work consumer ([`EventBus::consume`]): a durable JetStream pull
//! consumer on the stream, shared by the service's replicas.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, message::PublishMessage, stream};
use async_trait::async_trait;
use futures::StreamExt;
use prost::Message;
use roster_proto::v1::Event;

use super::EventsConfig;
use super::bus::{
    Acknowledge, BusError, Delivery, DeliveryStream, EventBus, EventStream, validate_consumer,
    validate_pattern,
};
use super::memory::name_matches;

/// How long JetStream remembers message ids to drop duplicates. It must
/// outlast the outbox's longest retry gap after a publish whose
/// acknowledgement was lost.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long a work consumer's delivery may stay unacknowledged before
/// JetStream delivers the event again, unless set with
/// [`NatsBus::with_ack_wait`].
pub const CONSUMER_ACK_WAIT: Duration = Duration::from_secs(30);

/// How many messages one work consumer stream asks for at a time. Small, so
/// replicas share a burst and few messages wait out the acknowledgement
/// wait when a replica stops with some buffered.
const CONSUMER_BATCH: usize = 16;

/// The connection options `config` asks for: Roster's client name, at
/// most one way to log in, and TLS. Each error names its setting.
async fn connect_options(config: &EventsConfig) -> anyhow::Result<async_nats::ConnectOptions> {
    install_crypto_provider();
    let options = login_options(config, async_nats::ConnectOptions::new().name("roster")).await?;
    tls_options(config, options)
}

/// Adds the one way of logging in that `config` sets, if any.
async fn login_options(
    config: &EventsConfig,
    options: async_nats::ConnectOptions,
) -> anyhow::Result<async_nats::ConnectOptions> {
    let logins = [
        !config.nats_user.is_empty(),
        !config.nats_token.is_empty(),
        !config.nats_nkey_seed.is_empty(),
        !config.nats_creds_file.is_empty(),
    ];
    anyhow::ensure!(
        logins.iter().filter(|set| **set).count() <= 1,
        "set at most one of events.nats_user, events.nats_token, events.nats_nkey_seed \
         and events.nats_creds_file"
    );
    anyhow::ensure!(
        config.nats_password.is_empty() || !config.nats_user.is_empty(),
        "events.nats_password needs events.nats_user"
    );
    Ok(if !config.nats_user.is_empty() {
        let password = config.nats_password.expose().to_string();
        options.user_and_password(config.nats_user.clone(), password)
    } else if !config.nats_token.is_empty() {
        options.token(config.nats_token.expose().to_string())
    } else if !config.nats_nkey_seed.is_empty() {
        options.nkey(config.nats_nkey_seed.expose().to_string())
    } else if !config.nats_creds_file.is_empty() {
        let path = &config.nats_creds_file;
        options
            .credentials_file(path)
            .await
            .map_err(|e| anyhow::anyhow!("events.nats_creds_file: cannot use {path}: {e}"))?
    } else {
        options
    })
}

/// Makes ring rustls's process-wide crypto provider, unless one is set.
/// The NATS client builds its TLS configuration from that default, and
/// rustls cannot pick one itself when, as in `rosterd`, the crates linked
/// in enable more than one (ring through lettre, aws-lc-rs through
/// others): the first TLS connection would panic.
fn install_crypto_provider() {
    // An error only says that a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Adds the TLS settings of `config` to `options`, checking that the files
/// are there (the client would only find out at the first connection).
fn tls_options(
    config: &EventsConfig,
    mut options: async_nats::ConnectOptions,
) -> anyhow::Result<async_nats::ConnectOptions> {
    let readable = |key: &str, path: &str| {
        std::fs::File::open(path)
            .map(drop)
            .map_err(|e| anyhow::anyhow!("events.{key}: cannot read {path}: {e}"))
    };
    if !config.nats_ca_file.is_empty() {
        readable("nats_ca_file", &config.nats_ca_file)?;
        options = options.add_root_certificates(config.nats_ca_file.clone().into());
    }
    match (
        config.nats_cert_file.is_empty(),
        config.nats_key_file.is_empty(),
    ) {
        (true, true) => {}
        (false, false) => {
            readable("nats_cert_file", &config.nats_cert_file)?;
            readable("nats_key_file", &config.nats_key_file)?;
            options = options.add_client_certificate(
                config.nats_cert_file.clone().into(),
                config.nats_key_file.clone().into(),
            );
        }
        _ => anyhow::bail!("events.nats_cert_file and events.nats_key_file go together"),
    }
    Ok(options.require_tls(config.nats_require_tls))
}

/// An [`EventBus`] over NATS JetStream.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    prefix: String,
    ack_wait: Duration,
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
        let client = connect_options(config)
            .await?
            .connect(config.nats_url.expose())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to NATS at {}: {e}",
                    config.nats_url.redacted()
                )
            })?;
        let jetstream = jetstream::new(client.clone());
        let bus = NatsBus {
            client,
            jetstream,
            stream: config.stream.clone(),
            prefix: config.subject_prefix.clone(),
            ack_wait: CONSUMER_ACK_WAIT,
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

    /// Sends `event` to its subject, deduplicated by its unique ID, and
    /// returns the acknowledgement to wait for.
    async fn send(
        &self,
        event: &Event,
    ) -> Result<async_nats::jetstream::context::PublishAckFuture, BusError> {
        let message = PublishMessage::build()
            .payload(event.encode_to_vec().into())
            .message_id(&event.unique_id)
            // Refuse a subject captured by some other stream: the event
            // would be acknowledged yet not be where consumers read.
            .expected_stream(&self.stream);
        self.jetstream
            .send_publish(self.subject(&event.name), message)
            .await
            .map_err(|e| BusError::Publish(e.to_string()))
    }

    /// Sets the acknowledgement wait of the work consumers this bus creates
    /// or joins ([`CONSUMER_ACK_WAIT`] by default): how long a delivery may
    /// go unsettled before the event is delivered again. Joining a consumer
    /// updates its wait for all replicas.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// The JetStream name of the work consumer `durable`:
    /// `<subject prefix>-<durable>`, with the characters NATS refuses in
    /// names (`.`, `*`, `>`, whitespace) replaced by `_`. The prefix keeps
    /// apart the consumers of deployments (or tests) sharing a stream.
    pub fn consumer_name(&self, durable: &str) -> String {
        valid_name(&format!("{}-{durable}", self.prefix))
    }

    /// The configuration of the work consumer `durable` on `patterns`.
    ///
    /// One pattern becomes the consumer's `filter_subject`, several its
    /// `filter_subjects`, which needs NATS 2.10; an older server ignores
    /// them and sends every event, and [`consume`](EventBus::consume)
    /// then skips those outside the patterns itself. Patterns must not
    /// overlap (`user.>` with `user.create`): JetStream refuses that.
    pub fn consumer_config(&self, durable: &str, patterns: &[&str]) -> pull::Config {
        let mut subjects: Vec<String> = patterns.iter().map(|p| self.subject(p)).collect();
        let (filter_subject, filter_subjects) = if subjects.len() == 1 {
            (subjects.remove(0), Vec::new())
        } else {
            (String::new(), subjects)
        };
        pull::Config {
            durable_name: Some(self.consumer_name(durable)),
            description: Some(format!("Roster work consumer {durable}")),
            // A new consumer starts with the oldest event the stream holds,
            // so nothing published before its first start is missed.
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            // Never give up on an event; handlers pace retries with the
            // delay they nack with.
            max_deliver: -1,
            filter_subject,
            filter_subjects,
            ..Default::default()
        }
    }

    /// Gets the work consumer `config` names, creating it if it is missing
    /// and updating it if its filter or acknowledgement wait differ. Like
    /// [`ensure_stream`](Self::ensure_stream), a failed attempt is retried
    /// a few times, for the same storage errors.
    async fn ensure_consumer(
        &self,
        stream: &jetstream::stream::Stream,
        config: pull::Config,
    ) -> Result<PullConsumer, BusError> {
        let name = config.durable_name.clone().unwrap_or_default();
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            let result = async {
                let mut consumer = stream.get_or_create_consumer(&name, config.clone()).await?;
                if !same_settings(&consumer.cached_info().config, &config) {
                    consumer = stream.create_consumer(config.clone()).await?;
                }
                Ok::<_, stream::ConsumerError>(consumer)
            }
            .await;
            match result {
                Ok(consumer) => return Ok(consumer),
                Err(e) if attempt < 5 => {
                    tracing::warn!(consumer = %name, error = %e, attempt, "setting up the work consumer failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(BusError::Subscribe(format!(
                        "cannot get or create consumer {name} on stream {}: {e}",
                        self.stream
                    )));
                }
            }
        }
    }
}

/// `name` with the characters NATS refuses in stream and consumer names
/// (`.`, `*`, `>`, whitespace) replaced by `_`.
fn valid_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_whitespace() || matches!(c, '.' | '*' | '>') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Whether the consumer the server has (`existing`) filters and waits as
/// `wanted` asks. A server older than 2.10 drops `filter_subjects`, so a
/// consumer on several patterns always looks different there; updating it
/// with the same settings is harmless.
fn same_settings(existing: &consumer::Config, wanted: &pull::Config) -> bool {
    existing.filter_subject == wanted.filter_subject
        && existing.filter_subjects == wanted.filter_subjects
        && existing.ack_wait == wanted.ack_wait
}

#[async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        self.send(event)
            .await?
            .await
            .map_err(|e| BusError::Publish(e.to_string()))?;
        Ok(())
    }

    async fn publish_batch(&self, events: &[Event]) -> Vec<Result<(), BusError>> {
        // One connection delivers its messages in order, so the stream
        // stores them in order; only the acknowledgements are awaited
        // together. A message the server refuses does not stop the ones
        // sent after it: its result says so, and the caller decides.
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            match self.send(event).await {
                Ok(ack) => acks.push(Ok(ack)),
                Err(error) => {
                    acks.push(Err(error));
                    break;
                }
            }
        }
        let mut results = Vec::with_capacity(acks.len());
        for ack in acks {
            results.push(match ack {
                Ok(ack) => ack
                    .await
                    .map(drop)
                    .map_err(|e| BusError::Publish(e.to_string())),
                Err(error) => Err(error),
            });
        }
        results
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

    /// Joins the durable pull consumer [`consumer_name`](NatsBus::consumer_name)
    /// on the stream, creating it as [`consumer_config`](NatsBus::consumer_config)
    /// says when it is missing.
    ///
    /// The stream must exist: it is made at [`connect`](NatsBus::connect)
    /// when `create_stream` is set, and a missing one is an error here (as
    /// for [`publish`](EventBus::publish)), not created again.
    ///
    /// Messages that are not events, or whose event matches none of
    /// `patterns`, are acknowledged and skipped. Pull errors (a missed
    /// heartbeat, a reconnect) are logged and the stream carries on; it
    /// ends if the consumer is deleted on the server.
    async fn consume(&self, durable: &str, patterns: &[&str]) -> Result<DeliveryStream, BusError> {
        validate_consumer(durable, patterns)?;
        let config = self.consumer_config(durable, patterns);
        let name = self.consumer_name(durable);
        let stream =
            self.jetstream.get_stream(&self.stream).await.map_err(|e| {
                BusError::Subscribe(format!("cannot get stream {}: {e}", self.stream))
            })?;
        let consumer = self.ensure_consumer(&stream, config).await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(CONSUMER_BATCH)
            .messages()
            .await
            .map_err(|e| BusError::Subscribe(format!("cannot pull from consumer {name}: {e}")))?;
        let patterns: Arc<[String]> = patterns.iter().map(|p| (*p).to_owned()).collect();
        let name: Arc<str> = name.into();
        let deliveries = messages.filter_map(move |item| {
            let patterns = patterns.clone();
            let name = name.clone();
            async move {
                let message = match item {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(consumer = %name, %error, "pulling events failed; carrying on");
                        return None;
                    }
                };
                match Event::decode(message.payload.clone()) {
                    Ok(event)
                        if patterns
                            .iter()
                            .any(|pattern| name_matches(pattern, &event.name)) =>
                    {
                        let attempt = message
                            .info()
                            .ok()
                            .and_then(|info| u64::try_from(info.delivered).ok())
                            .unwrap_or(1);
                        Some(Delivery::new(event, attempt, NatsAck(message)))
                    }
                    Ok(event) => {
                        // Only when the server could not filter (several
                        // patterns before NATS 2.10), or the consumer's
                        // patterns were changed by another replica.
                        tracing::debug!(consumer = %name, event = %event.name, "skipping an event outside the consumer's patterns");
                        skip(&name, &message).await;
                        None
                    }
                    Err(error) => {
                        tracing::warn!(
                            consumer = %name,
                            subject = %message.subject,
                            %error,
                            "skipping a message that is not an event"
                        );
                        skip(&name, &message).await;
                        None
                    }
                }
            }
        });
        Ok(Box::pin(deliveries))
    }
}

/// Acknowledges a message no handler gets to see. Should the acknowledgement
/// get lost, the message comes back and is skipped again.
async fn skip(consumer: &str, message: &jetstream::Message) {
    if let Err(error) = message.ack().await {
        tracing::warn!(consumer, %error, "acknowledging a skipped message failed");
    }
}

/// Settles a work delivery with JetStream acknowledgements. A dropped
/// delivery needs nothing: the server delivers it again after the ack wait.
struct NatsAck(jetstream::Message);

#[async_trait]
impl Acknowledge for NatsAck {
    /// Waits for the server to confirm the acknowledgement, so `Ok` means
    /// the event will not come again.
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0
            .double_ack()
            .await
            .map_err(|e| BusError::Ack(e.to_string()))
    }

    async fn nack(self: Box<Self>, delay: Duration) {
        let kind = AckKind::Nak((!delay.is_zero()).then_some(delay));
        if let Err(error) = self.0.ack_with(kind).await {
            tracing::warn!(
                subject = %self.0.subject,
                %error,
                "nacking an event failed; it comes back after the ack wait"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! Work consumers against a real JetStream server
    //! (`ROSTER_TEST_NATS_URL`, default `nats://127.0.0.1:4222`). Every test
    //! has its own stream and subject prefix, so they run in parallel.

    use super::*;
    use crate::events::new_event;
    use std::collections::HashSet;

    /// How long a test waits for something that should happen at once.
    const WAIT: Duration = Duration::from_secs(10);

    /// A test's own stream and subject prefix, deleted when dropped, as
    /// `roster_test_support::TestNats` does for the other crates' tests.
    struct TestStream {
        config: EventsConfig,
    }

    impl TestStream {
        fn new() -> Self {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let nats_url = std::env::var("ROSTER_TEST_NATS_URL")
                .ok()
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
            Self {
                config: EventsConfig {
                    nats_url: nats_url.into(),
                    stream: format!("ROSTER_T_{}", id.to_uppercase()),
                    subject_prefix: format!("roster_t_{id}"),
                    ..EventsConfig::default()
                },
            }
        }

        /// A bus on this stream (a new connection, like another replica).
        async fn bus(&self) -> NatsBus {
            NatsBus::connect(&self.config)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to NATS: {e:#}"))
        }
    }

    impl Drop for TestStream {
        fn drop(&mut self) {
            // A thread with its own runtime, so the test's runtime is never
            // blocked on itself, and a bounded wait.
            let url = self.config.nats_url.expose().to_string();
            let stream = self.config.stream.clone();
            let deleted = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async {
                    let delete = async {
                        let client = async_nats::connect(url.as_str()).await.ok()?;
                        jetstream::new(client).delete_stream(&stream).await.ok()
                    };
                    let _ = tokio::time::timeout(WAIT, delete).await;
                });
            });
            let _ = deleted.join();
        }
    }

    /// The next delivery, failing the test after [`WAIT`].
    async fn next(deliveries: &mut DeliveryStream) -> Delivery {
        tokio::time::timeout(WAIT, deliveries.next())
            .await
            .expect("no delivery in time")
            .expect("the delivery stream ended")
    }

    async fn consumer_info(bus: &NatsBus, durable: &str) -> consumer::Info {
        bus.jetstream()
            .get_stream(bus.stream_name())
            .await
            .unwrap()
            .consumer_info(bus.consumer_name(durable))
            .await
            .unwrap()
    }

    #[test]
    fn consumer_names_replace_what_nats_refuses() {
        assert_eq!(valid_name("roster-access"), "roster-access");
        assert_eq!(valid_name("roster.prod-a b*>\t"), "roster_prod-a_b___");
    }

    #[tokio::test]
    async fn a_new_work_consumer_gets_the_events_published_before_it_existed() {
        let nats = TestStream::new();
        let bus = nats.bus().await;
        let events: Vec<Event> = (0..3)
            .map(|i| new_event(&format!("user.e{i}"), vec![], None))
            .collect();
        for event in &events {
            bus.publish(event).await.unwrap();
        }

        let mut deliveries = bus.consume("access", &[">"]).await.unwrap();
        for event in &events {
            let delivery = next(&mut deliveries).await;
            assert_eq!(&delivery.event, event);
            assert_eq!(delivery.attempt(), 1);
            delivery.ack().await.unwrap();
        }
        let info = consumer_info(&bus, "access").await;
        assert_eq!(info.name, format!("{}-access", nats.config.subject_prefix));
        assert_eq!(info.config.ack_wait, CONSUMER_ACK_WAIT);
        assert_eq!(info.config.max_deliver, -1);
        assert_eq!(info.num_pending, 0);
        assert_eq!(info.num_ack_pending, 0);
    }

    #[tokio::test]
    async fn a_batch_is_stored_in_order_and_each_event_gets_its_own_answer() {
        let nats = TestStream::new();
        let bus = nats.bus().await;
        let mut deliveries = bus.consume("access", &[">"]).await.unwrap();
        let mut events: Vec<Event> = (0..50)
            .map(|i| new_event(&format!("user.e{i}"), vec![], None))
            .collect();
        let results = bus.publish_batch(&events).await;
        assert_eq!(results.len(), 50);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        for event in &events {
            let delivery = next(&mut deliveries).await;
            assert_eq!(&delivery.event, event);
            delivery.ack().await.unwrap();
        }

        // Subjects outside the stream: each event of the batch is refused
        // on its own, and the bus goes on working.
        let outside = NatsBus::connect(&EventsConfig {
            subject_prefix: format!("{}_elsewhere", nats.config.subject_prefix),
            create_stream: false,
            ..nats.config.clone()
        })
        .await
        .unwrap();
        events.truncate(2);
        let results = outside.publish_batch(&events).await;
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        let last = new_event("user.last", vec![], None);
        let results = bus.publish_batch(std::slice::from_ref(&last)).await;
        assert!(results[0].is_ok());
        assert_eq!(next(&mut deliveries).await.event, last);
    }

    #[tokio::test]
    async fn a_nacked_event_comes_again() {
        let nats = TestStream::new();
        let bus = nats.bus().await;
        let mut deliveries = bus.consume("access", &["user.>"]).await.unwrap();
        let event = new_event("user.update", vec![], None);
        bus.publish(&event).await.unwrap();

        let first = next(&mut deliveries).await;
        assert_eq!(first.event, event);
        first.nack(Duration::ZERO).await;
        let second = next(&mut deliveries).await;
        assert_eq!(second.event, event);
        assert_eq!(second.attempt(), 2);
        second.nack(Duration::from_millis(100)).await;
        let third = next(&mut deliveries).await;
        assert_eq!(third.event, event);
        assert_eq!(third.attempt(), 3);
        third.ack().await.unwrap();

        // Acked for good: what comes next is the next event.
        let later = new_event("user.delete", vec![], None);
        bus.publish(&later).await.unwrap();
        assert_eq!(next(&mut deliveries).await.event, later);
    }

    #[tokio::test]
    async fn replicas_sharing_a_durable_name_split_the_events_and_other_names_get_all() {
        const EVENTS: usize = 40;
        let nats = TestStream::new();
        let (one, two, publisher) = (nats.bus().await, nats.bus().await, nats.bus().await);
        let replica_one = one.consume("notifications", &["user.>"]).await.unwrap();
        let replica_two = two.consume("notifications", &["user.>"]).await.unwrap();
        let mut other = publisher.consume("access", &["user.>"]).await.unwrap();

        let mut published = HashSet::new();
        for i in 0..EVENTS {
            let event = new_event(&format!("user.e{i}"), vec![], None);
            publisher.publish(&event).await.unwrap();
            published.insert(event.unique_id);
        }

        let mut shared: DeliveryStream =
            Box::pin(futures::stream::select(replica_one, replica_two));
        let mut seen = HashSet::new();
        while seen.len() < EVENTS {
            let delivery = next(&mut shared).await;
            assert!(
                seen.insert(delivery.event.unique_id.clone()),
                "{} was delivered twice",
                delivery.event.name
            );
            delivery.ack().await.unwrap();
        }
        assert_eq!(seen, published);
        let info = consumer_info(&publisher, "notifications").await;
        assert_eq!(info.num_redelivered, 0);
        assert_eq!(info.num_ack_pending, 0);
        assert_eq!(info.num_pending, 0);

        let mut all = HashSet::new();
        for _ in 0..EVENTS {
            let delivery = next(&mut other).await;
            all.insert(delivery.event.unique_id.clone());
            delivery.ack().await.unwrap();
        }
        assert_eq!(all, published);
    }

    #[tokio::test]
    async fn an_event_left_unacked_by_a_stopped_consumer_comes_again() {
        let nats = TestStream::new();
        let bus = nats.bus().await.with_ack_wait(Duration::from_secs(1));
        let event = new_event("user.create", vec![], None);
        bus.publish(&event).await.unwrap();

        let mut deliveries = bus.consume("access", &[">"]).await.unwrap();
        let unacked = next(&mut deliveries).await;
        assert_eq!(unacked.event, event);
        // The replica stops without settling: neither ack nor nack reaches
        // the server.
        drop(unacked);
        drop(deliveries);

        let restarted = nats.bus().await.with_ack_wait(Duration::from_secs(1));
        let mut deliveries = restarted.consume("access", &[">"]).await.unwrap();
        let again = next(&mut deliveries).await;
        assert_eq!(again.event, event);
        assert!(again.attempt() >= 2, "attempt {}", again.attempt());
        again.ack().await.unwrap();
    }

    #[tokio::test]
    async fn work_consumers_get_only_the_events_matching_their_patterns() {
        let nats = TestStream::new();
        let bus = nats.bus().await;
        let mut users = bus.consume("users", &["user.>"]).await.unwrap();
        let mut some = bus
            .consume("some", &["user.create", "invitation.*"])
            .await
            .unwrap();
        for name in [
            "invitation.create",
            "user.create",
            "session.end",
            "user.api-key.delete",
            "invitation.accept.later",
        ] {
            bus.publish(&new_event(name, vec![], None)).await.unwrap();
        }

        // One consumer gets its events in stream order, so an event that
        // was not delivered between two that were never will be.
        for want in ["user.create", "user.api-key.delete"] {
            let delivery = next(&mut users).await;
            assert_eq!(delivery.event.name, want);
            delivery.ack().await.unwrap();
        }
        for want in ["invitation.create", "user.create"] {
            let delivery = next(&mut some).await;
            assert_eq!(delivery.event.name, want);
            delivery.ack().await.unwrap();
        }
        let last = new_event("user.create", vec![], None);
        bus.publish(&last).await.unwrap();
        assert_eq!(next(&mut users).await.event, last);
        assert_eq!(next(&mut some).await.event, last);
    }

    #[tokio::test]
    async fn rejoining_with_other_patterns_updates_the_consumer() {
        let nats = TestStream::new();
        let bus = nats.bus().await;
        drop(bus.consume("access", &["user.>"]).await.unwrap());
        let mut deliveries = bus.consume("access", &["invitation.>"]).await.unwrap();
        bus.publish(&new_event("user.create", vec![], None))
            .await
            .unwrap();
        let invitation = new_event("invitation.create", vec![], None);
        bus.publish(&invitation).await.unwrap();
        assert_eq!(next(&mut deliveries).await.event, invitation);
        let info = consumer_info(&bus, "access").await;
        assert_eq!(info.config.filter_subject, bus.subject("invitation.>"));
    }

    #[tokio::test]
    async fn work_consumers_need_an_existing_stream_a_name_and_valid_patterns() {
        let nats = TestStream::new();
        let bus = nats.bus().await;
        assert!(matches!(
            bus.consume(" ", &[">"]).await,
            Err(BusError::Subscribe(_))
        ));
        assert!(matches!(
            bus.consume("access", &[]).await,
            Err(BusError::Subscribe(_))
        ));
        assert!(matches!(
            bus.consume("access", &["user.>.x"]).await,
            Err(BusError::InvalidPattern(_))
        ));
        bus.jetstream()
            .delete_stream(bus.stream_name())
            .await
            .unwrap();
        assert!(matches!(
            bus.consume("access", &[">"]).await,
            Err(BusError::Subscribe(_))
        ));
    }
}
