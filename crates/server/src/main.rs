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

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use rand::RngCore;
use roster_core::auth::{Authenticator, ClusterKeys, GrpcCredentialResolver, TrustedProxies};
use roster_core::component::Shutdown;
use roster_core::password::PasswordHasher;
use roster_core::server::{
    GrpcServer, Listeners, bind, shutdown_signal, warn_if_plaintext_off_loopback,
};
use roster_core::tls::{Tls, connect};
use roster_core::token::TokenHasher;
use roster_services::{Configs, Context, Peers, Service, Services};
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

    /// The services this name stands for.
    fn services(self) -> Vec<Service> {
        match self {
            ServiceName::All => Service::ALL.to_vec(),
            ServiceName::UserRegistry => vec![Service::UserRegistry],
            ServiceName::Access => vec![Service::Access],
            ServiceName::Sessions => vec![Service::Sessions],
            ServiceName::Invitations => vec![Service::Invitations],
            ServiceName::Notifications => vec![Service::Notifications],
        }
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
            Command::Migrate => roster_services::migrate(&settings.database).await,
            Command::Config => {
                // Secret settings are secret types, whose `Debug` shows no
                // value (URLs show with their credentials hidden).
                println!("{settings:#?}");
                Ok(())
            }
        }
    })
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

async fn start(settings: Settings, service: ServiceName) -> anyhow::Result<()> {
    roster_core::events::set_origin(&format!("rosterd@{}", roster_core::events::origin()));
    settings.cluster.check_keys()?;
    let network = Network::open(&settings).await?;
    roster_core::metrics::install(&settings.metrics)?;
    let cluster = &settings.cluster;
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
    let peers = Peers {
        user_registry: network.peer(
            &settings,
            &cluster.user_registry_address,
            "user_registry_address",
        )?,
        access: network.peer(&settings, &cluster.access_address, "access_address")?,
        sessions: network.peer(&settings, &cluster.sessions_address, "sessions_address")?,
        invitations: network.peer(
            &settings,
            &cluster.invitations_address,
            "invitations_address",
        )?,
    };
    let resolver = Arc::new(GrpcCredentialResolver::new(
        peers.access.clone(),
        keys[0].clone(),
    ));
    let auth = Arc::new(
        Authenticator::new(resolver, ClusterKeys::new(keys.clone()), &settings.auth)
            .with_trusted_proxies(TrustedProxies::parse(&settings.auth.trusted_proxies)?)
            .with_wrong_cluster_key_limit(settings.cluster.wrong_key_rate_limit)
            .with_cluster_port(network.internal_port()),
    );
    auth.spawn_invalidation(bus.clone()).await?;
    let context = Context {
        database: settings.database.clone(),
        migrate: settings.database.migrate_on_start,
        bus,
        auth,
        password_hasher: PasswordHasher::new(&settings.password)?,
        token_hasher: TokenHasher::new(settings.auth.token_hash_key.expose()),
        clock: Arc::new(roster_core::time::SystemClock),
        events: settings.events.clone(),
        cluster_key: keys[0].clone(),
        peers: peers.clone(),
        configs: configs(&settings),
        notification_worker: true,
    };
    let mut services = Services::build(&context, &service.services()).await?;
    if service.includes(ServiceName::Access) {
        spawn_bootstrap(&settings, &network, &peers, &keys[0])?;
    }
    let mut server = GrpcServer::new();
    services.register(&mut server);
    let (stop, shutdown) = Shutdown::new();
    let tasks = services.spawn(&shutdown).await?;

    server.with_config(&settings.server);
    if let Some(tls) = network.tls.clone().filter(|_| settings.tls.serves_tls()) {
        server.with_tls(tls);
    }
    server
        .serve_on(network.listeners, async {
            shutdown_signal().await;
        })
        .await?;
    // Requests have drained; let the relays publish what is left.
    stop.fire();
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Each service's settings.
fn configs(settings: &Settings) -> Configs {
    let mut user_registry = settings.user_registry.clone();
    // Without keys of their own, second-factor secrets are protected by a
    // key derived from `auth.token_hash_key`, which every replica on
    // PostgreSQL already shares (the embedded default with neither key
    // generates one beside its files).
    if user_registry.second_factor_keys.is_empty() && !settings.auth.token_hash_key.is_empty() {
        use sha2::Digest as _;
        let mut derived = sha2::Sha256::new();
        derived.update(b"roster second factor keys from auth.token_hash_key\0");
        derived.update(settings.auth.token_hash_key.expose().as_bytes());
        let material = data_encoding::HEXLOWER.encode(&derived.finalize());
        user_registry.second_factor_keys = vec![material.into()];
    }
    Configs {
        user_registry,
        access: settings.access.clone(),
        sessions: settings.sessions.clone(),
        invitations: settings.invitations.clone(),
        notifications: settings.notifications.clone(),
        mail: settings.mail.clone(),
        default_mail_dir: std::path::Path::new(&settings.database.data_dir).join("mail"),
    }
}

/// Creates the first admin from `bootstrap.*`, in the background, once the
/// user registry and this process's access service answer.
fn spawn_bootstrap(
    settings: &Settings,
    network: &Network,
    peers: &Peers,
    cluster_key: &str,
) -> anyhow::Result<()> {
    if settings.bootstrap.admin_user_id.is_empty() {
        return Ok(());
    }
    roster_user_registry::domain::UserId::parse(&settings.bootstrap.admin_user_id)
        .map_err(|v| anyhow::anyhow!("bootstrap.admin_user_id: {}", v.reason))?;
    let bootstrap = bootstrap::Bootstrap::new(
        settings.bootstrap.clone(),
        peers.user_registry.clone(),
        // The access service is this process.
        network.peer(settings, "", "access_address")?,
        cluster_key.to_string(),
    )?;
    tokio::spawn(async move {
        if let Err(error) = bootstrap.run().await {
            tracing::error!(error = format!("{error:#}"), "bootstrap failed");
        }
    });
    Ok(())
}
