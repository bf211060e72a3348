//! Roster's five services in one table, and the one way a process puts
//! them together: `rosterd start`, `rosterd migrate`, the test harness and
//! the benchmark all build services from a [`Context`] through
//! [`Services::build`]. A dependency a service gains is added here once.
//!
//! `core` cannot hold this table, since it knows no service; the service
//! crates cannot, since none depends on another. This crate depends on all
//! of them and on nothing else of ours.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use roster_access::{AccessComponent, AccessConfig, GrpcSessionDirectory, GrpcUserDirectory};
use roster_core::auth::Authenticator;
use roster_core::component::{Component, Shutdown};
use roster_core::db::{DatabaseConfig, Db, Migrations};
use roster_core::events::{EventBus, EventsConfig};
use roster_core::health::DatabaseReadiness;
use roster_core::password::PasswordHasher;
use roster_core::server::GrpcServer;
use roster_core::time::Clock;
use roster_core::token::TokenHasher;
use roster_invitations::{InvitationsComponent, InvitationsConfig, MailConfig};
use roster_notifications::{NotificationsComponent, NotificationsConfig};
use roster_sessions::{SessionsComponent, SessionsConfig};
use roster_user_registry::{UserRegistryComponent, UserRegistryConfig};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How often the connection gauges of the database pools are set: a few
/// times per Prometheus scrape interval.
const POOL_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// One of Roster's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    UserRegistry,
    Access,
    Sessions,
    Invitations,
    Notifications,
}

impl Service {
    /// Every service, in the order a process builds them.
    pub const ALL: [Service; 5] = [
        Service::UserRegistry,
        Service::Access,
        Service::Sessions,
        Service::Invitations,
        Service::Notifications,
    ];

    /// Its name in `rosterd start <name>` and for its data (schema, file).
    pub fn name(self) -> &'static str {
        match self {
            Service::UserRegistry => roster_user_registry::NAME,
            Service::Access => roster_access::NAME,
            Service::Sessions => roster_sessions::NAME,
            Service::Invitations => roster_invitations::NAME,
            Service::Notifications => roster_notifications::NAME,
        }
    }

    /// Its migrations.
    pub fn migrations(self) -> Migrations {
        match self {
            Service::UserRegistry => roster_user_registry::store::migrations(),
            Service::Access => roster_access::store::migrations(),
            Service::Sessions => roster_sessions::store::migrations(),
            Service::Invitations => roster_invitations::store::migrations(),
            Service::Notifications => roster_notifications::store::migrations(),
        }
    }
}

/// Each service's own settings.
#[derive(Debug, Clone, Default)]
pub struct Configs {
    pub user_registry: UserRegistryConfig,
    pub access: AccessConfig,
    pub sessions: SessionsConfig,
    pub invitations: InvitationsConfig,
    pub notifications: NotificationsConfig,
    /// The mailer's settings (the invitations service runs it).
    pub mail: MailConfig,
    /// Where `.eml` files go when `mail.smtp_url` and `mail.dir` are empty.
    pub default_mail_dir: PathBuf,
}

/// Channels to the services others call. In `rosterd start all` each is a
/// channel to the process itself.
#[derive(Debug, Clone)]
pub struct Peers {
    pub user_registry: Channel,
    pub access: Channel,
    pub sessions: Channel,
    pub invitations: Channel,
}

impl Peers {
    /// Every peer at `uri` (`http://host:port`), connected lazily, one
    /// connection per peer as `rosterd` has.
    pub fn at(uri: &str) -> anyhow::Result<Peers> {
        let channel = || -> anyhow::Result<Channel> {
            Ok(Channel::from_shared(uri.to_string())
                .with_context(|| format!("peer address {uri}"))?
                .connect_lazy())
        };
        Ok(Peers {
            user_registry: channel()?,
            access: channel()?,
            sessions: channel()?,
            invitations: channel()?,
        })
    }
}

/// What the services of one process share.
pub struct Context {
    /// Where each service's database is: one schema per service on
    /// PostgreSQL, one file per service on SQLite.
    pub database: DatabaseConfig,
    /// Run each service's migrations as it is built.
    pub migrate: bool,
    pub bus: Arc<dyn EventBus>,
    pub auth: Arc<Authenticator>,
    pub password_hasher: PasswordHasher,
    pub token_hasher: TokenHasher,
    /// The clock of the sessions service and of the user registry's
    /// lockout.
    pub clock: Arc<dyn Clock>,
    pub events: EventsConfig,
    /// The cluster key presented on calls to peers.
    pub cluster_key: String,
    pub peers: Peers,
    pub configs: Configs,
    /// Run the notifications service's event worker (tests of its RPCs
    /// turn it off).
    pub notification_worker: bool,
}

/// Built services, ready to be registered and spawned.
pub struct Services {
    /// Each built service's database.
    pub databases: Vec<(Service, Db)>,
    pub user_registry: Option<Arc<roster_user_registry::UserRegistryService>>,
    pub access: Option<Arc<roster_access::AccessService>>,
    pub sessions: Option<Arc<roster_sessions::SessionsService>>,
    pub invitations: Option<Arc<roster_invitations::InvitationsService>>,
    pub mailer: Option<Arc<roster_invitations::Mailer>>,
    pub notifications: Option<Arc<roster_notifications::NotificationsService>>,
    components: Vec<Box<dyn Component>>,
}

impl Services {
    /// Opens the database of each of `which`, migrates it when
    /// `context.migrate`, and builds the service.
    pub async fn build(context: &Context, which: &[Service]) -> anyhow::Result<Services> {
        let mut services = Services {
            databases: Vec::new(),
            user_registry: None,
            access: None,
            sessions: None,
            invitations: None,
            mailer: None,
            notifications: None,
            components: Vec::new(),
        };
        for &service in which {
            let db = open(&context.database, service).await?;
            services.databases.push((service, db.clone()));
            let component = services.build_one(context, service, db).await;
            let component = component.with_context(|| format!("building {}", service.name()))?;
            services.components.push(component);
        }
        Ok(services)
    }

    /// The database of `service`, when it was built.
    pub fn database(&self, service: Service) -> Option<&Db> {
        self.databases
            .iter()
            .find(|(built, _)| *built == service)
            .map(|(_, db)| db)
    }

    /// Adds every built service's gRPC services to `server`, each name
    /// SERVING in `grpc.health.v1` only while that service's database
    /// answers and has all its migrations.
    pub fn register(&self, server: &mut GrpcServer) {
        for (component, (service, db)) in self.components.iter().zip(&self.databases) {
            let before = server.service_names().len();
            component.register(server);
            let names = server.service_names()[before..].to_vec();
            let readiness = DatabaseReadiness::new(db.clone(), &service.migrations());
            server.add_readiness(&names, Arc::new(readiness));
        }
    }

    /// Starts every built service's background tasks (relays, workers,
    /// the mail worker, the sampling of the database pools for the
    /// metrics), which stop when `shutdown` fires.
    pub async fn spawn(&mut self, shutdown: &Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let pools = self
            .databases
            .iter()
            .map(|(service, db)| (service.name(), db.clone()))
            .collect();
        let mut tasks = vec![tokio::spawn(roster_core::db::report_pool_use(
            pools,
            POOL_SAMPLE_INTERVAL,
            shutdown.wait(),
        ))];
        for component in self.components.drain(..) {
            tasks.extend(component.spawn(shutdown.clone()).await?);
        }
        Ok(tasks)
    }

    async fn build_one(
        &mut self,
        context: &Context,
        service: Service,
        db: Db,
    ) -> anyhow::Result<Box<dyn Component>> {
        Ok(match service {
            Service::UserRegistry => {
                let built = user_registry(context, db).await?;
                self.user_registry = Some(built.service.clone());
                Box::new(built)
            }
            Service::Access => {
                let built = access(context, db).await?;
                self.access = Some(built.service.clone());
                Box::new(built)
            }
            Service::Sessions => {
                let built = sessions(context, db).await?;
                self.sessions = Some(built.service.clone());
                Box::new(built)
            }
            Service::Invitations => {
                let built = invitations(context, db).await?;
                self.invitations = Some(built.service.clone());
                self.mailer = Some(built.mailer.clone());
                Box::new(built)
            }
            Service::Notifications => {
                let built = notifications(context, db).await?;
                self.notifications = Some(built.service.clone());
                if context.notification_worker {
                    Box::new(built)
                } else {
                    Box::new(built.without_worker())
                }
            }
        })
    }
}

/// Runs the migrations of every service on the configured databases.
pub async fn migrate(database: &DatabaseConfig) -> anyhow::Result<()> {
    for service in Service::ALL {
        let db = open(database, service).await?;
        service.migrations().run(&db).await?;
        tracing::info!(service = service.name(), backend = db.backend(), "migrated");
    }
    Ok(())
}

/// Opens the database of `service` and says which backend it is.
async fn open(database: &DatabaseConfig, service: Service) -> anyhow::Result<Db> {
    let db = Db::open(database, service.name()).await?;
    tracing::info!(
        service = service.name(),
        backend = db.backend(),
        "opened database"
    );
    Ok(db)
}

async fn user_registry(context: &Context, db: Db) -> anyhow::Result<UserRegistryComponent> {
    let peers = &context.peers;
    let key = &context.cluster_key;
    let invitations =
        roster_user_registry::invitations::GrpcInvitations::new(peers.invitations.clone(), key)?;
    let deps = roster_user_registry::Dependencies {
        db,
        bus: context.bus.clone(),
        auth: context.auth.clone(),
        hasher: context.password_hasher.clone(),
        events: context.events.clone(),
        config: context.configs.user_registry.clone(),
        invitations: Arc::new(invitations),
        mailer: peers.invitations.clone(),
        cluster_key: key.clone(),
        clock: context.clock.clone(),
    };
    UserRegistryComponent::build(deps, context.migrate).await
}

async fn access(context: &Context, db: Db) -> anyhow::Result<AccessComponent> {
    let peers = &context.peers;
    let key = &context.cluster_key;
    let deps = roster_access::Dependencies {
        db,
        bus: context.bus.clone(),
        auth: context.auth.clone(),
        users: Arc::new(GrpcUserDirectory::new(peers.user_registry.clone(), key)?),
        sessions: Arc::new(GrpcSessionDirectory::new(peers.sessions.clone(), key)?),
        hasher: context.token_hasher.clone(),
        events: context.events.clone(),
        config: context.configs.access.clone(),
        mailer: peers.invitations.clone(),
        cluster_key: key.clone(),
    };
    AccessComponent::build(deps, context.migrate).await
}

async fn sessions(context: &Context, db: Db) -> anyhow::Result<SessionsComponent> {
    let peers = &context.peers;
    let deps = roster_sessions::Dependencies {
        db,
        bus: context.bus.clone(),
        auth: context.auth.clone(),
        peers: Arc::new(roster_sessions::GrpcPeers::new(
            peers.user_registry.clone(),
            peers.access.clone(),
            &context.cluster_key,
        )?),
        hasher: context.token_hasher.clone(),
        clock: context.clock.clone(),
        events: context.events.clone(),
        config: context.configs.sessions.clone(),
    };
    SessionsComponent::build(deps, context.migrate).await
}

async fn invitations(context: &Context, db: Db) -> anyhow::Result<InvitationsComponent> {
    let users = roster_invitations::GrpcUserLookup::new(
        context.peers.user_registry.clone(),
        &context.cluster_key,
    )?;
    let configs = &context.configs;
    let deps = roster_invitations::Dependencies {
        db,
        bus: context.bus.clone(),
        auth: context.auth.clone(),
        users: Arc::new(users),
        hasher: context.token_hasher.clone(),
        events: context.events.clone(),
        mail: configs.mail.clone(),
        config: configs.invitations.clone(),
        default_mail_dir: configs.default_mail_dir.clone(),
    };
    InvitationsComponent::build(deps, context.migrate).await
}

async fn notifications(context: &Context, db: Db) -> anyhow::Result<NotificationsComponent> {
    let peers = &context.peers;
    let directory = roster_notifications::GrpcDirectory::new(
        peers.user_registry.clone(),
        peers.invitations.clone(),
        &context.cluster_key,
    )?;
    let deps = roster_notifications::Dependencies {
        db,
        bus: context.bus.clone(),
        auth: context.auth.clone(),
        directory: Arc::new(directory),
        events: context.events.clone(),
        config: context.configs.notifications.clone(),
        mailer: peers.invitations.clone(),
        cluster_key: context.cluster_key.clone(),
    };
    NotificationsComponent::build(deps, context.migrate).await
}
