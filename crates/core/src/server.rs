//! The gRPC server every `rosterd` process runs: the services it is given,
//! plus `grpc.health.v1` and reflection (v1 and v1alpha) so `grpcurl` and
//! Kubernetes probes work without `.proto` files. Requests are traced, and
//! a shutdown signal drains in-flight requests before the server returns.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::server::HealthReporter;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// Collects services, then serves them on a bound listener.
pub struct GrpcServer {
    routes: RoutesBuilder,
    health: HealthReporter,
    names: Vec<&'static str>,
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    pub fn new() -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        let v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(roster_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the embedded descriptor set is valid");
        let v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(roster_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .expect("the embedded descriptor set is valid");
        routes.add_service(v1);
        routes.add_service(v1alpha);
        Self {
            routes,
            health,
            names: Vec::new(),
        }
    }

    /// Adds a service; health reports it SERVING once the server runs.
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// The names of the services added so far.
    pub fn service_names(&self) -> &[&'static str] {
        &self.names
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for
    /// in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        for name in &self.names {
            self.health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        // The empty name is the whole server, as probes ask for it.
        self.health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        tracing::info!(%addr, services = ?self.names, "serving gRPC");
        let routes: Routes = self.routes.routes();
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let health = self.health.clone();
        let signal = async move {
            shutdown.await;
            // Probes see NOT_SERVING while requests drain, so load balancers
            // stop sending new ones.
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            let _ = stopping_tx.send(());
        };
        // Small gRPC frames must not wait for delayed ACKs (Nagle), and
        // keepalive finds peers that vanished without closing.
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(std::time::Duration::from_secs(60)));
        let serve = tonic::transport::Server::builder()
            .trace_fn(|req| {
                let span = tracing::info_span!("grpc", path = %req.uri().path());
                crate::telemetry::continue_trace(&span, req.headers());
                span
            })
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(serve);
        // Draining waits for clients to finish and close; one that never
        // does must not keep the process alive past the drain timeout.
        let drain_deadline = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = &mut serve => result?,
            _ = drain_deadline => {
                tracing::warn!(%addr, "connections still open after the drain timeout; closing them");
            }
        }
        tracing::info!(%addr, "gRPC server stopped");
        Ok(())
    }
}

/// Binds a listener; port 0 picks a free port (tests).
pub async fn bind(addr: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// The body of a gRPC method: resolves the caller through `$auth` (an
/// [`Authenticator`](crate::auth::Authenticator)), runs `$call` with the
/// call context and the request's message, and turns the service's error
/// into a status (its type implements `Into<tonic::Status>`).
#[macro_export]
macro_rules! handle {
    ($auth:expr, $request:ident, |$ctx:ident, $msg:ident| $call:expr) => {{
        let $ctx = $auth.context(&$request).await?;
        let $msg = $request.into_inner();
        $call.await.map_err(::tonic::Status::from)
    }};
}
