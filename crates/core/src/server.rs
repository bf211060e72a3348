//! The gRPC server every `rosterd` process runs: the services it is given,
//! plus `grpc.health.v1` and reflection (v1 and v1alpha) so `grpcurl` and
//! Kubernetes probes work without `.proto` files. Requests are traced, and
//! a shutdown signal drains in-flight requests before the server returns.
//! It serves over TLS when given certificates, and can put the internal
//! services (cluster-key callers only) on a listener of their own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::server::HealthReporter;

use crate::tls::Tls;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// The internal services: only other Roster services call them (with the
/// cluster key). With an internal listener, the public one leaves them out.
pub const INTERNAL_SERVICES: &[&str] = &[
    "roster.v1.EntityAccess",
    "roster.v1.InvitationTokens",
    "roster.v1.Mailer",
    "roster.v1.SessionCredentials",
    "roster.v1.UserCredentials",
];

/// Where a [`GrpcServer`] listens.
pub struct Listeners {
    /// Every service, or only the public ones when `internal` is set.
    pub public: TcpListener,
    /// Every service, internal ones included, for the other services of
    /// the deployment.
    pub internal: Option<TcpListener>,
}

/// Collects services, then serves them on bound listeners.
pub struct GrpcServer {
    // Every service, for the internal listener (or the only one).
    routes: RoutesBuilder,
    // The services outsiders may call, for a separate public listener.
    public_routes: RoutesBuilder,
    health: HealthReporter,
    // The public listener's own health, which knows nothing of the
    // internal services it does not serve.
    public_health: HealthReporter,
    names: Vec<&'static str>,
    tls: Option<Arc<Tls>>,
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    pub fn new() -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let (public_health, public_health_service) = tonic_health::server::health_reporter();
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
        let mut routes = RoutesBuilder::default();
        let mut public_routes = RoutesBuilder::default();
        routes.add_service(health_service);
        public_routes.add_service(public_health_service);
        for builder in [&mut routes, &mut public_routes] {
            builder.add_service(v1.clone());
            builder.add_service(v1alpha.clone());
        }
        Self {
            routes,
            public_routes,
            health,
            public_health,
            names: Vec::new(),
            tls: None,
        }
    }

    /// Serves over TLS only, with the certificates `tls` holds at each
    /// new connection.
    pub fn with_tls(&mut self, tls: Arc<Tls>) -> &mut Self {
        self.tls = Some(tls);
        self
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
        if !INTERNAL_SERVICES.contains(&S::NAME) {
            self.public_routes.add_service(service.clone());
        }
        self.routes.add_service(service);
        self
    }

    /// The names of the services added so far.
    pub fn service_names(&self) -> &[&'static str] {
        &self.names
    }

    /// Serves every service on `listener` until `shutdown` completes, then
    /// stops accepting and waits for in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        self.serve_on(
            Listeners {
                public: listener,
                internal: None,
            },
            shutdown,
        )
        .await
    }

    /// As [`GrpcServer::serve`], on the public listener and, when given,
    /// the internal one.
    pub async fn serve_on(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        for name in &self.names {
            self.health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
            if !INTERNAL_SERVICES.contains(name) {
                self.public_health
                    .set_service_status(*name, tonic_health::ServingStatus::Serving)
                    .await;
            }
        }
        // The empty name is the whole server, as probes ask for it.
        for health in [&self.health, &self.public_health] {
            health
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
        }
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let healths = [self.health.clone(), self.public_health.clone()];
        let signal = async move {
            shutdown.await;
            // Probes see NOT_SERVING while requests drain, so load balancers
            // stop sending new ones.
            for health in healths {
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
            let _ = stopping_tx.send(true);
            std::future::pending::<()>().await;
        };
        let mut servers = Vec::new();
        match listeners.internal {
            Some(internal) => {
                let public: Vec<_> = self
                    .names
                    .iter()
                    .copied()
                    .filter(|name| !INTERNAL_SERVICES.contains(name))
                    .collect();
                servers.push(serve_routes(
                    self.public_routes.routes(),
                    listeners.public,
                    self.tls.clone(),
                    stopping_rx.clone(),
                    public,
                ));
                servers.push(serve_routes(
                    self.routes.routes(),
                    internal,
                    self.tls,
                    stopping_rx,
                    self.names,
                ));
            }
            None => servers.push(serve_routes(
                self.routes.routes(),
                listeners.public,
                self.tls,
                stopping_rx,
                self.names,
            )),
        }
        tokio::select! {
            result = futures::future::try_join_all(servers) => result.map(|_| ()),
            () = signal => Ok(()),
        }
    }
}

/// Serves `routes` on `listener` (over TLS when `tls` is given) until
/// `stopping` turns true, then drains for at most [`DRAIN_TIMEOUT`].
async fn serve_routes(
    routes: Routes,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    names: Vec<&'static str>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), services = ?names, "serving gRPC");
    let signal = {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    };
    let builder = tonic::transport::Server::builder()
        .trace_fn(|req| {
            let span = tracing::info_span!("grpc", path = %req.uri().path());
            crate::telemetry::continue_trace(&span, req.headers());
            span
        })
        .add_routes(routes);
    let serve: std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match tls {
            Some(tls) => {
                Box::pin(builder.serve_with_incoming_shutdown(
                    crate::tls::accept::incoming(listener, tls),
                    signal,
                ))
            }
            None => {
                // Small gRPC frames must not wait for delayed ACKs (Nagle),
                // and keepalive finds peers that vanished without closing.
                let incoming = tonic::transport::server::TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(std::time::Duration::from_secs(60)));
                Box::pin(builder.serve_with_incoming_shutdown(incoming, signal))
            }
        };
    // Draining waits for clients to finish and close; one that never does
    // must not keep the process alive past the drain timeout.
    let drain_deadline = async {
        if stopping.wait_for(|s| *s).await.is_ok() {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = serve => result?,
        _ = drain_deadline => {
            tracing::warn!(%addr, "connections still open after the drain timeout; closing them");
        }
    }
    tracing::info!(%addr, "gRPC server stopped");
    Ok(())
}

/// Warns loudly when `listener` is reachable from other machines and
/// carries plaintext: credentials and cluster keys would cross the network
/// readable by anyone on the path.
pub fn warn_if_plaintext_off_loopback(listener: &TcpListener, setting: &str, tls: bool) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    if !tls && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "INSECURE: {setting} is not a loopback address and TLS is off: passwords, tokens and \
             cluster keys travel in plaintext. Set tls.cert_file and tls.key_file \
             (and tls.client_ca_file for mutual TLS between services)"
        );
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
