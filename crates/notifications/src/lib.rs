//! The notifications service: what users should be told about what
//! happened to them and their account.
//!
//! It serves `NotificationService`. `Create` is for other Roster services
//! (the cluster key) and admins; `List`, `UpdateStatus` and `Subscribe`
//! need `RIGHT_USER_NOTIFICATIONS_READ` on the receiver. It owns the
//! `notifications` table (one row per notification, shared by its
//! receivers) and `notification_receivers` (each receiver's status), and
//! publishes `user.notification.create` (one per receiver) and
//! `user.notification.update_status` through its outbox. Notifications are
//! made in one place, [`NotificationsService::notify`], for `Create` and
//! for event workers alike: it resolves the receivers (asking the user
//! registry which users exist and what they want mailed, and the
//! invitations service who sent an invitation), and writes the
//! notification, its status rows, its events and its mails (through the
//! mail outbox to the mailer, template `notification`) in one transaction.
//! A notification ID that exists already makes nothing, so an event
//! delivered twice notifies once. `Subscribe` streams new notifications
//! from the event fan-out and ends when the caller's credential stops
//! working. Its [`worker`] turns other services' events (API keys,
//! passwords, states, login tokens, locks, accepted invitations, users
//! awaiting approval) into notifications.
//!
//! - [`api`]: the tonic service; [`service`]: the use cases and their
//!   rules;
//! - [`store`]: notifications and their receivers, PostgreSQL and SQLite;
//! - [`worker`]: notifications made from other services' events;
//! - [`users`]: the user registry and the invitations service as this
//!   service sees them;
//! - [`events`]: event names; [`error`]: errors → status codes;
//!   [`config`]: settings.

pub mod api;
pub mod config;
pub mod error;
pub mod events;
pub mod service;
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
use roster_proto::v1::notification_service_server::NotificationServiceServer;

pub use config::NotificationsConfig;
pub use service::{Note, NotificationsService};
pub use users::{Contact, Directory, GrpcDirectory};

/// The service name used in `rosterd start <name>` and for its data.
pub const NAME: &str = "notifications";

/// What the notifications service needs from its process.
pub struct Dependencies {
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub auth: Arc<Authenticator>,
    /// Asks about receivers: users, admins, invitation senders.
    pub directory: Arc<dyn Directory>,
    pub events: roster_core::events::EventsConfig,
    pub config: NotificationsConfig,
    /// The mailer (`Mailer.Enqueue`), which notification mails go to.
    pub mailer: tonic::transport::Channel,
    /// The cluster key presented to the mailer.
    pub cluster_key: String,
}

/// A built notifications service: its gRPC service and its outbox relays
/// (events to the bus, mails to the mailer).
pub struct NotificationsComponent {
    pub service: Arc<NotificationsService>,
    pub api: api::NotificationsApi,
    pub relay: OutboxRelay,
    pub mail_relay: OutboxRelay,
    // Its work consumer's source of events; `None` leaves the worker out.
    worker_bus: Option<Arc<dyn EventBus>>,
}

impl NotificationsComponent {
    /// Runs the migrations (when `migrate`), and wires store, service and
    /// relays.
    pub async fn build(deps: Dependencies, migrate: bool) -> anyhow::Result<Self> {
        deps.config.validate()?;
        if migrate {
            store::migrations().run(&deps.db).await?;
        }
        let relay = OutboxRelay::new(deps.db.clone(), deps.bus.clone(), &deps.events)
            .for_service("notifications");
        let mail_relay = roster_core::mail::relay(
            deps.db.clone(),
            deps.mailer,
            &deps.cluster_key,
            &deps.events,
        )?
        .for_service("notifications");
        let store = store::open(&deps.db, relay.waker(), mail_relay.waker());
        let service = Arc::new(NotificationsService::new(
            store,
            deps.directory,
            deps.bus.clone(),
            deps.auth.clone(),
            deps.config,
        ));
        let api = api::NotificationsApi::new(service.clone(), deps.auth);
        Ok(Self {
            service,
            api,
            relay,
            mail_relay,
            worker_bus: Some(deps.bus),
        })
    }

    /// Leaves out the worker that makes notifications from events, for
    /// tests that must see only the notifications they make themselves.
    pub fn without_worker(mut self) -> Self {
        self.worker_bus = None;
        self
    }
}

#[async_trait::async_trait]
impl Component for NotificationsComponent {
    /// Adds `NotificationService` to `server`.
    fn register(&self, server: &mut GrpcServer) {
        server.add_service(NotificationServiceServer::new(self.api.clone()));
    }

    async fn spawn(self: Box<Self>, shutdown: Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = vec![
            tokio::spawn(self.relay.run(shutdown.wait())),
            tokio::spawn(self.mail_relay.run(shutdown.wait())),
        ];
        if let Some(bus) = self.worker_bus {
            let worker = worker::spawn(self.service, bus, shutdown.wait())
                .await
                .context("joining the notifications service's event consumer")?;
            tasks.push(worker);
        }
        Ok(tasks)
    }
}
