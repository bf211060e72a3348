//! Prometheus metrics: the `[metrics]` setting, the exporter that serves
//! them, the names of every series Roster records, and the tower layer
//! that counts every gRPC call the [`GrpcServer`](crate::server::GrpcServer)
//! serves.
//!
//! Code records through the `metrics` facade; when `metrics.listen` is
//! empty no recorder is installed and recording costs next to nothing.
//! The names live here, so a dashboard and the code cannot drift apart
//! one call site at a time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Deserialize;

/// RPCs the server started, by `grpc_service` and `grpc_method`.
pub const GRPC_SERVER_STARTED: &str = "grpc_server_started_total";
/// RPCs the server answered, by `grpc_service`, `grpc_method` and
/// `grpc_code`.
pub const GRPC_SERVER_HANDLED: &str = "grpc_server_handled_total";
/// Seconds from a request's arrival to its response headers, by
/// `grpc_service` and `grpc_method`.
pub const GRPC_SERVER_HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
/// Password logins by `outcome`: success, wrong_password, unknown_user,
/// throttled (the account is locked for this client), state (the account
/// may not log in).
pub const LOGINS: &str = "roster_logins_total";

/// Accounts (`scope="account"`) or single clients (`scope="client"`)
/// locked out after wrong passwords.
pub const LOCKOUTS: &str = "roster_lockouts_total";
/// Credential lookups by `result`: hit (answered from this process's
/// cache) or miss (asked the access service, alone or with concurrent
/// requests for the same credential).
pub const CREDENTIAL_CACHE: &str = "roster_credential_cache_total";

/// Rows waiting in a transactional outbox, by `service` and `rows`
/// (`event` or `mail`), as its relay last saw them.
pub const OUTBOX_WAITING: &str = "roster_outbox_waiting";

/// Mail delivery attempts by `result`: sent, retry (a temporary failure,
/// tried again later) or failed (given up).
pub const MAIL_DELIVERIES: &str = "roster_mail_deliveries_total";

/// Values of the `result` label of [`MAIL_DELIVERIES`].
pub mod mail_result {
    pub const SENT: &str = "sent";
    pub const RETRY: &str = "retry";
    pub const FAILED: &str = "failed";
}

/// Values of the `outcome` label of [`LOGINS`].
pub mod login_outcome {
    pub const SUCCESS: &str = "success";
    pub const WRONG_PASSWORD: &str = "wrong_password";
    pub const UNKNOWN_USER: &str = "unknown_user";
    pub const THROTTLED: &str = "throttled";
    pub const STATE: &str = "state";
}

/// Buckets of [`GRPC_SERVER_HANDLING_SECONDS`]: from a cached read (a
/// millisecond) to an Argon2 hash under load (seconds).
const HANDLING_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `[metrics]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where Prometheus scrapes `GET /metrics` (`host:port`); empty: no
    /// metrics.
    pub listen: String,
}

/// Counts a password login with `outcome` (one of [`login_outcome`]).
pub fn login(outcome: &'static str) {
    ::metrics::counter!(LOGINS, "outcome" => outcome).increment(1);
}

/// Counts a lockout: of the whole account, or of one client only.
pub fn lockout(whole_account: bool) {
    let scope = if whole_account { "account" } else { "client" };
    ::metrics::counter!(LOCKOUTS, "scope" => scope).increment(1);
}

/// Counts a credential lookup answered from the cache (`hit`) or not.
pub fn credential_cache(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    ::metrics::counter!(CREDENTIAL_CACHE, "result" => result).increment(1);
}

/// Sets how many rows wait in `service`'s outbox of `rows`.
pub fn outbox_waiting(service: &'static str, rows: &'static str, waiting: f64) {
    ::metrics::gauge!(OUTBOX_WAITING, "service" => service, "rows" => rows).set(waiting);
}

/// Counts a mail delivery attempt with `result` (one of [`mail_result`]).
pub fn mail_delivery(result: &'static str) {
    ::metrics::counter!(MAIL_DELIVERIES, "result" => result).increment(1);
}

/// Installs the Prometheus recorder and serves it on `config.listen`,
/// until the runtime stops. Does nothing when `listen` is empty. Must run
/// inside the Tokio runtime, once per process.
pub fn install(config: &MetricsConfig) -> anyhow::Result<()> {
    if config.listen.is_empty() {
        return Ok(());
    }
    let addr: std::net::SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("metrics.listen {:?} is not host:port", config.listen))?;
    // `build` binds the listener, so a taken port fails startup here.
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(GRPC_SERVER_HANDLING_SECONDS.into()),
            HANDLING_BUCKETS,
        )?
        .build()
        .with_context(|| format!("serving metrics on {addr}"))?;
    ::metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    describe();
    tokio::spawn(async move {
        if let Err(error) = exporter.await {
            tracing::error!(?error, "the metrics listener stopped");
        }
    });
    tracing::info!(%addr, "serving metrics");
    Ok(())
}

fn describe() {
    ::metrics::describe_counter!(GRPC_SERVER_STARTED, "RPCs started on the server.");
    ::metrics::describe_counter!(
        GRPC_SERVER_HANDLED,
        "RPCs completed on the server, by status code."
    );
    ::metrics::describe_histogram!(
        GRPC_SERVER_HANDLING_SECONDS,
        ::metrics::Unit::Seconds,
        "Time from a request's arrival to its response headers."
    );
    ::metrics::describe_counter!(LOGINS, "Password logins, by outcome.");
    ::metrics::describe_counter!(LOCKOUTS, "Lockouts after wrong passwords, by scope.");
    ::metrics::describe_counter!(MAIL_DELIVERIES, "Mail delivery attempts, by result.");
    ::metrics::describe_gauge!(OUTBOX_WAITING, "Rows waiting in an outbox.");
    ::metrics::describe_counter!(
        CREDENTIAL_CACHE,
        "Credential lookups, by whether the cache answered."
    );
}

/// Counts every gRPC call of the services it wraps: started, handled by
/// status code, and handling time.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let start = Instant::now();
        let future = self.inner.call(request);
        // Everything is recorded once the call is answered, when its code
        // is known: the path is the caller's to choose, and a path that
        // names no service or method (answered UNIMPLEMENTED) must not
        // become a series of its own, or a caller could grow the
        // exporter's memory without bound.
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => response_code(response),
                // The transport answers a failed service itself; whatever
                // it sends, the call did not complete normally.
                Err(_) => tonic::Code::Unknown,
            };
            let (service, method) = labels(&path, code);
            let (service, method) = (service.to_owned(), method.to_owned());
            ::metrics::counter!(
                GRPC_SERVER_STARTED,
                "grpc_service" => service.clone(),
                "grpc_method" => method.clone()
            )
            .increment(1);
            ::metrics::histogram!(
                GRPC_SERVER_HANDLING_SECONDS,
                "grpc_service" => service.clone(),
                "grpc_method" => method.clone()
            )
            .record(start.elapsed().as_secs_f64());
            ::metrics::counter!(
                GRPC_SERVER_HANDLED,
                "grpc_service" => service,
                "grpc_method" => method,
                "grpc_code" => code_name(code)
            )
            .increment(1);
            result
        })
    }
}

/// The labels of a call to `path` answered with `code`: its service and
/// method, or `unknown` for both when the server knew neither.
fn labels(path: &str, code: tonic::Code) -> (&str, &str) {
    if code == tonic::Code::Unimplemented {
        ("unknown", "unknown")
    } else {
        split_path(path)
    }
}

/// `/roster.v1.UserRegistry/Create` → (`roster.v1.UserRegistry`, `Create`).
fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// The status of a response, read from its headers. tonic answers a
/// failed unary call with a headers-only response carrying `grpc-status`;
/// a successful one carries it in the trailers, after the body. Reading
/// the trailers would mean wrapping every response body, so a response
/// without `grpc-status` in its headers counts as OK when its HTTP status
/// is 200: a streaming call that fails after its first message counts as
/// OK.
fn response_code<B>(response: &http::Response<B>) -> tonic::Code {
    match response.headers().get("grpc-status") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .map_or(tonic::Code::Unknown, tonic::Code::from_i32),
        None if response.status() == http::StatusCode::OK => tonic::Code::Ok,
        None => tonic::Code::Unknown,
    }
}

/// The code names go-grpc-prometheus uses, which dashboards expect.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_path_the_server_does_not_serve_becomes_no_series_of_its_own() {
        assert_eq!(
            labels("/roster.v1.UserRegistry/Create", tonic::Code::Ok),
            ("roster.v1.UserRegistry", "Create")
        );
        assert_eq!(
            labels("/made.up.Service/Anything", tonic::Code::Unimplemented),
            ("unknown", "unknown")
        );
    }

    use super::*;

    /// The Grafana dashboard shipped in `deploy/` parses and charts every
    /// series Roster exports.
    #[test]
    fn the_dashboard_charts_every_series() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../deploy/grafana-dashboard.json"))
                .expect("the dashboard is JSON");
        let exprs: Vec<&str> = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|panel| panel["targets"].as_array().expect("targets"))
            .map(|target| target["expr"].as_str().expect("expr"))
            .collect();
        for name in [
            GRPC_SERVER_HANDLED,
            GRPC_SERVER_HANDLING_SECONDS,
            LOGINS,
            LOCKOUTS,
            CREDENTIAL_CACHE,
            OUTBOX_WAITING,
            MAIL_DELIVERIES,
        ] {
            assert!(
                exprs.iter().any(|expr| expr.contains(name)),
                "no panel charts {name}"
            );
        }
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/roster.v1.UserRegistry/Create"),
            ("roster.v1.UserRegistry", "Create")
        );
        assert_eq!(split_path("/odd"), ("odd", ""));
    }

    #[test]
    fn codes_come_from_grpc_status_or_a_plain_200() {
        let with = |status: u16, grpc: Option<&str>| {
            let mut builder = http::Response::builder().status(status);
            if let Some(grpc) = grpc {
                builder = builder.header("grpc-status", grpc);
            }
            code_name(response_code(&builder.body(()).unwrap()))
        };
        assert_eq!(with(200, Some("5")), "NotFound");
        assert_eq!(with(200, Some("16")), "Unauthenticated");
        assert_eq!(with(200, None), "OK");
        assert_eq!(with(503, None), "Unknown");
        assert_eq!(with(200, Some("junk")), "Unknown");
    }
}
