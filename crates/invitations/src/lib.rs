//! The invitations service: invitations to register, and every mail Roster
//! sends.
//!
//! It serves `UserInvitationRegistry` (send, list, get, resend and delete
//! invitations; every method needs `RIGHT_SEND_INVITES`, and callers who
//! are not admins see only the invitations they sent), the internal
//! `InvitationTokens` (the user registry redeems an invitation token in two
//! steps, claim then accept or release, around the creation of its user)
//! and the internal `Mailer` (other services queue mails through it). It
//! owns the `invitations` and `mail_queue` tables and publishes
//! `invitation.*` events through its outbox. An invitation's token is
//! returned once, by `Send`, and mailed; only a keyed digest of it is
//! stored. The invitation, its mail and its event are written in one
//! transaction. Mails are stored in the durable queue before they are sent,
//! and a worker delivers them over SMTP, or writes them as `.eml` files in
//! the embedded default. Whether a user exists it asks of the user
//! registry.
//!
//! - [`api`]: the tonic services; [`service`]: the use cases and their
//!   rules; [`domain`]: addresses and IDs, parsed once;
//! - [`templates`]: the mails and how they read;
//! - [`mailer`]: the delivery worker; [`transport`]: SMTP and files;
//! - [`store`]: invitations and the mail queue, PostgreSQL and SQLite;
//! - [`users`]: the user registry as this service sees it;
//! - [`events`]: event names; [`error`]: errors → status codes;
//!   [`config`]: settings.

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod mailer;
pub mod service;
pub mod store;
pub mod templates;
pub mod transport;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use roster_core::auth::Authenticator;
use roster_core::component::{Component, Shutdown};
use roster_core::db::Db;
use roster_core::events::EventBus;
use roster_core::events::outbox::OutboxRelay;
use roster_core::server::GrpcServer;
use roster_core::token::TokenHasher;
use roster_proto::v1::invitation_tokens_server::InvitationTokensServer;
use roster_proto::v1::mailer_server::MailerServer;
use roster_proto::v1::user_invitation_registry_server::UserInvitationRegistryServer;

pub use config::{InvitationsConfig, MailConfig};
pub use mailer::Mailer;
pub use service::InvitationsService;
pub use users::{GrpcUserLookup, UserLookup};

/// The service name used in `rosterd start <name>` and for its data.
pub const NAME: &str = "invitations";

/// What the invitations service needs from its process.
pub struct Dependencies {
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub auth: Arc<Authenticator>,
    /// Asks the user registry whether a user exists (for stale claims).
    pub users: Arc<dyn UserLookup>,
    /// Hashes invitation tokens for storage (`auth.token_hash_key`).
    pub hasher: TokenHasher,
    pub events: roster_core::events::EventsConfig,
    pub mail: MailConfig,
    pub config: InvitationsConfig,
    /// Where `.eml` files go when `mail.smtp_url` and `mail.dir` are empty.
    pub default_mail_dir: PathBuf,
}

/// A built invitations service: its gRPC services, its mail worker and its
/// outbox relay.
pub struct InvitationsComponent {
    pub service: Arc<InvitationsService>,
    pub api: api::InvitationsApi,
    pub mailer: Arc<Mailer>,
    pub relay: OutboxRelay,
}

impl InvitationsComponent {
    /// Runs the migrations (when `migrate`), and wires stores, transport,
    /// mailer, relay and service.
    pub async fn build(deps: Dependencies, migrate: bool) -> anyhow::Result<Self> {
        deps.mail.validate()?;
        deps.config.validate()?;
        if migrate {
            store::migrations().run(&deps.db).await?;
        }
        let relay = OutboxRelay::new(deps.db.clone(), deps.bus.clone(), &deps.events)
            .for_service("invitations");
        let store = store::open(&deps.db);
        let invitations = store::open_invitations(&deps.db, relay.waker());
        let transport: Arc<dyn transport::MailTransport> = if deps.mail.smtp_url.is_empty() {
            let dir = if deps.mail.dir.is_empty() {
                deps.default_mail_dir
            } else {
                PathBuf::from(&deps.mail.dir)
            };
            tracing::info!(dir = %dir.display(), "mail is written to files");
            Arc::new(transport::FileTransport::new(dir).with_retention(deps.mail.file_retention()))
        } else {
            Arc::new(transport::SmtpTransport::new(
                deps.mail.smtp_url.expose(),
                Duration::from_secs(deps.mail.timeout_secs),
            )?)
        };
        let mailer = Arc::new(Mailer::new(store.clone(), transport, deps.mail)?);
        let service = Arc::new(InvitationsService::new(
            store,
            invitations,
            deps.users,
            deps.hasher,
            deps.config,
            mailer.waker(),
        ));
        let api = api::InvitationsApi::new(service.clone(), deps.auth);
        Ok(Self {
            service,
            api,
            mailer,
            relay,
        })
    }
}

#[async_trait::async_trait]
impl Component for InvitationsComponent {
    /// Adds the invitations service's gRPC services to `server`.
    fn register(&self, server: &mut GrpcServer) {
        server.add_service(MailerServer::new(self.api.clone()));
        server.add_service(UserInvitationRegistryServer::new(self.api.clone()));
        server.add_service(InvitationTokensServer::new(self.api.clone()));
    }

    async fn spawn(self: Box<Self>, shutdown: Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
        Ok(vec![
            tokio::spawn(self.mailer.run(shutdown.wait())),
            tokio::spawn(self.relay.run(shutdown.wait())),
        ])
    }
}
