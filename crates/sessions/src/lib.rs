//! The sessions service: login and sessions.
//!
//! It serves `Authentication` (Login, LoginWithToken, Logout),
//! `UserSessionRegistry` (List, Delete) and the internal
//! `SessionCredentials` (checking session tokens for the access service,
//! which turns them into rights). It owns the `sessions` table and
//! publishes `user.login`, `user.login_failed`, `user.logout` and
//! `user.session.delete` through its outbox. Passwords are checked, and
//! wrong ones counted, by the user registry; login tokens are used up by
//! the access service.
//!
//! - [`api`]: the tonic services;
//! - [`service`]: the use cases and their rules;
//! - [`store`]: the store trait, PostgreSQL and SQLite;
//! - [`peers`]: the user registry and the access service as seen from here;
//! - [`worker`]: ending sessions on other services' events;
//! - [`events`]: event names; [`error`]: errors → status codes;
//!   [`config`]: settings.

pub mod api;
pub mod config;
pub mod error;
pub mod events;
pub mod peers;
pub mod service;
pub mod store;
pub mod worker;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use roster_core::auth::Authenticator;
use roster_core::component::{Component, Shutdown};
use roster_core::db::Db;
use roster_core::events::EventBus;
use roster_core::events::outbox::OutboxRelay;
use roster_core::server::GrpcServer;
use roster_core::time::Clock;
use roster_core::token::TokenHasher;
use roster_proto::v1::authentication_server::AuthenticationServer;
use roster_proto::v1::session_credentials_server::SessionCredentialsServer;
use roster_proto::v1::user_session_registry_server::UserSessionRegistryServer;

pub use config::SessionsConfig;
pub use peers::{GrpcPeers, Peers};
pub use service::SessionsService;

/// The service name used in `rosterd start <name>` and for its data.
pub const NAME: &str = "sessions";

/// What the sessions service needs from its process.
pub struct Dependencies {
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub auth: Arc<Authenticator>,
    pub peers: Arc<dyn Peers>,
    pub hasher: TokenHasher,
    pub clock: Arc<dyn Clock>,
    pub events: roster_core::events::EventsConfig,
    pub config: SessionsConfig,
}

/// A built sessions service: its gRPC services and its outbox relay.
pub struct SessionsComponent {
    pub service: Arc<SessionsService>,
    pub api: api::SessionsApi,
    pub relay: OutboxRelay,
    // Its work consumer's source of events.
    bus: Arc<dyn EventBus>,
}

impl SessionsComponent {
    /// Runs the migrations (when `migrate`), and wires store, service and
    /// relay.
    pub async fn build(deps: Dependencies, migrate: bool) -> anyhow::Result<Self> {
        deps.config.validate()?;
        if migrate {
            store::migrations().run(&deps.db).await?;
        }
        let relay = OutboxRelay::new(deps.db.clone(), deps.bus.clone(), &deps.events)
            .for_service("sessions");
        let store = store::open(&deps.db, relay.waker());
        let service = Arc::new(SessionsService::new(
            store,
            deps.peers,
            deps.hasher,
            deps.auth.clone(),
            deps.clock,
            deps.config,
        ));
        let api = api::SessionsApi::new(service.clone(), deps.auth);
        Ok(Self {
            service,
            api,
            relay,
            bus: deps.bus,
        })
    }
}

#[async_trait::async_trait]
impl Component for SessionsComponent {
    /// Adds the sessions service's gRPC services to `server`.
    fn register(&self, server: &mut GrpcServer) {
        server.add_service(AuthenticationServer::new(self.api.clone()));
        server.add_service(UserSessionRegistryServer::new(self.api.clone()));
        server.add_service(SessionCredentialsServer::new(self.api.clone()));
    }

    async fn spawn(self: Box<Self>, shutdown: Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let worker = worker::spawn(self.service, self.bus, shutdown.wait())
            .await
            .context("joining the sessions service's event consumer")?;
        Ok(vec![tokio::spawn(self.relay.run(shutdown.wait())), worker])
    }
}
