//! `rosterd`: runs Roster's services.
//!
//! - `rosterd start all` serves every service from one process and port;
//! - `rosterd start <service>` serves one (others are reached over gRPC at
//!   the addresses in the configuration);
//! - `rosterd migrate` runs every service's migrations and exits.
//!
//! Configuration: built-in defaults, then `--config <file.toml>`, then
//! `ROSTER__SECTION__KEY` environment variables.

mod bootstrap;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use rand::RngCore;
use roster_access::{AccessComponent, GrpcSessionDirectory, GrpcUserDirectory};
use roster_core::auth::{Authenticator, ClusterKeys, GrpcCredentialResolver, TrustedProxies};
use roster_core::db::Db;
use roster_core::events::outbox::OutboxRelay;
use roster_core::password::PasswordHasher;
use roster_core::server::{
    GrpcServer, Listeners, bind, shutdown_signal, warn_if_plaintext_off_loopback,
};
use roster_core::tls::{Tls, connect};
use roster_core::token::TokenHasher;
use roster_invitations::InvitationsComponent;
use roster_notifications::NotificationsComponent;
use roster_sessions::{GrpcPeers, SessionsComponent};
use roster_user_registry::UserRegistryComponent;
use tokio::sync::watch;
use tonic::transport::Channel;

use settings::Settings;

#[derive(Parser)]
#[command(
    name = "rosterd",
    version,
    about = "Roster: users, keys, invitations, sessions and notifications over gRPC"
)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "ROSTER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one service, or all of them.
    Start {
        #[arg(value_enum)]
        service: ServiceName,
    },
    /// Run the migrations of every service, then exit.
    Migrate,
    /// Print the effective configuration (secrets hidden), then exit.
    Config,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServiceName {
    All,
    UserRegistry,
    Access,
    Sessions,
    Invitations,
    Notifications,
}

impl ServiceName {
    fn includes(self, other: ServiceName) -> bool {
        self == ServiceName::All || self == other
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = roster_core::config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _telemetry = roster_core::telemetry::init(&settings.telemetry)?;
        match cli.command {
            Command::Start { service } => {
                settings.validate()?;
                start(settings, service).await
            }
            Command::Migrate => migrate(&settings).await,
            Command::Config => {
                // Secret settings are secret types, whose `Debug` shows no
                // value (URLs show with their credentials hidden).
                println!("{settings:#?}");
                Ok(())
            }
        }
    })
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    for (service, migrations) in [
        (
            roster_user_registry::NAME,
            roster_user_registry::store::migrations(),
        ),
        (roster_access::NAME, roster_access::store::migrations()),
        (roster_sessions::NAME, roster_sessions::store::migrations()),
        (
            roster_invitations::NAME,
            roster_invitations::store::migrations(),
        ),
        (
            roster_notifications::NAME,
            roster_notifications::store::migrations(),
        ),
    ] {
        let db = Db::open(&settings.database, service).await?;
        migrations.run(&db).await?;
        tracing::info!(service, backend = db.backend(), "migrated");
    }
    Ok(())
}

/// The listeners of this process and how its channels reach peers.
struct Network {
    listeners: Listeners,
    tls: Option<Arc<Tls>>,
    // The port a channel to this process itself uses: the internal
    // listener's when there is one.
    own_port: u16,
}

impl Network {
    /// Binds `listen` (and `internal_listen`), loads the certificates and
    /// starts watching them, and warns about plaintext off loopback.
    async fn open(settings: &Settings) -> anyhow::Result<Network> {
        let tls = Tls::load(&settings.tls)?;
        if let Some(tls) = &tls {
            tls.spawn_reloader();
        }
        let serves_tls = settings.tls.serves_tls();
        let (public, public_addr) = bind(&settings.listen).await?;
        warn_if_plaintext_off_loopback(&public, "listen", serves_tls);
        let mut own_port = public_addr.port();
        let internal = if settings.internal_listen.is_empty() {
            None
        } else {
            let (internal, addr) = bind(&settings.internal_listen)
                .await
                .context("internal_listen")?;
            warn_if_plaintext_off_loopback(&internal, "internal_listen", serves_tls);
            own_port = addr.port();
            Some(internal)
        };
        Ok(Network {
            listeners: Listeners { public, internal },
            tls,
            own_port,
        })
    }

    /// The internal port, when the internal services have their own.
    fn internal_port(&self) -> Option<u16> {
        let internal = self.listeners.internal.as_ref()?;
        internal.local_addr().ok().map(|a| a.port())
    }

    /// A lazily connected channel to the address of setting `cluster.<key>`,
    /// or to this process when that is empty (over TLS when it serves TLS,
    /// checking the certificate for `tls.server_name`).
    fn peer(&self, settings: &Settings, configured: &str, key: &str) -> anyhow::Result<Channel> {
        let setting = format!("cluster.{key}");
        if !configured.is_empty() {
            return connect::channel(configured, &setting, self.tls.as_ref(), None);
        }
        if settings.tls.serves_tls() {
            connect::channel(
                &format!("https://127.0.0.1:{}", self.own_port),
                &setting,
                self.tls.as_ref(),
                Some(&settings.tls.server_name),
            )
            .context("this process calls itself over TLS (for the empty cluster address)")
        } else {
            connect::channel(
                &format!("http://127.0.0.1:{}", self.own_port),
                &setting,
                None,
                None,
            )
        }
    }
}

/// Opens the database of service `name` and says which backend it is.
async fn open_db(settings: &Settings, name: &str) -> anyhow::Result<Db> {
    let db = Db::open(&settings.database, name).await?;
    tracing::info!(service = name, backend = db.backend(), "opened database");
    Ok(db)
}

/// Runs `relay` until the process stops, then lets it drain.
fn spawn_relay(relay: OutboxRelay, stop: &watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let mut stop = stop.clone();
    tokio::spawn(relay.run(async move {
        let _ = stop.wait_for(|s| *s).await;
    }))
}

async fn start(settings: Settings, service: ServiceName) -> anyhow::Result<()> {
    roster_core::events::set_origin(&format!("rosterd@{}", roster_core::events::origin()));
    settings.cluster.check_keys()?;
    let network = Network::open(&settings).await?;
    let bus = roster_core::events::connect(&settings.events)
        .await
        .context("connecting to the event bus")?;

    let mut keys: Vec<String> = settings
        .cluster
        .keys
        .iter()
        .map(|key| key.expose().to_string())
        .collect();
    if keys.is_empty() {
        // One process serving everything can trust itself with a key only
        // it knows.
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        keys.push(data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase());
        if service != ServiceName::All {
            tracing::warn!(
                "no cluster.keys configured: other processes cannot call this one's internal methods"
            );
        }
    }
    let access_channel = network.peer(
        &settings,
        &settings.cluster.access_address,
        "access_address",
    )?;
    let sessions_channel = network.peer(
        &settings,
        &settings.cluster.sessions_address,
        "sessions_address",
    )?;
    let user_registry_channel = network.peer(
        &settings,
        &settings.cluster.user_registry_address,
        "user_registry_address",
    )?;
    let invitations_channel = network.peer(
        &settings,
        &settings.cluster.invitations_address,
        "invitations_address",
    )?;
    let resolver = Arc::new(GrpcCredentialResolver::new(
        access_channel.clone(),
        keys[0].clone(),
    ));
    let auth = Arc::new(
        Authenticator::new(resolver, ClusterKeys::new(keys.clone()), &settings.auth)
            .with_trusted_proxies(TrustedProxies::parse(&settings.auth.trusted_proxies)?)
            .with_wrong_cluster_key_limit(settings.cluster.wrong_key_rate_limit)
            .with_cluster_port(network.internal_port()),
    );
    auth.spawn_invalidation(bus.clone()).await?;
    let hasher = PasswordHasher::new(&settings.password)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let mut server = GrpcServer::new();
    let mut tasks = Vec::new();

    if service.includes(ServiceName::UserRegistry) {
        let db = open_db(&settings, roster_user_registry::NAME).await?;
        let component = UserRegistryComponent::build(
            roster_user_registry::Dependencies {
                db,
                bus: bus.clone(),
                auth: auth.clone(),
                hasher: hasher.clone(),
                events: settings.events.clone(),
                config: settings.user_registry.clone(),
                invitations: Arc::new(roster_user_registry::invitations::GrpcInvitations::new(
                    invitations_channel.clone(),
                    &keys[0],
                )?),
                mailer: invitations_channel.clone(),
                cluster_key: keys[0].clone(),
                clock: Arc::new(roster_core::time::SystemClock),
            },
            settings.database.migrate_on_start,
        )
        .await?;
        component.register(&mut server);
        tasks.push(spawn_relay(component.relay, &stop_rx));
        tasks.push(spawn_relay(component.mail_relay, &stop_rx));
    }

    if service.includes(ServiceName::Access) {
        let db = open_db(&settings, roster_access::NAME).await?;
        let component = AccessComponent::build(
            roster_access::Dependencies {
                db,
                bus: bus.clone(),
                auth: auth.clone(),
                users: Arc::new(GrpcUserDirectory::new(
                    user_registry_channel.clone(),
                    &keys[0],
                )?),
                sessions: Arc::new(GrpcSessionDirectory::new(
                    sessions_channel.clone(),
                    &keys[0],
                )?),
                hasher: TokenHasher::new(settings.auth.token_hash_key.expose()),
                events: settings.events.clone(),
                config: settings.access.clone(),
                mailer: invitations_channel.clone(),
                cluster_key: keys[0].clone(),
            },
            settings.database.migrate_on_start,
        )
        .await?;
        component.register(&mut server);
        tasks.push(spawn_relay(component.relay, &stop_rx));
        tasks.push(spawn_relay(component.mail_relay, &stop_rx));
        tasks.push(
            roster_access::worker::spawn(
                component.service.clone(),
                bus.clone(),
                stopping(stop_rx.clone()),
            )
            .await
            .context("joining the access service's event consumer")?,
        );
        if !settings.bootstrap.admin_user_id.is_empty() {
            roster_user_registry::domain::UserId::parse(&settings.bootstrap.admin_user_id)
                .map_err(|v| anyhow::anyhow!("bootstrap.admin_user_id: {}", v.reason))?;
            let bootstrap = bootstrap::Bootstrap::new(
                settings.bootstrap.clone(),
                user_registry_channel.clone(),
                // The access service is this process.
                network.peer(&settings, "", "access_address")?,
                keys[0].clone(),
            )?;
            tokio::spawn(async move {
                if let Err(error) = bootstrap.run().await {
                    tracing::error!(error = format!("{error:#}"), "bootstrap failed");
                }
            });
        }
    }

    if service.includes(ServiceName::Sessions) {
        let db = open_db(&settings, roster_sessions::NAME).await?;
        let component = SessionsComponent::build(
            roster_sessions::Dependencies {
                db,
                bus: bus.clone(),
                auth: auth.clone(),
                peers: Arc::new(GrpcPeers::new(
                    user_registry_channel.clone(),
                    access_channel.clone(),
                    &keys[0],
                )?),
                hasher: TokenHasher::new(settings.auth.token_hash_key.expose()),
                clock: Arc::new(roster_core::time::SystemClock),
                events: settings.events.clone(),
                config: settings.sessions.clone(),
            },
            settings.database.migrate_on_start,
        )
        .await?;
        component.register(&mut server);
        tasks.push(spawn_relay(component.relay, &stop_rx));
        tasks.push(
            roster_sessions::worker::spawn(
                component.service.clone(),
                bus.clone(),
                stopping(stop_rx.clone()),
            )
            .await
            .context("joining the sessions service's event consumer")?,
        );
    }

    if service.includes(ServiceName::Invitations) {
        let db = open_db(&settings, roster_invitations::NAME).await?;
        let component = InvitationsComponent::build(
            roster_invitations::Dependencies {
                db,
                bus: bus.clone(),
                auth: auth.clone(),
                users: Arc::new(roster_invitations::GrpcUserLookup::new(
                    user_registry_channel.clone(),
                    &keys[0],
                )?),
                hasher: TokenHasher::new(settings.auth.token_hash_key.expose()),
                events: settings.events.clone(),
                mail: settings.mail.clone(),
                config: settings.invitations.clone(),
                default_mail_dir: std::path::Path::new(&settings.database.data_dir).join("mail"),
            },
            settings.database.migrate_on_start,
        )
        .await?;
        component.register(&mut server);
        tasks.push(tokio::spawn(
            component.mailer.clone().run(stopping(stop_rx.clone())),
        ));
        tasks.push(spawn_relay(component.relay, &stop_rx));
    }

    if service.includes(ServiceName::Notifications) {
        let db = open_db(&settings, roster_notifications::NAME).await?;
        let component = NotificationsComponent::build(
            roster_notifications::Dependencies {
                db,
                bus: bus.clone(),
                auth: auth.clone(),
                directory: Arc::new(roster_notifications::GrpcDirectory::new(
                    user_registry_channel.clone(),
                    invitations_channel.clone(),
                    &keys[0],
                )?),
                events: settings.events.clone(),
                config: settings.notifications.clone(),
                mailer: invitations_channel.clone(),
                cluster_key: keys[0].clone(),
            },
            settings.database.migrate_on_start,
        )
        .await?;
        component.register(&mut server);
        tasks.push(spawn_relay(component.relay, &stop_rx));
        tasks.push(spawn_relay(component.mail_relay, &stop_rx));
        tasks.push(
            roster_notifications::worker::spawn(
                component.service.clone(),
                bus.clone(),
                stopping(stop_rx.clone()),
            )
            .await
            .context("joining the notifications service's event consumer")?,
        );
    }

    if let Some(tls) = network.tls.clone().filter(|_| settings.tls.serves_tls()) {
        server.with_tls(tls);
    }
    server
        .serve_on(network.listeners, async {
            shutdown_signal().await;
        })
        .await?;
    // Requests have drained; let the relays publish what is left.
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}
