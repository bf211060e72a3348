//! [`TestEnv`]: services under test on an ephemeral port, with their own
//! database, their own event namespace and a stand-in credential resolver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use roster_core::auth::{AuthConfig, Authenticator, CLUSTER_KEY_HEADER, ClusterKeys};
use roster_core::db::Db;
use roster_core::events::{EventBus, EventStream, EventsConfig, MemoryBus, NatsBus};
use roster_core::password::{PasswordConfig, PasswordHasher};
use roster_core::server::{GrpcServer, bind};
use roster_proto::v1::Event;
use roster_user_registry::{Dependencies, UserRegistryComponent, UserRegistryConfig};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::db::{TestDb, sqlite_file};
use crate::nats::TestNats;
use crate::resolver::StandInResolver;

/// The cluster key services under test accept.
pub const TEST_CLUSTER_KEY: &str = "test-cluster-key";

/// Which storage and bus a [`TestEnv`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh PostgreSQL database and a JetStream namespace.
    Postgres,
    /// A SQLite file and the in-process bus (the embedded default).
    Sqlite,
}

/// Argon2 costs low enough for tests; the code path is the production one.
pub fn test_password_config() -> PasswordConfig {
    PasswordConfig {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
        max_concurrent: 0,
        queue_timeout_ms: 0,
    }
}

/// A running user registry for one test.
pub struct TestEnv {
    pub backend: Backend,
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub events: EventsConfig,
    pub resolver: Arc<StandInResolver>,
    pub auth: Arc<Authenticator>,
    pub user_registry: Arc<roster_user_registry::UserRegistryService>,
    pub addr: SocketAddr,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    _pg: Option<TestDb>,
    _nats: Option<TestNats>,
    _sqlite: Option<tempfile::TempDir>,
}

impl TestEnv {
    /// The user registry on PostgreSQL and JetStream.
    pub async fn start() -> TestEnv {
        Self::start_with(Backend::Postgres, UserRegistryConfig::default()).await
    }

    /// The user registry on `backend` with `config`.
    pub async fn start_with(backend: Backend, config: UserRegistryConfig) -> TestEnv {
        let (db, bus, events, pg, nats, sqlite): (Db, Arc<dyn EventBus>, EventsConfig, _, _, _) =
            match backend {
                Backend::Postgres => {
                    let pg = TestDb::new().await;
                    let db = pg.pool().await;
                    let nats = TestNats::new();
                    let bus = NatsBus::connect(&nats.config)
                        .await
                        .expect("connect to NATS");
                    let mut events = nats.config.clone();
                    events.relay_interval_ms = 50;
                    (db, Arc::new(bus), events, Some(pg), Some(nats), None)
                }
                Backend::Sqlite => {
                    let (dir, path) = sqlite_file();
                    let db = Db::open_sqlite(&path, 4).await.expect("open SQLite");
                    let events = EventsConfig {
                        relay_interval_ms: 50,
                        ..EventsConfig::default()
                    };
                    (
                        db,
                        Arc::new(MemoryBus::new()),
                        events,
                        None,
                        None,
                        Some(dir),
                    )
                }
            };
        let resolver = Arc::new(StandInResolver::default());
        let auth = Arc::new(Authenticator::new(
            resolver.clone(),
            ClusterKeys::new([TEST_CLUSTER_KEY.to_string()]),
            &AuthConfig::default(),
        ));
        auth.spawn_invalidation(bus.clone())
            .await
            .expect("subscribe to invalidating events");
        let component = UserRegistryComponent::build(
            Dependencies {
                db: db.clone(),
                bus: bus.clone(),
                auth: auth.clone(),
                hasher: PasswordHasher::new(&test_password_config()).expect("hasher"),
                events: events.clone(),
                config,
            },
            true,
        )
        .await
        .expect("build the user registry");
        let mut server = GrpcServer::new();
        component.register(&mut server);
        let user_registry = component.service.clone();
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let (relay_stop, relay_stopped) = oneshot::channel::<()>();
        tokio::spawn(component.relay.run(async {
            let _ = relay_stopped.await;
        }));
        tokio::spawn(async move {
            let _ = server
                .serve(listener, async {
                    let _ = stopped.await;
                    let _ = relay_stop.send(());
                })
                .await;
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to the test server");
        TestEnv {
            backend,
            db,
            bus,
            events,
            resolver,
            auth,
            user_registry,
            addr,
            channel,
            stop: Some(stop),
            _pg: pg,
            _nats: nats,
            _sqlite: sqlite,
        }
    }

    /// A channel to the services under test.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Registers an admin token and returns it.
    pub fn admin_token(&self, user_id: &str) -> String {
        let token = format!("admin-{user_id}-{}", uuid::Uuid::new_v4().simple());
        self.resolver.grant_admin(&token, user_id);
        token
    }

    /// Registers a token with `rights` on `user_id` and returns it.
    pub fn user_token(&self, user_id: &str, rights: &[roster_proto::v1::Right]) -> String {
        let token = format!("user-{user_id}-{}", uuid::Uuid::new_v4().simple());
        self.resolver.grant_user(&token, user_id, rights);
        token
    }

    /// Subscribes to events (fan-out) whose name matches `pattern`.
    pub async fn subscribe(&self, pattern: &str) -> EventStream {
        self.bus.subscribe(pattern).await.expect("subscribe")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// `message` with the test cluster key.
pub fn with_cluster_key<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(CLUSTER_KEY_HEADER, TEST_CLUSTER_KEY.parse().expect("ascii"));
    request
}

/// The next event named `name` on `stream`, waiting at most `within`.
pub async fn next_event(stream: &mut EventStream, name: &str, within: Duration) -> Option<Event> {
    tokio::time::timeout(within, async {
        while let Some(event) = stream.next().await {
            if event.name == name {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}
