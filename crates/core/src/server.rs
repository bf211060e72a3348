//! The gRPC server every `rosterd` process runs: the services it is given,
//! plus `grpc.health.v1` and reflection (v1 and v1alpha) so `grpcurl` and
//! Kubernetes probes work without `.proto` files. Requests are traced, and
//! a shutdown signal drains in-flight requests before the server returns.
//! It serves over TLS when given certificates, and can put the internal
//! services (cluster-key callers only) on a listener of their own.
//!
//! Health: the empty name is the process (liveness); each service's names
//! are SERVING only while its [`Readiness`] check passes (readiness). On
//! shutdown every name turns NOT_SERVING, and the listeners keep serving for
//! `server.drain_delay_ms` more, so Kubernetes stops routing traffic here
//! before they close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::health::Readiness;
use crate::tls::Tls;

/// How the gRPC server reports health and shuts down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// How long the listeners keep serving after a shutdown signal, with
    /// every health name NOT_SERVING, before they close: time for
    /// Kubernetes to see the pod unready and stop sending it requests.
    pub drain_delay_ms: u64,
    /// How often each service's readiness (its database reachable, its
    /// migrations applied) is checked.
    pub readiness_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            drain_delay_ms: 5000,
            readiness_interval_ms: 2000,
        }
    }
}

impl ServerConfig {
    /// Refuses a readiness interval of zero, naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.readiness_interval_ms > 0,
            "server.readiness_interval_ms must be at least 1"
        );
        Ok(())
    }
}

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
    health: Health,
    names: Vec<&'static str>,
    tls: Option<Arc<Tls>>,
    // Service names whose SERVING depends on a check, with that check.
    readiness: Vec<(Vec<&'static str>, Arc<dyn Readiness>)>,
    config: ServerConfig,
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
            health: Health {
                all: health,
                public: public_health,
            },
            names: Vec::new(),
            tls: None,
            readiness: Vec::new(),
            config: ServerConfig {
                drain_delay_ms: 0,
                ..ServerConfig::default()
            },
        }
    }

    /// Drains and checks readiness as `config` says. Without it there is
    /// no drain delay: only a deployment behind a load balancer needs one.
    pub fn with_config(&mut self, config: &ServerConfig) -> &mut Self {
        self.config = config.clone();
        self
    }

    /// Reports `names` SERVING only while `check` passes, checked every
    /// `server.readiness_interval_ms`.
    pub fn add_readiness(&mut self, names: &[&'static str], check: Arc<dyn Readiness>) {
        self.readiness.push((names.to_vec(), check));
    }

    /// Serves over TLS only, with the certificates `tls` holds at each
    /// new connection.
    pub fn with_tls(&mut self, tls: Arc<Tls>) -> &mut Self {
        self.tls = Some(tls);
        self
    }

    /// Adds a service; health reports it SERVING once the server runs
    /// (while its readiness check passes, when it has one).
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
        mut self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let health = self.health.clone();
        let watches = self.watch_readiness(&health).await;
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let mut every_name = self.names.clone();
        every_name.push("");
        let drain_delay = Duration::from_millis(self.config.drain_delay_ms);
        let signal = async move {
            shutdown.await;
            // Readiness checks must not turn a name SERVING again.
            watches.stop().await;
            // Probes see NOT_SERVING while the listeners still serve, so
            // load balancers stop sending new requests before they close.
            for name in every_name {
                health.set(name, false).await;
            }
            tracing::info!(
                ?drain_delay,
                "NOT_SERVING; closing the listeners after the drain delay"
            );
            tokio::time::sleep(drain_delay).await;
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

impl GrpcServer {
    /// Sets the process and the unchecked names SERVING, checks each
    /// readiness once (so a healthy service is SERVING from its first
    /// request on), then keeps checking in the background.
    async fn watch_readiness(&mut self, health: &Health) -> Watches {
        health.set("", true).await;
        let checked: Vec<&str> = self.readiness.iter().flat_map(|(n, _)| n.clone()).collect();
        for name in self.names.iter().filter(|n| !checked.contains(n)) {
            health.set(name, true).await;
        }
        let interval = Duration::from_millis(self.config.readiness_interval_ms.max(1));
        let mut watches = Vec::new();
        for (names, check) in self.readiness.drain(..) {
            let mut watch = ReadinessWatch {
                names,
                check,
                health: health.clone(),
                interval,
                ready: None,
            };
            watch.update().await;
            watches.push(tokio::spawn(watch.run()));
        }
        Watches(watches)
    }
}

/// The running readiness checks, stopped when the server stops for any
/// reason: they hold the services' database pools.
struct Watches(Vec<JoinHandle<()>>);

impl Watches {
    /// Stops every check and waits until none can change a status.
    async fn stop(mut self) {
        for watch in std::mem::take(&mut self.0) {
            watch.abort();
            let _ = watch.await;
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for watch in &self.0 {
            watch.abort();
        }
    }
}

/// Both health reporters: the internal listener's (every service) and the
/// public one's, which knows nothing of the internal services it does not
/// serve.
#[derive(Clone)]
struct Health {
    all: HealthReporter,
    public: HealthReporter,
}

impl Health {
    async fn set(&self, name: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.all.set_service_status(name, status).await;
        if !INTERNAL_SERVICES.contains(&name) {
            self.public.set_service_status(name, status).await;
        }
    }
}

/// One service's names, kept SERVING while its check passes.
struct ReadinessWatch {
    names: Vec<&'static str>,
    check: Arc<dyn Readiness>,
    health: Health,
    interval: Duration,
    ready: Option<bool>,
}

impl ReadinessWatch {
    async fn run(mut self) {
        loop {
            tokio::time::sleep(self.interval).await;
            self.update().await;
        }
    }

    /// Checks once (a check slower than the interval counts as failed)
    /// and reports a change.
    async fn update(&mut self) {
        let result = match tokio::time::timeout(self.interval, self.check.check()).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "the readiness check took longer than {:?}",
                self.interval
            )),
        };
        let ready = result.is_ok();
        if self.ready == Some(ready) {
            return;
        }
        match result {
            Ok(()) => tracing::info!(services = ?self.names, "ready: SERVING"),
            Err(error) => tracing::warn!(
                services = ?self.names,
                error = format!("{error:#}"),
                "not ready: NOT_SERVING"
            ),
        }
        for name in &self.names {
            self.health.set(name, ready).await;
        }
        self.ready = Some(ready);
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
        .layer(crate::metrics::GrpcMetricsLayer)
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
