//! What a process does with a built service: put its gRPC services on the
//! server, then run its background work (outbox relays, event workers, the
//! mail worker) until the process stops. Each service crate implements
//! [`Component`] for its own `*Component`; the table that builds all five
//! lives outside `core`, which knows no service.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::GrpcServer;

/// A built service, ready to serve.
#[async_trait::async_trait]
pub trait Component: Send {
    /// Adds the service's gRPC services to `server`.
    fn register(&self, server: &mut GrpcServer);

    /// Starts the service's background tasks; each ends once `shutdown`
    /// fires, relays after publishing what is left.
    async fn spawn(self: Box<Self>, shutdown: Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>>;
}

/// The signal that background tasks stop: sent once requests have
/// drained, so what they committed still goes out.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires a [`Shutdown`] and every clone of it.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A signal and the trigger that fires it.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Completes when the trigger fires (or is dropped).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

impl ShutdownTrigger {
    /// Tells every task to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}
