//! The access service: rights, API keys, login tokens, and one answer to
//! "who is calling".
//!
//! It serves `UserAccess` (rights, API keys, login tokens) and the internal
//! `EntityAccess` (resolving a bearer token to what it may do, using up
//! login tokens). It owns the `api_keys` and `login_tokens` tables and
//! publishes `user.api-key.*` and `user.login-token.*` events through its
//! outbox. What it needs to know about users (state, admin, deletion) it
//! asks of the user registry.
//!
//! - [`api`]: the tonic services;
//! - [`service`]: the use cases and their rules;
//! - [`grant`]: what a credential may do, as one pure function;
//! - [`store`]: the store trait, PostgreSQL and SQLite;
//! - [`users`]: the user registry as this service sees it;
//! - [`sessions`]: the sessions service as this service sees it;
//! - [`worker`]: what it does on other services' events (purges);
//! - [`events`]: event names; [`error`]: errors → status codes;
//!   [`config`]: settings.

pub mod api;
pub mod config;
pub mod error;
pub mod events;
pub mod grant;
pub mod service;
pub mod sessions;
pub mod store;
pub mod users;
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
use roster_core::token::TokenHasher;
use roster_proto::v1::entity_access_server::EntityAccessServer;
use roster_proto::v1::user_access_server::UserAccessServer;

pub use config::AccessConfig;
pub use service::AccessService;
pub use sessions::{GrpcSessionDirectory, SessionDirectory};
pub use users::{GrpcUserDirectory, Subject, UserDirectory};

/// The service name used in `rosterd start <name>` and for its data.
pub const NAME: &str = "access";

/// What the access service needs from its process.
pub struct Dependencies {
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub auth: Arc<Authenticator>,
    pub users: Arc<dyn UserDirectory>,
    pub sessions: Arc<dyn SessionDirectory>,
    pub hasher: TokenHasher,
    pub events: roster_core::events::EventsConfig,
    pub config: AccessConfig,
    /// The mailer (`Mailer.Enqueue`), which login-token mails go to.
    pub mailer: tonic::transport::Channel,
    /// The cluster key presented to the mailer.
    pub cluster_key: String,
}

/// A built access service: its gRPC services and its outbox relays
/// (events to the bus, mails to the mailer).
pub struct AccessComponent {
    pub service: Arc<AccessService>,
    pub api: api::AccessApi,
    pub relay: OutboxRelay,
    pub mail_relay: OutboxRelay,
    // Its work consumer's source of events.
    bus: Arc<dyn EventBus>,
}

impl AccessComponent {
    /// Runs the migrations (when `migrate`), and wires store, service and
    /// relay.
    pub async fn build(deps: Dependencies, migrate: bool) -> anyhow::Result<Self> {
        deps.config.validate()?;
        if migrate {
            store::migrations().run(&deps.db).await?;
        }
        let relay =
            OutboxRelay::new(deps.db.clone(), deps.bus.clone(), &deps.events).for_service("access");
        let mail_relay = roster_core::mail::relay(
            deps.db.clone(),
            deps.mailer,
            &deps.cluster_key,
            &deps.events,
        )?
        .for_service("access");
        let store = store::open(&deps.db, relay.waker(), mail_relay.waker());
        let service = Arc::new(AccessService::new(
            store,
            deps.users,
            deps.sessions,
            deps.hasher,
            deps.auth.clone(),
            deps.config,
        ));
        let api = api::AccessApi::new(service.clone(), deps.auth);
        Ok(Self {
            service,
            api,
            relay,
            mail_relay,
            bus: deps.bus,
        })
    }
}

#[async_trait::async_trait]
impl Component for AccessComponent {
    /// Adds the access service's gRPC services to `server`.
    fn register(&self, server: &mut GrpcServer) {
        server.add_service(UserAccessServer::new(self.api.clone()));
        server.add_service(EntityAccessServer::new(self.api.clone()));
    }

    async fn spawn(self: Box<Self>, shutdown: Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let worker = worker::spawn(self.service, self.bus, shutdown.wait())
            .await
            .context("joining the access service's event consumer")?;
        Ok(vec![
            tokio::spawn(self.relay.run(shutdown.wait())),
            tokio::spawn(self.mail_relay.run(shutdown.wait())),
            worker,
        ])
    }
}
