//! [`TestEnv`]: the user registry, the access, the sessions, the
//! invitations and the notifications service under test on one ephemeral
//! port, as `rosterd start all` runs them, with their own database, their
//! own event namespace, and every credential resolved for real by
//! `EntityAccess.AuthInfo`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use roster_access::AccessConfig;
use roster_core::auth::{
    AuthConfig, Authenticator, CLUSTER_KEY_HEADER, ClusterKeys, GrpcCredentialResolver,
};
use roster_core::component::Shutdown;
use roster_core::db::{DatabaseConfig, Db};
use roster_core::events::{EventBus, EventStream, EventsConfig, MemoryBus, NatsBus};
use roster_core::password::{PasswordConfig, PasswordHasher};
use roster_core::server::{GrpcServer, bind};
use roster_core::time::{ManualClock, SystemClock};
use roster_core::token::TokenHasher;
use roster_invitations::{InvitationsConfig, MailConfig};
use roster_notifications::NotificationsConfig;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, Event, Right, State, User, UserIdentifiers,
};
use roster_services::{Configs, Context, Peers, Service, Services};
use roster_sessions::SessionsConfig;
use roster_user_registry::UserRegistryConfig;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::db::TestDb;
use crate::nats::TestNats;

/// The cluster key services under test accept.
pub const TEST_CLUSTER_KEY: &str = "test-cluster-key";

/// The password of users made by [`TestEnv::ensure_user`].
pub const TEST_PASSWORD: &str = "Test-Passw0rd-for-roster";

/// Which storage and bus a [`TestEnv`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh PostgreSQL database (one schema per service) and a
    /// JetStream namespace.
    Postgres,
    /// SQLite files and the in-process bus (the embedded default).
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

/// The key of second-factor secrets on PostgreSQL in tests.
pub const TEST_SECOND_FACTOR_KEY: &str = "test second factor key, at least 32 characters long";

/// Settings of the services in a [`TestEnv`].
#[derive(Debug, Clone, Default)]
pub struct TestConfig {
    pub user_registry: UserRegistryConfig,
    pub access: AccessConfig,
    pub sessions: SessionsConfig,
    /// The mailer's settings. Without `smtp_url` (the default), mails are
    /// written as `.eml` files to [`TestEnv::mail_dir`].
    pub mail: MailConfig,
    /// The invitations' settings (token lifetime, claim timeout).
    pub invitations: InvitationsConfig,
    /// The notifications' settings (how often a stream checks its caller).
    pub notifications: NotificationsConfig,
    /// Leave out the notifications service's event worker, for tests of
    /// its RPCs that must see only the notifications they make (every API
    /// key a test creates would otherwise be announced).
    pub without_notification_worker: bool,
    pub auth: AuthConfig,
    /// The clock of the sessions service and of the user registry's
    /// lockout: the system's unless given (a [`ManualClock`] lets a test
    /// move time for lockouts and expiry).
    pub clock: Option<ManualClock>,
}

/// Running services for one test.
pub struct TestEnv {
    pub backend: Backend,
    /// The user registry's database.
    pub db: Db,
    /// The access service's database.
    pub access_db: Db,
    /// The sessions service's database.
    pub sessions_db: Db,
    /// The invitations service's database (the mail queue).
    pub invitations_db: Db,
    /// The notifications service's database.
    pub notifications_db: Db,
    /// Where mails are written when no SMTP server is configured.
    pub mail_dir: std::path::PathBuf,
    pub bus: Arc<dyn EventBus>,
    pub events: EventsConfig,
    pub auth: Arc<Authenticator>,
    pub user_registry: Arc<roster_user_registry::UserRegistryService>,
    pub access: Arc<roster_access::AccessService>,
    pub sessions: Arc<roster_sessions::SessionsService>,
    pub invitations: Arc<roster_invitations::InvitationsService>,
    pub mailer: Arc<roster_invitations::Mailer>,
    pub notifications: Arc<roster_notifications::NotificationsService>,
    pub addr: SocketAddr,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    /// What [`TestEnv::user_registry_replica`] builds another registry
    /// from.
    context: Context,
    _storage: Keep,
    _mail: tempfile::TempDir,
}

/// A second user registry on a [`TestEnv`]'s database and event namespace,
/// on a port of its own, as another replica's process runs: its own
/// database pool, outbox relay, cache and (on PostgreSQL) NATS
/// connection. It reaches the other services at the [`TestEnv`]'s
/// address. Stops when dropped.
pub struct UserRegistryReplica {
    pub addr: SocketAddr,
    pub user_registry: Arc<roster_user_registry::UserRegistryService>,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
}

impl UserRegistryReplica {
    /// A channel to the replica.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

impl Drop for UserRegistryReplica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `services` on `listener` until the returned sender is used or
/// dropped, and connects a channel to them.
async fn serve(
    mut services: Services,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
) -> (Services, Channel, oneshot::Sender<()>) {
    let mut server = GrpcServer::new();
    services.register(&mut server);
    let (relay_stop, shutdown) = Shutdown::new();
    services
        .spawn(&shutdown)
        .await
        .expect("start the services' relays and workers");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .serve(listener, async {
                let _ = stopped.await;
                relay_stop.fire();
            })
            .await;
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the test server");
    (services, channel, stop)
}

impl TestEnv {
    /// The services on PostgreSQL and JetStream.
    pub async fn start() -> TestEnv {
        Self::start_with(Backend::Postgres, UserRegistryConfig::default()).await
    }

    /// The services on `backend`, the user registry with `config`.
    pub async fn start_with(backend: Backend, config: UserRegistryConfig) -> TestEnv {
        Self::start_configured(
            backend,
            TestConfig {
                user_registry: config,
                ..TestConfig::default()
            },
        )
        .await
    }

    /// The services on `backend` with `config`.
    pub async fn start_configured(backend: Backend, mut config: TestConfig) -> TestEnv {
        // PostgreSQL needs a configured key for second-factor secrets (the
        // embedded default generates one beside its files).
        if backend == Backend::Postgres && config.user_registry.second_factor_keys.is_empty() {
            config.user_registry.second_factor_keys = vec![TEST_SECOND_FACTOR_KEY.into()];
        }
        let mail_tmp = tempfile::tempdir().expect("a mail folder");
        let storage = Storage::new(backend).await;
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        // As in `rosterd start all`: the services reach each other at the
        // process's own address.
        let peers = Peers::at(&format!("http://{addr}")).expect("peer channels");
        let auth = authenticator(&config.auth, &peers, storage.bus.clone()).await;
        let context = Context {
            database: storage.database.clone(),
            migrate: true,
            bus: storage.bus.clone(),
            auth: auth.clone(),
            password_hasher: PasswordHasher::new(&test_password_config()).expect("hasher"),
            token_hasher: TokenHasher::new(config.auth.token_hash_key.expose()),
            clock: match config.clock.clone() {
                Some(clock) => Arc::new(clock),
                None => Arc::new(SystemClock),
            },
            events: storage.events.clone(),
            cluster_key: TEST_CLUSTER_KEY.to_string(),
            peers,
            // Made by the mailer with its first mail, as in a deployment.
            notification_worker: !config.without_notification_worker,
            configs: configs(config, mail_tmp.path().join("mail")),
        };
        let services = Services::build(&context, &Service::ALL)
            .await
            .expect("build the services");
        let (services, channel, stop) = serve(services, listener, addr).await;
        let db = |service| services.database(service).cloned().expect("built");
        TestEnv {
            backend,
            db: db(Service::UserRegistry),
            access_db: db(Service::Access),
            sessions_db: db(Service::Sessions),
            invitations_db: db(Service::Invitations),
            notifications_db: db(Service::Notifications),
            mail_dir: context.configs.default_mail_dir.clone(),
            bus: storage.bus,
            events: storage.events,
            auth,
            user_registry: services.user_registry.clone().expect("built"),
            access: services.access.clone().expect("built"),
            sessions: services.sessions.clone().expect("built"),
            invitations: services.invitations.clone().expect("built"),
            mailer: services.mailer.clone().expect("built"),
            notifications: services.notifications.clone().expect("built"),
            addr,
            channel,
            stop: Some(stop),
            context,
            _storage: storage.keep,
            _mail: mail_tmp,
        }
    }

    /// Starts a [`UserRegistryReplica`] on this environment's storage,
    /// with `config` (second-factor keys as this one's when empty).
    pub async fn user_registry_replica(
        &self,
        mut config: UserRegistryConfig,
    ) -> UserRegistryReplica {
        if config.second_factor_keys.is_empty() {
            config.second_factor_keys = self
                .context
                .configs
                .user_registry
                .second_factor_keys
                .clone();
        }
        let bus: Arc<dyn EventBus> = match self.backend {
            Backend::Postgres => Arc::new(
                NatsBus::connect(&self.events)
                    .await
                    .expect("connect to NATS"),
            ),
            Backend::Sqlite => self.bus.clone(),
        };
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let peers = self.context.peers.clone();
        let auth = authenticator(&AuthConfig::default(), &peers, bus.clone()).await;
        let mut configs = self.context.configs.clone();
        configs.user_registry = config;
        let context = Context {
            database: self.context.database.clone(),
            migrate: false,
            bus,
            auth,
            password_hasher: self.context.password_hasher.clone(),
            token_hasher: self.context.token_hasher.clone(),
            clock: self.context.clock.clone(),
            events: self.context.events.clone(),
            cluster_key: TEST_CLUSTER_KEY.to_string(),
            peers,
            configs,
            notification_worker: false,
        };
        let services = Services::build(&context, &[Service::UserRegistry])
            .await
            .expect("build the replica");
        let (services, channel, stop) = serve(services, listener, addr).await;
        UserRegistryReplica {
            addr,
            user_registry: services.user_registry.clone().expect("built"),
            channel,
            stop: Some(stop),
        }
    }

    /// A channel to the services under test.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Creates `user_id` (approved; an admin when `admin`) through
    /// `UserRegistry.Create` as a cluster caller, with the email
    /// `<user_id>@example.com` and [`TEST_PASSWORD`]. A user that exists
    /// already is left as it is.
    pub async fn ensure_user(&self, user_id: &str, admin: bool) {
        let created = UserRegistryClient::new(self.channel())
            .create(with_cluster_key(CreateUserRequest {
                user: Some(User {
                    ids: Some(ids(user_id)),
                    primary_email_address: format!("{user_id}@example.com"),
                    password: TEST_PASSWORD.into(),
                    state: State::Approved as i32,
                    admin,
                    // A proven address, as a real user's would be: mails
                    // that reset or log in go only to such addresses.
                    primary_email_address_validated_at: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                invitation_token: String::new(),
            }))
            .await;
        match created {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::AlreadyExists => {}
            Err(status) => panic!("cannot create test user {user_id}: {status}"),
        }
    }

    /// A new API key of `user_id` with `rights`, made by a cluster caller:
    /// its ID and the full key.
    pub async fn api_key(&self, user_id: &str, rights: &[Right]) -> (String, String) {
        let key = UserAccessClient::new(self.channel())
            .create_api_key(with_cluster_key(CreateUserApiKeyRequest {
                user_ids: Some(ids(user_id)),
                name: "test".into(),
                rights: rights.iter().map(|r| *r as i32).collect(),
                expires_at: None,
            }))
            .await
            .unwrap_or_else(|status| panic!("cannot create an API key for {user_id}: {status}"))
            .into_inner();
        (key.id, key.key)
    }

    /// A key with every right of `user_id`, an approved admin (created if
    /// missing).
    pub async fn admin_token(&self, user_id: &str) -> String {
        self.ensure_user(user_id, true).await;
        self.api_key(user_id, &[Right::All]).await.1
    }

    /// A key with `rights` of `user_id`, an approved user (created if
    /// missing, not an admin).
    pub async fn user_token(&self, user_id: &str, rights: &[Right]) -> String {
        self.ensure_user(user_id, false).await;
        self.api_key(user_id, rights).await.1
    }

    /// A session token of `user_id` (created approved, not an admin, if
    /// missing), from `Authentication.Login` with [`TEST_PASSWORD`].
    pub async fn session_token(&self, user_id: &str) -> String {
        self.ensure_user(user_id, false).await;
        roster_proto::v1::authentication_client::AuthenticationClient::new(self.channel())
            .login(roster_proto::v1::LoginRequest {
                user_ids: Some(ids(user_id)),
                password: TEST_PASSWORD.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("cannot log {user_id} in: {status}"))
            .into_inner()
            .token
    }

    /// Subscribes to events (fan-out) whose name matches `pattern`.
    pub async fn subscribe(&self, pattern: &str) -> EventStream {
        self.bus.subscribe(pattern).await.expect("subscribe")
    }
}

/// Where a [`TestEnv`] keeps its data and events.
struct Storage {
    database: DatabaseConfig,
    bus: Arc<dyn EventBus>,
    events: EventsConfig,
    keep: Keep,
}

/// What must live as long as the services: the database, the stream or
/// the SQLite folder go with it.
enum Keep {
    Postgres { _db: TestDb, _nats: Box<TestNats> },
    Sqlite { _dir: tempfile::TempDir },
}

impl Storage {
    async fn new(backend: Backend) -> Storage {
        match backend {
            Backend::Postgres => {
                let pg = TestDb::new().await;
                let nats = TestNats::new();
                let bus = NatsBus::connect(&nats.config)
                    .await
                    .expect("connect to NATS");
                Storage {
                    database: pg.config(),
                    bus: Arc::new(bus),
                    events: EventsConfig {
                        relay_interval_ms: 50,
                        ..nats.config.clone()
                    },
                    keep: Keep::Postgres {
                        _db: pg,
                        _nats: Box::new(nats),
                    },
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a folder for SQLite files");
                Storage {
                    database: DatabaseConfig {
                        data_dir: dir.path().display().to_string(),
                        max_connections: 4,
                        ..DatabaseConfig::default()
                    },
                    bus: Arc::new(MemoryBus::new()),
                    events: EventsConfig {
                        relay_interval_ms: 50,
                        ..EventsConfig::default()
                    },
                    keep: Keep::Sqlite { _dir: dir },
                }
            }
        }
    }
}

/// An Authenticator as `rosterd` builds one, trusting the test cluster key.
async fn authenticator(
    config: &AuthConfig,
    peers: &Peers,
    bus: Arc<dyn EventBus>,
) -> Arc<Authenticator> {
    let resolver = Arc::new(GrpcCredentialResolver::new(
        peers.access.clone(),
        TEST_CLUSTER_KEY.to_string(),
    ));
    let trusted_proxies = roster_core::auth::TrustedProxies::parse(&config.trusted_proxies)
        .expect("auth.trusted_proxies");
    let auth = Arc::new(
        Authenticator::new(
            resolver,
            ClusterKeys::new([TEST_CLUSTER_KEY.to_string()]),
            config,
        )
        .with_trusted_proxies(trusted_proxies),
    );
    auth.spawn_invalidation(bus)
        .await
        .expect("subscribe to invalidating events");
    auth
}

/// The services' settings from a [`TestConfig`]: mails polled often, so
/// tests need not wait for them.
fn configs(config: TestConfig, default_mail_dir: std::path::PathBuf) -> Configs {
    let mut mail = config.mail;
    mail.poll_interval_ms = mail.poll_interval_ms.min(200);
    Configs {
        user_registry: config.user_registry,
        access: config.access,
        sessions: config.sessions,
        invitations: config.invitations,
        notifications: config.notifications,
        mail,
        default_mail_dir,
    }
}

fn ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
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
