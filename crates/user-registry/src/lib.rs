//! The user registry: users, search, external identities and passwords.
//!
//! It serves `UserRegistry`, `EntityRegistrySearch`,
//! `ExternalUserRegistry`, `UserLifecycle` (email validation, an admin's
//! lock, deactivation, required actions, statistics), `UserMetadata`, and
//! the internal `UserCredentials` (password checks for the sessions
//! service). It owns the `users`, `user_attributes`, `user_metadata`,
//! `external_users` and `password_failures` tables, publishes the `user.*`
//! events through its outbox, and hands the mails it owes (validation links, temporary passwords) to the mailer through its
//! mail outbox.
//!
//! - [`api`]: the tonic services;
//! - [`service`]: the use cases and their rules (`service::lifecycle` for
//!   `UserLifecycle` beyond email validation);
//! - [`domain`]: validated input types;
//! - [`store`]: the store trait, PostgreSQL and SQLite;
//! - [`convert`]: records ↔ messages, field masks;
//! - [`invitations`]: claiming invitations at registration;
//! - [`events`]: event names; [`error`]: errors → status codes;
//!   [`config`]: settings;
//! - [`worker`]: forgetting cached users on the events of their changes.
//!
//! Users as `Get` shows them are kept in memory (`store::cache`, behind
//! the store trait in `store::cached`): a write of this process forgets
//! the user as it returns, a write of another process as its event
//! arrives.

pub mod api;
pub mod config;
pub mod convert;
pub mod domain;
pub mod error;
pub mod events;
pub mod factor_keys;
pub mod invitations;
pub mod lockout;
pub mod service;
pub mod store;
pub mod totp;
pub mod worker;

use std::sync::Arc;

use tokio::task::JoinHandle;

use roster_core::auth::Authenticator;
use roster_core::component::{Component, Shutdown};
use roster_core::db::Db;
use roster_core::events::EventBus;
use roster_core::events::outbox::OutboxRelay;
use roster_core::password::PasswordHasher;
use roster_core::server::GrpcServer;
use roster_proto::v1::entity_registry_search_server::EntityRegistrySearchServer;
use roster_proto::v1::external_user_registry_server::ExternalUserRegistryServer;
use roster_proto::v1::second_factor_credentials_server::SecondFactorCredentialsServer;
use roster_proto::v1::user_authentication_factors_server::UserAuthenticationFactorsServer;
use roster_proto::v1::user_credentials_server::UserCredentialsServer;
use roster_proto::v1::user_lifecycle_server::UserLifecycleServer;
use roster_proto::v1::user_metadata_server::UserMetadataServer;
use roster_proto::v1::user_registry_server::UserRegistryServer;

pub use config::UserRegistryConfig;

/// The service name used in `rosterd start <name>` and for its data.
pub const NAME: &str = "user-registry";

/// What the user registry needs from its process.
pub struct Dependencies {
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub auth: Arc<Authenticator>,
    pub hasher: PasswordHasher,
    pub events: roster_core::events::EventsConfig,
    pub config: UserRegistryConfig,
    /// Claims invitation tokens at registration.
    pub invitations: Arc<dyn invitations::Invitations>,
    /// The mailer (`Mailer.Enqueue`), which validation and
    /// temporary-password mails go to.
    pub mailer: tonic::transport::Channel,
    /// The cluster key presented to the mailer.
    pub cluster_key: String,
    /// What time it is, for counting wrong passwords (tests move it).
    pub clock: Arc<dyn roster_core::time::Clock>,
}

/// A built user registry: its gRPC services and its outbox relays (events
/// to the bus, mails to the mailer).
pub struct UserRegistryComponent {
    pub service: Arc<UserRegistryService>,
    pub api: api::UserRegistryApi,
    pub relay: OutboxRelay,
    pub mail_relay: OutboxRelay,
    /// Users kept in memory, when `user_cache_*` does not turn it off.
    pub user_cache: Option<Arc<store::UserCache>>,
    invalidation: Option<worker::CacheInvalidation>,
}

pub use service::UserRegistryService;

impl UserRegistryComponent {
    /// Runs the migrations (when `migrate`), and wires store, service and
    /// relay.
    pub async fn build(deps: Dependencies, migrate: bool) -> anyhow::Result<Self> {
        deps.config.validate()?;
        if migrate {
            store::migrations().run(&deps.db).await?;
        }
        let relay = OutboxRelay::new(deps.db.clone(), deps.bus.clone(), &deps.events)
            .for_service("user-registry");
        let mail_relay = roster_core::mail::relay(
            deps.db.clone(),
            deps.mailer,
            &deps.cluster_key,
            &deps.events,
        )?
        .for_service("user-registry");
        let store = store::open(&deps.db, relay.waker(), mail_relay.waker());
        let (store, user_cache) = store::cached(
            store,
            deps.config.user_cache_max_bytes,
            deps.config.user_cache_ttl(),
        );
        let invalidation = match &user_cache {
            Some(cache) => {
                Some(worker::CacheInvalidation::subscribe(&*deps.bus, cache.clone()).await?)
            }
            None => None,
        };
        let keys = second_factor_keys(&deps.db, &deps.config)?;
        let factors = store::factors::open(&deps.db, relay.waker(), mail_relay.waker());
        let service = Arc::new(
            UserRegistryService::new(
                store,
                deps.hasher,
                deps.invitations,
                deps.config,
                deps.clock,
            )
            .with_second_factors(factors, Arc::new(keys)),
        );
        let api = api::UserRegistryApi::new(service.clone(), deps.auth);
        Ok(Self {
            service,
            api,
            relay,
            mail_relay,
            user_cache,
            invalidation,
        })
    }
}

#[async_trait::async_trait]
impl Component for UserRegistryComponent {
    /// Adds the user registry's gRPC services to `server`.
    fn register(&self, server: &mut GrpcServer) {
        server.add_service(UserRegistryServer::new(self.api.clone()));
        server.add_service(EntityRegistrySearchServer::new(self.api.clone()));
        server.add_service(ExternalUserRegistryServer::new(self.api.clone()));
        server.add_service(UserCredentialsServer::new(self.api.clone()));
        server.add_service(UserLifecycleServer::new(self.api.clone()));
        server.add_service(UserMetadataServer::new(self.api.clone()));
        server.add_service(UserAuthenticationFactorsServer::new(self.api.clone()));
        server.add_service(SecondFactorCredentialsServer::new(self.api.clone()));
    }

    async fn spawn(self: Box<Self>, shutdown: Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = vec![
            tokio::spawn(self.relay.run(shutdown.wait())),
            tokio::spawn(self.mail_relay.run(shutdown.wait())),
        ];
        if let Some(invalidation) = self.invalidation {
            tasks.push(tokio::spawn(invalidation.run(shutdown.wait())));
        }
        Ok(tasks)
    }
}

/// The keys of second-factor secrets: the configured ones; with none on
/// the embedded default, one generated once into `second-factor.key`
/// beside the SQLite files (readable by the owner only); with none on
/// PostgreSQL, an error naming the setting, since replicas must share it.
fn second_factor_keys(
    db: &Db,
    config: &UserRegistryConfig,
) -> anyhow::Result<factor_keys::FactorKeys> {
    if !config.second_factor_keys.is_empty() {
        let materials: Vec<&str> = config
            .second_factor_keys
            .iter()
            .map(|k| k.expose())
            .collect();
        return factor_keys::FactorKeys::new(&materials);
    }
    let Db::Sqlite(pool) = db else {
        anyhow::bail!(
            "user_registry.second_factor_keys (or auth.token_hash_key, from which it is \
             derived) is required with a PostgreSQL database: every replica must seal and \
             open TOTP secrets with the same key"
        );
    };
    let dir = pool
        .connect_options()
        .get_filename()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let path = dir.join("second-factor.key");
    let material = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let material = factor_keys::FactorKeys::generate_material();
            write_private(&path, &material)?;
            tracing::warn!(
                path = %path.display(),
                "no user_registry.second_factor_keys configured: generated a key for second-factor secrets; keep the file with the database"
            );
            material
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    factor_keys::FactorKeys::new(&[material])
}

/// Writes a new file readable and writable by its owner only.
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::Error::new(e).context(format!("creating {}", path.display())))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
