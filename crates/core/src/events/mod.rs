//! Domain events: the `roster.v1.Event` envelope, the bus that carries it
//! (NATS JetStream, or an in-process bus when no NATS URL is configured),
//! and the transactional outbox that feeds the bus.
//!
//! A service never publishes directly. It writes its state change and the
//! event in one transaction ([`outbox::insert_pg`] / [`outbox::insert_sqlite`]),
//! and the [`outbox::OutboxRelay`] publishes committed events afterwards, so
//! a crash or a NATS outage delays events but never loses them, and an event
//! of a rolled-back change never leaves the process.
//!
//! Services listen in two ways. [`EventBus::subscribe`] is fan-out: every
//! subscription in every process sees every matching event, which suits
//! cache invalidation. [`EventBus::consume`] joins a work consumer: durable
//! on JetStream, shared by all replicas of a service, so each event is
//! handled once per service (at least once: handlers must be idempotent)
//! and acknowledged after handling.
//!
//! - [`bus`]: the [`EventBus`] trait, its error and work [`Delivery`]s;
//! - [`memory`]: the in-process bus and NATS-style name matching;
//! - [`nats`]: the JetStream bus;
//! - [`outbox`]: the outbox table, inserts and the relay;
//! - [`lifecycle`]: the names of the `user.lifecycle.*` events, which
//!   several services act on;
//! - [`metadata`]: the names of the `user.metadata.*` events;
//! - [`mfa`]: the names of the `user.mfa.*` events;
//! - [`names`]: the names of the other events a service publishes and
//!   another acts on.

pub mod bus;
pub mod lifecycle;
pub mod memory;
pub mod metadata;
pub mod mfa;
pub mod names;
pub mod nats;
pub mod outbox;
pub mod worker;

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::Deserialize;

use crate::secret::Secret;

pub use bus::{Acknowledge, BusError, Delivery, DeliveryStream, EventBus, EventStream};
pub use memory::{MemoryBus, name_matches};
pub use nats::NatsBus;
pub use outbox::OutboxRelay;
pub use roster_proto::v1::{EntityIdentifiers, Event};
pub use worker::{spawn_worker, user_ids};

/// Where events go and how the relay paces itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// A NATS URL (`nats://host:4222`). Empty: the in-process bus, which
    /// only reaches subscribers in this process.
    pub nats_url: crate::secret::SecretUrl,
    /// The NATS user to log in as, with `nats_password`. At most one of
    /// `nats_user`, `nats_token`, `nats_nkey_seed` and `nats_creds_file`.
    pub nats_user: String,
    /// The NATS user's password (a secret).
    pub nats_password: Secret,
    /// A NATS authentication token (a secret).
    pub nats_token: Secret,
    /// An NKey user seed (`SU…`, a secret) that signs the server's
    /// challenge.
    pub nats_nkey_seed: Secret,
    /// A `.creds` file (a user JWT and its NKey seed), as NATS's
    /// decentralised authentication issues them.
    pub nats_creds_file: String,
    /// A PEM file of CA certificates to trust for the server's certificate.
    pub nats_ca_file: String,
    /// A PEM client certificate for servers that verify clients (mutual
    /// TLS), with `nats_key_file`.
    pub nats_cert_file: String,
    /// The PEM private key of `nats_cert_file`.
    pub nats_key_file: String,
    /// Refuse a connection that is not TLS, even to a `nats://` URL.
    pub nats_require_tls: bool,
    /// The JetStream stream that stores events.
    pub stream: String,
    /// Events are published on `<subject_prefix>.<event name>`.
    pub subject_prefix: String,
    /// Create the stream at start when it is missing. Off where streams are
    /// provisioned by operators with their own limits and replicas.
    pub create_stream: bool,
    /// Most outbox rows the relay publishes in one pass.
    pub relay_batch: usize,
    /// How often the relay looks for due rows when nobody wakes it; this
    /// also bounds how soon a failed publish is retried.
    pub relay_interval_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            nats_url: Default::default(),
            nats_user: String::new(),
            nats_password: Secret::default(),
            nats_token: Secret::default(),
            nats_nkey_seed: Secret::default(),
            nats_creds_file: String::new(),
            nats_ca_file: String::new(),
            nats_cert_file: String::new(),
            nats_key_file: String::new(),
            nats_require_tls: false,
            stream: "ROSTER_EVENTS".into(),
            subject_prefix: "roster".into(),
            create_stream: true,
            relay_batch: 100,
            relay_interval_ms: 500,
        }
    }
}

/// Opens the configured bus: JetStream when `nats_url` is set, else the
/// process-wide in-process bus.
///
/// Every caller in one process gets the same in-process bus, so services
/// started together (`rosterd start all`) hear each other's events.
pub async fn connect(config: &EventsConfig) -> anyhow::Result<Arc<dyn EventBus>> {
    if config.nats_url.is_empty() {
        static SHARED: OnceLock<Arc<MemoryBus>> = OnceLock::new();
        let bus = SHARED.get_or_init(|| Arc::new(MemoryBus::new())).clone();
        Ok(bus)
    } else {
        Ok(Arc::new(NatsBus::connect(config).await?))
    }
}

static ORIGIN: OnceLock<String> = OnceLock::new();

/// Sets the `origin` stamped on every event this process creates, such as
/// `user-registry@host-1`. The first call wins: the origin names the
/// process, so it must not change while events are being made.
pub fn set_origin(origin: &str) {
    if ORIGIN.set(origin.to_owned()).is_err() && origin != self::origin() {
        tracing::debug!(origin, "event origin already set; keeping the first one");
    }
}

/// The origin stamped on new events: as set by [`set_origin`], else the
/// host name, else `roster`.
pub fn origin() -> &'static str {
    ORIGIN.get_or_init(default_origin)
}

fn default_origin() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "roster".into())
}

/// A new event with a fresh unique id (a UUIDv7, so ids sort by creation
/// time), the current time and this process's origin. Callers fill in
/// correlation ids, authentication and visibility as they know them.
pub fn new_event(
    name: &str,
    identifiers: Vec<EntityIdentifiers>,
    data: Option<prost_types::Any>,
) -> Event {
    Event {
        unique_id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        time: Some(prost_types::Timestamp::from(SystemTime::now())),
        identifiers,
        data,
        origin: origin().to_owned(),
        ..Event::default()
    }
}

/// The domain every `Any` type URL in Roster uses, as the protobuf JSON
/// mapping and `grpcurl` expect.
const TYPE_URL_DOMAIN: &str = "type.googleapis.com";

/// Packs `msg` as an `Any`.
///
/// The type URL is built from `M::full_name()` rather than taken from
/// `M::type_url()`, whose default has no domain; every `Any` Roster writes
/// then has the same form whichever way `Name` was implemented.
pub fn pack<M: prost::Name>(msg: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("{TYPE_URL_DOMAIN}/{}", M::full_name()),
        value: msg.encode_to_vec(),
    }
}

/// Packs a `roster.v1` message by its simple protobuf name, for generated
/// types that do not implement [`prost::Name`]:
/// `pack_named("UserEventData", &data)`.
pub fn pack_named<M: prost::Message>(type_name: &str, msg: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url(type_name),
        value: msg.encode_to_vec(),
    }
}

/// The `Any` type URL of the `roster.v1` message called `type_name`.
pub fn type_url(type_name: &str) -> String {
    format!("{TYPE_URL_DOMAIN}/roster.v1.{type_name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use roster_proto::v1::UserEventData;

    #[test]
    fn new_events_get_distinct_ids_a_time_and_an_origin() {
        let a = new_event("user.create", vec![], None);
        let b = new_event("user.create", vec![], None);
        assert_ne!(a.unique_id, b.unique_id);
        assert!(uuid::Uuid::parse_str(&a.unique_id).is_ok());
        assert!(a.time.is_some());
        assert!(!a.origin.is_empty());
        assert_eq!(a.name, "user.create");
    }

    #[test]
    fn pack_named_round_trips_and_names_the_roster_type() {
        let data = UserEventData {
            changed_paths: vec!["name".into()],
            revoke_all_access: true,
            ..Default::default()
        };
        let any = pack_named("UserEventData", &data);
        assert_eq!(any.type_url, "type.googleapis.com/roster.v1.UserEventData");
        assert_eq!(UserEventData::decode(any.value.as_slice()).unwrap(), data);
    }

    #[test]
    fn pack_uses_the_full_name_with_the_type_domain() {
        let any = pack(&prost_types::Duration {
            seconds: 3,
            nanos: 0,
        });
        assert_eq!(any.type_url, "type.googleapis.com/google.protobuf.Duration");
    }

    #[tokio::test]
    async fn connecting_without_a_url_shares_one_in_process_bus() {
        use futures::StreamExt;
        let config = EventsConfig::default();
        let publisher = connect(&config).await.unwrap();
        let subscriber = connect(&config).await.unwrap();
        let mut events = subscriber.subscribe("test.shared.*").await.unwrap();
        let event = new_event("test.shared.bus", vec![], None);
        publisher.publish(&event).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, event);
    }

    #[test]
    fn config_defaults_name_the_design_stream_and_prefix() {
        let config = EventsConfig::default();
        assert!(config.nats_url.is_empty());
        assert_eq!(config.stream, "ROSTER_EVENTS");
        assert_eq!(config.subject_prefix, "roster");
        assert!(config.create_stream);
        assert_eq!(config.relay_batch, 100);
        assert_eq!(config.relay_interval_ms, 500);
    }
}
