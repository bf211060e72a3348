//! [`TestEnv`]: the user registry, the access, the sessions, the
//! invitations and the notifications service under test on one ephemeral
//! port, as `rosterd start all` runs them, with their own database, their
//! own event namespace, and every credential resolved for real by
//! `EntityAccess.AuthInfo`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use roster_access::{AccessComponent, AccessConfig, GrpcSessionDirectory, GrpcUserDirectory};
use roster_core::auth::{
    AuthConfig, Authenticator, CLUSTER_KEY_HEADER, ClusterKeys, GrpcCredentialResolver,
};
use roster_core::db::Db;
use roster_core::events::{EventBus, EventStream, EventsConfig, MemoryBus, NatsBus};
use roster_core::password::{PasswordConfig, PasswordHasher};
use roster_core::server::{GrpcServer, bind};
use roster_core::time::{Clock, ManualClock, SystemClock};
use roster_core::token::TokenHasher;
use roster_invitations::{GrpcUserLookup, InvitationsComponent, InvitationsConfig, MailConfig};
use roster_notifications::{GrpcDirectory, NotificationsComponent, NotificationsConfig};
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, Event, Right, State, User, UserIdentifiers,
};
use roster_sessions::{GrpcPeers, SessionsComponent, SessionsConfig};
use roster_user_registry::{UserRegistryComponent, UserRegistryConfig};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::db::{TestDb, sqlite_file};
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
    _pg: Option<TestDb>,
    _nats: Option<TestNats>,
    _sqlite: Option<tempfile::TempDir>,
    _mail: tempfile::TempDir,
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
    pub async fn start_configured(backend: Backend, config: TestConfig) -> TestEnv {
        let (db, access_db, sessions_db, invitations_db, bus, events, pg, nats, sqlite): (
            Db,
            Db,
            Db,
            Db,
            Arc<dyn EventBus>,
            EventsConfig,
            _,
            _,
            _,
        ) = match backend {
            Backend::Postgres => {
                let pg = TestDb::new().await;
                let db = pg.pool_for(roster_user_registry::NAME).await;
                let access_db = pg.pool_for(roster_access::NAME).await;
                let sessions_db = pg.pool_for(roster_sessions::NAME).await;
                let invitations_db = pg.pool_for(roster_invitations::NAME).await;
                let nats = TestNats::new();
                let bus = NatsBus::connect(&nats.config)
                    .await
                    .expect("connect to NATS");
                let mut events = nats.config.clone();
                events.relay_interval_ms = 50;
                (
                    db,
                    access_db,
                    sessions_db,
                    invitations_db,
                    Arc::new(bus),
                    events,
                    Some(pg),
                    Some(nats),
                    None,
                )
            }
            Backend::Sqlite => {
                let (dir, path) = sqlite_file();
                let db = Db::open_sqlite(&path, 4).await.expect("open SQLite");
                let access_db = Db::open_sqlite(&dir.path().join("access.db"), 4)
                    .await
                    .expect("open SQLite");
                let sessions_db = Db::open_sqlite(&dir.path().join("sessions.db"), 4)
                    .await
                    .expect("open SQLite");
                let invitations_db = Db::open_sqlite(&dir.path().join("invitations.db"), 4)
                    .await
                    .expect("open SQLite");
                let events = EventsConfig {
                    relay_interval_ms: 50,
                    ..EventsConfig::default()
                };
                (
                    db,
                    access_db,
                    sessions_db,
                    invitations_db,
                    Arc::new(MemoryBus::new()),
                    events,
                    None,
                    None,
                    Some(dir),
                )
            }
        };
        let notifications_db = match (&pg, &sqlite) {
            (Some(pg), _) => pg.pool_for(roster_notifications::NAME).await,
            (None, Some(dir)) => Db::open_sqlite(&dir.path().join("notifications.db"), 4)
                .await
                .expect("open SQLite"),
            (None, None) => unreachable!("every backend keeps its database"),
        };
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        // As in `rosterd start all`: the services reach each other at the
        // process's own address.
        let internal = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_lazy();
        let resolver = Arc::new(GrpcCredentialResolver::new(
            internal.clone(),
            TEST_CLUSTER_KEY.to_string(),
        ));
        let auth = Arc::new(
            Authenticator::new(
                resolver,
                ClusterKeys::new([TEST_CLUSTER_KEY.to_string()]),
                &config.auth,
            )
            .with_trusted_proxies(
                roster_core::auth::TrustedProxies::parse(&config.auth.trusted_proxies)
                    .expect("auth.trusted_proxies"),
            ),
        );
        auth.spawn_invalidation(bus.clone())
            .await
            .expect("subscribe to invalidating events");
        let clock: Arc<dyn Clock> = match config.clock {
            Some(clock) => Arc::new(clock),
            None => Arc::new(SystemClock),
        };
        let user_registry = UserRegistryComponent::build(
            roster_user_registry::Dependencies {
                db: db.clone(),
                bus: bus.clone(),
                auth: auth.clone(),
                hasher: PasswordHasher::new(&test_password_config()).expect("hasher"),
                events: events.clone(),
                config: config.user_registry,
                invitations: Arc::new(
                    roster_user_registry::invitations::GrpcInvitations::new(
                        internal.clone(),
                        TEST_CLUSTER_KEY,
                    )
                    .expect("invitations client"),
                ),
                mailer: internal.clone(),
                cluster_key: TEST_CLUSTER_KEY.to_string(),
                clock: clock.clone(),
            },
            true,
        )
        .await
        .expect("build the user registry");
        let access = AccessComponent::build(
            roster_access::Dependencies {
                db: access_db.clone(),
                bus: bus.clone(),
                auth: auth.clone(),
                users: Arc::new(
                    GrpcUserDirectory::new(internal.clone(), TEST_CLUSTER_KEY).expect("directory"),
                ),
                sessions: Arc::new(
                    GrpcSessionDirectory::new(internal.clone(), TEST_CLUSTER_KEY)
                        .expect("sessions directory"),
                ),
                hasher: TokenHasher::new(config.auth.token_hash_key.expose()),
                events: events.clone(),
                config: config.access,
                mailer: internal.clone(),
                cluster_key: TEST_CLUSTER_KEY.to_string(),
            },
            true,
        )
        .await
        .expect("build the access service");
        let sessions = SessionsComponent::build(
            roster_sessions::Dependencies {
                db: sessions_db.clone(),
                bus: bus.clone(),
                auth: auth.clone(),
                peers: Arc::new(
                    GrpcPeers::new(internal.clone(), internal, TEST_CLUSTER_KEY).expect("peers"),
                ),
                hasher: TokenHasher::new(config.auth.token_hash_key.expose()),
                clock,
                events: events.clone(),
                config: config.sessions,
            },
            true,
        )
        .await
        .expect("build the sessions service");
        let mail_tmp = tempfile::tempdir().expect("a mail folder");
        // Made by the mailer with its first mail, as in a deployment.
        let mail_dir = mail_tmp.path().join("mail");
        let mut mail = config.mail;
        mail.poll_interval_ms = mail.poll_interval_ms.min(200);
        // Its own lazy channel to this process, so this block does not
        // depend on the other services' wiring.
        let invitations_internal = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_lazy();
        let invitations = InvitationsComponent::build(
            roster_invitations::Dependencies {
                db: invitations_db.clone(),
                bus: bus.clone(),
                auth: auth.clone(),
                users: Arc::new(
                    GrpcUserLookup::new(invitations_internal, TEST_CLUSTER_KEY)
                        .expect("user lookup"),
                ),
                hasher: TokenHasher::new(config.auth.token_hash_key.expose()),
                events: events.clone(),
                mail,
                config: config.invitations,
                default_mail_dir: mail_dir.clone(),
            },
            true,
        )
        .await
        .expect("build the invitations service");
        // Its own lazy channel to this process, as for the invitations.
        let notifications_internal = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_lazy();
        let notifications = NotificationsComponent::build(
            roster_notifications::Dependencies {
                db: notifications_db.clone(),
                bus: bus.clone(),
                auth: auth.clone(),
                directory: Arc::new(
                    GrpcDirectory::new(
                        notifications_internal.clone(),
                        notifications_internal.clone(),
                        TEST_CLUSTER_KEY,
                    )
                    .expect("directory"),
                ),
                events: events.clone(),
                config: config.notifications,
                mailer: notifications_internal,
                cluster_key: TEST_CLUSTER_KEY.to_string(),
            },
            true,
        )
        .await
        .expect("build the notifications service");
        let mut server = GrpcServer::new();
        user_registry.register(&mut server);
        access.register(&mut server);
        sessions.register(&mut server);
        invitations.register(&mut server);
        notifications.register(&mut server);
        let user_registry_service = user_registry.service.clone();
        let access_service = access.service.clone();
        let sessions_service = sessions.service.clone();
        let invitations_service = invitations.service.clone();
        let mailer = invitations.mailer.clone();
        let invitations_relay = invitations.relay;
        let notifications_service = notifications.service.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (relay_stop, relay_stopped) = tokio::sync::watch::channel(false);
        for relay in [
            user_registry.relay,
            user_registry.mail_relay,
            access.relay,
            access.mail_relay,
            sessions.relay,
        ] {
            let mut stopped = relay_stopped.clone();
            tokio::spawn(relay.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        let mut worker_stopped = relay_stopped.clone();
        roster_access::worker::spawn(access_service.clone(), bus.clone(), async move {
            let _ = worker_stopped.wait_for(|s| *s).await;
        })
        .await
        .expect("join the access service's work consumer");
        let mut mailer_stopped = relay_stopped.clone();
        tokio::spawn(mailer.clone().run(async move {
            let _ = mailer_stopped.wait_for(|s| *s).await;
        }));
        let mut invitations_relay_stopped = relay_stopped.clone();
        tokio::spawn(invitations_relay.run(async move {
            let _ = invitations_relay_stopped.wait_for(|s| *s).await;
        }));
        for relay in [notifications.relay, notifications.mail_relay] {
            let mut stopped = relay_stopped.clone();
            tokio::spawn(relay.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        if !config.without_notification_worker {
            let mut worker_stopped = relay_stopped.clone();
            roster_notifications::worker::spawn(
                notifications_service.clone(),
                bus.clone(),
                async move {
                    let _ = worker_stopped.wait_for(|s| *s).await;
                },
            )
            .await
            .expect("join the notifications service's work consumer");
        }
        let mut worker_stopped = relay_stopped.clone();
        roster_sessions::worker::spawn(sessions_service.clone(), bus.clone(), async move {
            let _ = worker_stopped.wait_for(|s| *s).await;
        })
        .await
        .expect("join the sessions service's work consumer");
        tokio::spawn(async move {
            let _ = server
                .serve(listener, async {
                    let _ = stopped.await;
                    let _ = relay_stop.send(true);
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
            access_db,
            sessions_db,
            invitations_db,
            notifications_db,
            mail_dir,
            bus,
            events,
            auth,
            user_registry: user_registry_service,
            access: access_service,
            sessions: sessions_service,
            invitations: invitations_service,
            mailer,
            notifications: notifications_service,
            addr,
            channel,
            stop: Some(stop),
            _pg: pg,
            _nats: nats,
            _sqlite: sqlite,
            _mail: mail_tmp,
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
