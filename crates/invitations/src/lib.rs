//! The invitations service and the mailer: every mail Roster sends.
//!
//! It serves the internal `Mailer` (other services queue mails through
//! it). Mails are stored in this service's durable queue before they are
//! sent, and a worker delivers them over SMTP, or writes them as `.eml`
//! files in the embedded default. The invitations themselves
//! (`UserInvitationRegistry`) are built on top of this.
//!
//! - [`api`]: the tonic services; [`service`]: the use cases;
//! - [`templates`]: the mails and how they read;
//! - [`mailer`]: the delivery worker; [`transport`]: SMTP and files;
//! - [`store`]: the mail queue, PostgreSQL and SQLite;
//! - [`error`]: errors → status codes; [`config`]: settings.

pub mod api;
pub mod config;
pub mod error;
pub mod mailer;
pub mod service;
pub mod store;
pub mod templates;
pub mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_core::auth::Authenticator;
use roster_core::db::Db;
use roster_core::server::GrpcServer;
use roster_proto::v1::mailer_server::MailerServer;

pub use config::MailConfig;
pub use mailer::Mailer;
pub use service::InvitationsService;

/// The service name used in `rosterd start <name>` and for its data.
pub const NAME: &str = "invitations";

/// What the invitations service needs from its process.
pub struct Dependencies {
    pub db: Db,
    pub auth: Arc<Authenticator>,
    pub mail: MailConfig,
    /// Where `.eml` files go when `mail.smtp_url` and `mail.dir` are empty.
    pub default_mail_dir: PathBuf,
}

/// A built invitations service: its gRPC services and its mail worker.
pub struct InvitationsComponent {
    pub service: Arc<InvitationsService>,
    pub api: api::InvitationsApi,
    pub mailer: Arc<Mailer>,
}

impl InvitationsComponent {
    /// Runs the migrations (when `migrate`), and wires store, transport,
    /// mailer and service.
    pub async fn build(deps: Dependencies, migrate: bool) -> anyhow::Result<Self> {
        deps.mail.validate()?;
        if migrate {
            store::migrations().run(&deps.db).await?;
        }
        let store = store::open(&deps.db);
        let transport: Arc<dyn transport::MailTransport> = if deps.mail.smtp_url.is_empty() {
            let dir = if deps.mail.dir.is_empty() {
                deps.default_mail_dir
            } else {
                PathBuf::from(&deps.mail.dir)
            };
            tracing::info!(dir = %dir.display(), "mail is written to files");
            Arc::new(transport::FileTransport::new(dir))
        } else {
            Arc::new(transport::SmtpTransport::new(
                &deps.mail.smtp_url,
                Duration::from_secs(deps.mail.timeout_secs),
            )?)
        };
        let mailer = Arc::new(Mailer::new(store.clone(), transport, deps.mail)?);
        let service = Arc::new(InvitationsService::new(store, mailer.waker()));
        let api = api::InvitationsApi::new(service.clone(), deps.auth);
        Ok(Self {
            service,
            api,
            mailer,
        })
    }

    /// Adds the invitations service's gRPC services to `server`.
    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(MailerServer::new(self.api.clone()));
    }
}
