//! The services under test, wired as `TestEnv` wires them and as
//! `rosterd start all` runs them: a fresh PostgreSQL database with one
//! schema per service, a JetStream namespace, the user registry, the
//! access service and the sessions service on one port, every credential
//! resolved for real through `EntityAccess.AuthInfo` (session tokens via
//! `SessionCredentials.CheckSession`), the three outbox relays and the
//! access and sessions services' event consumers. Unlike `TestEnv`, it
//! keeps the production password costs, pool size and relay interval,
//! since those are what the numbers are about; only the sessions service's
//! login rate limit and lockout are off, since every login comes from one
//! client address and the load would measure the refusals.
//!
//! A second server serves the user registry alone, on a port of its own and
//! over the same database, with an [`Authenticator`] that caches nothing:
//! what `rosterd start user-registry` with `auth.cache_ttl_ms = 0` and
//! `cluster.access_address` pointing at the first server would run. Every
//! request it authorises costs one `EntityAccess.AuthInfo` call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use roster_core::auth::{
    AuthConfig, Authenticator, ClusterKeys, CredentialResolver, GrpcCredentialResolver,
};
use roster_core::component::Shutdown;
use roster_core::db::{DatabaseConfig, Db};
use roster_core::events::{EventBus, EventsConfig, NatsBus};
use roster_core::password::PasswordHasher;
use roster_core::ratelimit::RateLimitConfig;
use roster_core::server::{GrpcServer, bind};
use roster_core::time::SystemClock;
use roster_core::token::TokenHasher;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    AuthInfoResponse, CreateUserApiKeyRequest, CreateUserRequest, LoginRequest, Right, State, User,
    UserIdentifiers,
};
use roster_services::{Configs, Context, Peers, Service};
use roster_sessions::SessionsConfig;
use roster_test_support::env::TEST_CLUSTER_KEY;
use roster_test_support::{TestDb, TestNats, with_cluster_key};
use roster_user_registry::UserRegistryConfig;
use roster_user_registry::lockout::LockoutConfig;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;

/// The approved admin whose API key every authenticated scenario uses.
pub const ADMIN_ID: &str = "bench-admin";

/// The admin's password: it passes the default policy.
const ADMIN_PASSWORD: &str = "Roster-Admin-Passw0rd";

/// The running services and what they run on. Dropping it drops the
/// database and deletes the JetStream stream.
pub struct Services {
    /// All three services, credentials cached for the default TTL.
    pub addr: SocketAddr,
    /// The user registry alone, credentials never cached.
    pub uncached_addr: SocketAddr,
    /// The user registry's pool on the first server; the seeding and the
    /// statistics use it too.
    pub pool: PgPool,
    pub pool_size: u32,
    /// The credential cache TTL of the first server.
    pub cache_ttl_ms: u64,
    /// Credentials each server's [`Authenticator`] resolved (cache misses).
    pub resolutions: Resolutions,
    pools: Vec<PgPool>,
    /// Each server's stop signal and task, the uncached server first: it
    /// calls the other, so it stops first.
    servers: Vec<(watch::Sender<bool>, JoinHandle<()>)>,
    // Declared last so they are dropped after the servers have stopped.
    _nats: TestNats,
    _db: TestDb,
}

/// Counters of credential resolutions, one per server.
#[derive(Clone, Default)]
pub struct Resolutions {
    pub cached: Arc<AtomicU64>,
    pub uncached: Arc<AtomicU64>,
}

/// The production resolver, counting its calls: one atomic increment per
/// `EntityAccess.AuthInfo` call, so the report can say how often the cache
/// missed.
struct Counting {
    inner: GrpcCredentialResolver,
    calls: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl CredentialResolver for Counting {
    async fn resolve(&self, token: &str) -> Result<AuthInfoResponse, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.resolve(token).await
    }
}

impl Services {
    /// Creates the database and the stream, runs the migrations and serves
    /// both servers on ephemeral loopback ports.
    pub async fn start(hasher: PasswordHasher, pool_size: u32) -> anyhow::Result<Services> {
        let test_db = TestDb::new().await;
        // As `rosterd` opens them: one schema per service, with the
        // production pool size (`TestDb::config` keeps test pools small).
        let database = DatabaseConfig {
            max_connections: pool_size,
            ..test_db.config()
        };
        let nats = TestNats::new();
        // TestNats shortens the relay's polling interval so tests need not
        // wait on retries; the benchmark keeps the production interval.
        let events = EventsConfig {
            relay_interval_ms: EventsConfig::default().relay_interval_ms,
            ..nats.config.clone()
        };
        let bus: Arc<dyn EventBus> = Arc::new(
            NatsBus::connect(&events)
                .await
                .context("connecting to NATS")?,
        );
        let resolutions = Resolutions::default();
        let auth_config = AuthConfig::default();

        // The first server: the three services, as `rosterd start all`.
        // They reach each other at the process's own address. No
        // invitations service runs here: registering with a token answers
        // UNAVAILABLE, and queued mails wait (login tokens are off, so
        // none is queued).
        let (listener, addr) = bind("127.0.0.1:0").await?;
        let peers = Peers::at(&format!("http://{addr}"))?;
        let auth = authenticator(
            peers.access.clone(),
            &auth_config,
            resolutions.cached.clone(),
            bus.clone(),
        )
        .await?;
        let context = Context {
            database,
            migrate: true,
            bus: bus.clone(),
            auth,
            password_hasher: hasher,
            token_hasher: TokenHasher::new(auth_config.token_hash_key.expose()),
            clock: Arc::new(SystemClock),
            events,
            cluster_key: TEST_CLUSTER_KEY.to_string(),
            peers,
            configs: configs(),
            notification_worker: true,
        };
        let three = [Service::UserRegistry, Service::Access, Service::Sessions];
        let first = roster_services::Services::build(&context, &three).await?;

        // The second server: the user registry alone, resolving credentials
        // through the first server's access service, caching nothing. It is
        // another process as far as the database is concerned: pools of
        // its own.
        let (uncached_listener, uncached_addr) = bind("127.0.0.1:0").await?;
        let uncached_auth = authenticator(
            context.peers.access.clone(),
            &AuthConfig {
                cache_ttl_ms: 0,
                ..auth_config.clone()
            },
            resolutions.uncached.clone(),
            bus,
        )
        .await?;
        let uncached_context = Context {
            auth: uncached_auth,
            migrate: false,
            ..context
        };
        let second =
            roster_services::Services::build(&uncached_context, &[Service::UserRegistry]).await?;

        let pools: Vec<PgPool> = [&first, &second]
            .iter()
            .flat_map(|built| built.databases.iter())
            .map(|(_, db)| match db {
                Db::Postgres(pool) => pool.clone(),
                _ => unreachable!("a database.url opens PostgreSQL"),
            })
            .collect();
        // The second server first: it calls the other, so it stops first.
        let servers = vec![
            spawn(second, uncached_listener).await?,
            spawn(first, listener).await?,
        ];
        Ok(Services {
            addr,
            uncached_addr,
            pool: pools[0].clone(),
            pool_size,
            cache_ttl_ms: auth_config.cache_ttl_ms,
            resolutions,
            pools,
            servers,
            _nats: nats,
            _db: test_db,
        })
    }

    /// A new channel (one HTTP/2 connection) to the first server.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        connect(self.addr).await
    }

    /// A new channel to the uncached server.
    pub async fn connect_uncached(&self) -> anyhow::Result<Channel> {
        connect(self.uncached_addr).await
    }

    /// Creates the approved admin [`ADMIN_ID`] through `UserRegistry.Create`
    /// and an API key with `RIGHT_ALL` for it through
    /// `UserAccess.CreateAPIKey`, both as a cluster caller, and returns the
    /// key.
    pub async fn admin_api_key(&self) -> anyhow::Result<String> {
        let channel = self.connect().await?;
        let ids = UserIdentifiers {
            user_id: ADMIN_ID.into(),
            email: String::new(),
        };
        UserRegistryClient::new(channel.clone())
            .create(with_cluster_key(CreateUserRequest {
                user: Some(User {
                    ids: Some(ids.clone()),
                    primary_email_address: format!("{ADMIN_ID}@bench.example.com"),
                    password: ADMIN_PASSWORD.into(),
                    state: State::Approved as i32,
                    admin: true,
                    ..Default::default()
                }),
                invitation_token: String::new(),
            }))
            .await
            .context("creating the admin")?;
        let key = UserAccessClient::new(channel)
            .create_api_key(with_cluster_key(CreateUserApiKeyRequest {
                user_ids: Some(ids),
                name: "bench".into(),
                rights: vec![Right::All as i32],
                expires_at: None,
            }))
            .await
            .context("creating the admin's API key")?
            .into_inner();
        anyhow::ensure!(!key.key.is_empty(), "CreateAPIKey returned no key");
        Ok(key.key)
    }

    /// Logs the admin in with `Authentication.Login` and returns the
    /// session token.
    pub async fn admin_session(&self) -> anyhow::Result<String> {
        let login = AuthenticationClient::new(self.connect().await?)
            .login(LoginRequest {
                user_ids: Some(UserIdentifiers {
                    user_id: ADMIN_ID.into(),
                    email: String::new(),
                }),
                password: ADMIN_PASSWORD.into(),
            })
            .await
            .context("logging the admin in")?
            .into_inner();
        anyhow::ensure!(!login.token.is_empty(), "Login returned no token");
        Ok(login.token)
    }

    /// Stops the servers (the uncached one first, since it calls the
    /// other) and the relays, then closes the pools, so the database is
    /// dropped with no connection of ours left on it.
    pub async fn shutdown(self) {
        for (stop, server) in self.servers {
            let _ = stop.send(true);
            let _ = server.await;
        }
        for pool in &self.pools {
            pool.close().await;
        }
    }
}

/// An Authenticator as `rosterd` builds one: credentials resolved by
/// `EntityAccess.AuthInfo` at `access`, the cluster key accepted, cached
/// answers dropped on invalidating events.
async fn authenticator(
    access: Channel,
    config: &AuthConfig,
    calls: Arc<AtomicU64>,
    bus: Arc<dyn EventBus>,
) -> anyhow::Result<Arc<Authenticator>> {
    let resolver = Arc::new(Counting {
        inner: GrpcCredentialResolver::new(access, TEST_CLUSTER_KEY.to_string()),
        calls,
    });
    let auth = Arc::new(Authenticator::new(
        resolver,
        ClusterKeys::new([TEST_CLUSTER_KEY.to_string()]),
        config,
    ));
    auth.spawn_invalidation(bus)
        .await
        .context("subscribing to invalidating events")?;
    Ok(auth)
}

/// The services' settings in the benchmark: the defaults, but no
/// registration or login limit and no lockout. Every request comes from
/// one client address, so the limits would measure themselves (no login
/// fails in the benchmark, but a lockout must not turn a bug into a
/// cascade of refusals).
fn configs() -> Configs {
    let sessions = SessionsConfig::default();
    Configs {
        user_registry: UserRegistryConfig {
            registration_rate_limit: RateLimitConfig {
                max_attempts: 0,
                window_secs: 60,
            },
            lockout: LockoutConfig {
                max_failures: 0,
                max_failures_per_client: 0,
                ..LockoutConfig::default()
            },
            // Replicas on PostgreSQL share a configured key.
            second_factor_keys: vec!["bench second factor key, at least 32 characters".into()],
            ..UserRegistryConfig::default()
        },
        sessions: SessionsConfig {
            login_rate_limit: RateLimitConfig {
                max_attempts: 0,
                ..sessions.login_rate_limit
            },
            ..sessions
        },
        ..Configs::default()
    }
}

/// Serves `built` on `listener` with its background tasks (outbox relays
/// and event consumers) until the returned sender sends `true`; then, as
/// rosterd does once requests have drained, stops the tasks and lets the
/// relays publish what is left.
async fn spawn(
    mut built: roster_services::Services,
    listener: TcpListener,
) -> anyhow::Result<(watch::Sender<bool>, JoinHandle<()>)> {
    let mut server = GrpcServer::new();
    built.register(&mut server);
    let (tasks_stop, shutdown) = Shutdown::new();
    let tasks = built.spawn(&shutdown).await?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let until_stopped = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(err) = server.serve(listener, until_stopped).await {
            eprintln!("a gRPC server failed: {err:#}");
        }
        tasks_stop.fire();
        for task in tasks {
            let _ = task.await;
        }
    });
    Ok((stop, task))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}
