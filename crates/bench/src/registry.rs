//! The user registry under test: wired as `TestEnv` wires it (a fresh
//! PostgreSQL database, a JetStream namespace, the stand-in credential
//! resolver, the outbox relay), but with the production password costs,
//! pool size and relay interval, since those are what the numbers are about.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use roster_core::auth::{AuthConfig, Authenticator, ClusterKeys};
use roster_core::db::Db;
use roster_core::events::{EventsConfig, NatsBus};
use roster_core::password::PasswordHasher;
use roster_core::server::{GrpcServer, bind};
use roster_test_support::{StandInResolver, TestDb, TestNats};
use roster_user_registry::{Dependencies, UserRegistryComponent, UserRegistryConfig};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The ID the benchmark's admin token acts as. The user does not need to
/// exist: the stand-in resolver vouches for the token.
const ADMIN_ID: &str = "bench-admin";

/// A running user registry and what it runs on. Dropping it drops the
/// database and deletes the JetStream stream.
pub struct Registry {
    pub addr: SocketAddr,
    /// The registry's own pool; the seeding and the statistics use it too.
    pub pool: PgPool,
    pub pool_size: u32,
    resolver: Arc<StandInResolver>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    // Declared last so they are dropped after the server has stopped.
    _nats: TestNats,
    _db: TestDb,
}

impl Registry {
    /// Creates the database and the stream, runs the migrations and serves
    /// the user registry on an ephemeral loopback port.
    pub async fn start(hasher: PasswordHasher, pool_size: u32) -> anyhow::Result<Registry> {
        let test_db = TestDb::new().await;
        let db = Db::open_postgres(&test_db.url, pool_size)
            .await
            .with_context(|| format!("opening database {}", test_db.name))?;
        let Db::Postgres(pool) = db.clone() else {
            unreachable!("open_postgres opens PostgreSQL");
        };

        let nats = TestNats::new();
        // TestNats shortens the relay's polling interval so tests need not
        // wait on retries; the benchmark keeps the production interval.
        let events = EventsConfig {
            relay_interval_ms: EventsConfig::default().relay_interval_ms,
            ..nats.config.clone()
        };
        let bus = Arc::new(
            NatsBus::connect(&events)
                .await
                .context("connecting to NATS")?,
        );

        let resolver = Arc::new(StandInResolver::default());
        let auth = Arc::new(Authenticator::new(
            resolver.clone(),
            // Nothing here calls the internal methods: a key nobody knows.
            ClusterKeys::new([format!("bench-{}", std::process::id())]),
            &AuthConfig::default(),
        ));
        auth.spawn_invalidation(bus.clone())
            .await
            .context("subscribing to invalidating events")?;

        let component = UserRegistryComponent::build(
            Dependencies {
                db,
                bus,
                auth,
                hasher,
                events,
                // Every Create comes from this one client address: the
                // per-address registration limit would measure itself.
                config: UserRegistryConfig {
                    registration_rate_limit: roster_core::ratelimit::RateLimitConfig {
                        max_attempts: 0,
                        window_secs: 60,
                    },
                    ..UserRegistryConfig::default()
                },
            },
            true,
        )
        .await
        .context("building the user registry")?;
        let mut server = GrpcServer::new();
        component.register(&mut server);

        let (listener, addr) = bind("127.0.0.1:0").await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (relay_stop, relay_stopped) = oneshot::channel::<()>();
        let relay = tokio::spawn(component.relay.run(async {
            let _ = relay_stopped.await;
        }));
        let server = tokio::spawn(async move {
            let served = server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("the gRPC server failed: {err:#}");
            }
            // As rosterd does: requests have drained, so let the relay
            // publish what is left before the stream goes away.
            let _ = relay_stop.send(());
            let _ = relay.await;
        });

        Ok(Registry {
            addr,
            pool,
            pool_size,
            resolver,
            stop: Some(stop),
            server: Some(server),
            _nats: nats,
            _db: test_db,
        })
    }

    /// A new channel (one HTTP/2 connection) to the registry.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await
            .context("connecting to the user registry")
    }

    /// A bearer token the stand-in resolver resolves to an approved admin.
    pub fn admin_token(&self) -> String {
        let token = format!("bench-admin-token-{}", std::process::id());
        self.resolver.grant_admin(&token, ADMIN_ID);
        token
    }

    /// Stops the server and the relay, then closes the pool, so the
    /// database is dropped with no connection of ours left on it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.pool.close().await;
    }
}
