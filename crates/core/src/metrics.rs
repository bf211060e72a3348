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
use std::time::{Duration, Instant};

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Deserialize;

/// RPCs the server started, by `grpc_service` and `grpc_method`.
pub const GRPC_SERVER_STARTED: &str = "grpc_server_started_total";
/// RPCs the server answered, by `grpc_service`, `grpc_method` and
/// `grpc_code`.
pub const GRPC_SERVER_HANDLED: &str = "grpc_server_handled_total";
/// Seconds from a request's arrival to the end of its response (the
/// status, for a stream after its last message), by `grpc_service` and
/// `grpc_method`.
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
/// Reads of the user registry's user cache by `read`
/// ([`user_cache_read`]) and `result` ([`user_cache_result`]).
pub const USER_CACHE: &str = "roster_user_cache_total";

/// Rows waiting in a transactional outbox, by `service` and `rows`
/// (`event` or `mail`), as its relay last saw them.
pub const OUTBOX_WAITING: &str = "roster_outbox_waiting";

/// Age in seconds of the oldest row waiting in a transactional outbox, by
/// `service` and `rows`, as its relay last saw it; 0 when none waits.
pub const OUTBOX_OLDEST_AGE: &str = "roster_outbox_oldest_age_seconds";

/// Mail delivery attempts by `result`: sent, retry (a temporary failure,
/// tried again later) or failed (given up).
pub const MAIL_DELIVERIES: &str = "roster_mail_deliveries_total";

/// Mails in the invitations service's queue, neither delivered nor given
/// up, by `state`: pending (not failed yet) or retrying (failed at least
/// once, waiting for the next attempt).
pub const MAIL_QUEUE: &str = "roster_mail_queue_waiting";

/// Seconds a password hash or verification waited for a hashing slot and
/// a blocking thread before it started, by `operation` (hash or verify).
pub const PASSWORD_HASH_WAIT: &str = "roster_password_hash_wait_seconds";
/// Seconds a password hash or verification ran, by `operation`.
pub const PASSWORD_HASH: &str = "roster_password_hash_seconds";

/// `NotificationService.Subscribe` streams open now.
pub const NOTIFICATION_STREAMS: &str = "roster_notification_streams_open";

/// Connections of a service's database pool, by `service`, `backend`
/// (postgres or sqlite) and `state` (in_use or idle).
pub const DB_CONNECTIONS: &str = "roster_db_connections";
/// The most connections a service's database pool opens, by `service` and
/// `backend`.
pub const DB_CONNECTIONS_MAX: &str = "roster_db_connections_max";

/// Values of the `result` label of [`MAIL_DELIVERIES`].
pub mod mail_result {
    pub const SENT: &str = "sent";
    pub const RETRY: &str = "retry";
    pub const FAILED: &str = "failed";
}

/// Values of the `read` label of [`USER_CACHE`].
pub mod user_cache_read {
    /// A Get by a user's credential, served from memory unchecked.
    pub const GET: &str = "get";
    /// GetWithStatus or a Get by another service, checked against the row.
    pub const CHECKED: &str = "checked";
}

/// Values of the `result` label of [`USER_CACHE`].
pub mod user_cache_result {
    /// Answered from memory.
    pub const HIT: &str = "hit";
    /// Not cached: read from the database.
    pub const MISS: &str = "miss";
    /// Cached, but the row changed since: read from the database.
    pub const CHANGED: &str = "changed";
}

/// Values of the `outcome` label of [`LOGINS`].
pub mod login_outcome {
    pub const SUCCESS: &str = "success";
    pub const WRONG_PASSWORD: &str = "wrong_password";
    pub const UNKNOWN_USER: &str = "unknown_user";
    pub const THROTTLED: &str = "throttled";
    pub const STATE: &str = "state";
}

/// Values of the `operation` label of [`PASSWORD_HASH_WAIT`] and
/// [`PASSWORD_HASH`].
pub mod password_operation {
    pub const HASH: &str = "hash";
    pub const VERIFY: &str = "verify";
}

/// Buckets of every histogram: from a cached read (a millisecond) to an
/// Argon2 hash under load (seconds).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The histograms; the exporter renders a metric without buckets as a
/// summary, which cannot be aggregated across replicas.
const HISTOGRAMS: [&str; 3] = [
    GRPC_SERVER_HANDLING_SECONDS,
    PASSWORD_HASH_WAIT,
    PASSWORD_HASH,
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

/// Counts a read of the user cache.
pub fn user_cache(read: &'static str, result: &'static str) {
    ::metrics::counter!(USER_CACHE, "read" => read, "result" => result).increment(1);
}

/// Sets how many rows wait in `service`'s outbox of `rows`.
pub fn outbox_waiting(service: &'static str, rows: &'static str, waiting: f64) {
    ::metrics::gauge!(OUTBOX_WAITING, "service" => service, "rows" => rows).set(waiting);
}

/// Sets the age of the oldest row in `service`'s outbox of `rows`.
pub fn outbox_oldest_age(service: &'static str, rows: &'static str, seconds: f64) {
    ::metrics::gauge!(OUTBOX_OLDEST_AGE, "service" => service, "rows" => rows).set(seconds);
}

/// Counts a mail delivery attempt with `result` (one of [`mail_result`]).
pub fn mail_delivery(result: &'static str) {
    ::metrics::counter!(MAIL_DELIVERIES, "result" => result).increment(1);
}

/// Sets how many mails wait in the mail queue: `pending` never tried or
/// not failed yet, `retrying` failed at least once.
pub fn mail_queue(pending: u64, retrying: u64) {
    ::metrics::gauge!(MAIL_QUEUE, "state" => "pending").set(pending as f64);
    ::metrics::gauge!(MAIL_QUEUE, "state" => "retrying").set(retrying as f64);
}

/// Records how long a password `operation` (one of
/// [`password_operation`]) waited before it started.
pub fn password_hash_wait(operation: &'static str, waited: Duration) {
    ::metrics::histogram!(PASSWORD_HASH_WAIT, "operation" => operation)
        .record(waited.as_secs_f64());
}

/// Records how long a password `operation` ran.
pub fn password_hash(operation: &'static str, took: Duration) {
    ::metrics::histogram!(PASSWORD_HASH, "operation" => operation).record(took.as_secs_f64());
}

/// Counts one open notification stream until it is dropped.
#[derive(Debug)]
#[must_use = "the stream counts as open only while this lives"]
pub struct OpenNotificationStream(());

impl OpenNotificationStream {
    /// Counts a stream that just opened.
    pub fn open() -> Self {
        ::metrics::gauge!(NOTIFICATION_STREAMS).increment(1.0);
        Self(())
    }
}

impl Drop for OpenNotificationStream {
    fn drop(&mut self) {
        ::metrics::gauge!(NOTIFICATION_STREAMS).decrement(1.0);
    }
}

/// Sets the connection gauges of `service`'s database pool.
pub fn db_pool(service: &'static str, backend: &'static str, in_use: u32, idle: u32, max: u32) {
    let connections = |state: &'static str| {
        ::metrics::gauge!(
            DB_CONNECTIONS,
            "service" => service,
            "backend" => backend,
            "state" => state
        )
    };
    connections("in_use").set(f64::from(in_use));
    connections("idle").set(f64::from(idle));
    ::metrics::gauge!(DB_CONNECTIONS_MAX, "service" => service, "backend" => backend)
        .set(f64::from(max));
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
    let (recorder, exporter) = with_buckets(PrometheusBuilder::new().with_http_listener(addr))?
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

/// `builder` with the buckets of every histogram.
fn with_buckets(mut builder: PrometheusBuilder) -> anyhow::Result<PrometheusBuilder> {
    for name in HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), SECONDS_BUCKETS)?;
    }
    Ok(builder)
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
        "Time from a request's arrival to the end of its response."
    );
    ::metrics::describe_counter!(LOGINS, "Password logins, by outcome.");
    ::metrics::describe_counter!(LOCKOUTS, "Lockouts after wrong passwords, by scope.");
    ::metrics::describe_counter!(MAIL_DELIVERIES, "Mail delivery attempts, by result.");
    ::metrics::describe_gauge!(OUTBOX_WAITING, "Rows waiting in an outbox.");
    ::metrics::describe_counter!(
        CREDENTIAL_CACHE,
        "Credential lookups, by whether the cache answered."
    );
    ::metrics::describe_counter!(
        USER_CACHE,
        "Reads of the user registry's user cache, by read and result."
    );
    ::metrics::describe_gauge!(
        OUTBOX_OLDEST_AGE,
        ::metrics::Unit::Seconds,
        "Age of the oldest row waiting in an outbox."
    );
    ::metrics::describe_gauge!(MAIL_QUEUE, "Mails waiting for delivery, by state.");
    ::metrics::describe_histogram!(
        PASSWORD_HASH_WAIT,
        ::metrics::Unit::Seconds,
        "Time a password hash or verification waited before it started."
    );
    ::metrics::describe_histogram!(
        PASSWORD_HASH,
        ::metrics::Unit::Seconds,
        "Time a password hash or verification ran."
    );
    ::metrics::describe_gauge!(NOTIFICATION_STREAMS, "Open notification streams.");
    ::metrics::describe_gauge!(DB_CONNECTIONS, "Database pool connections, by state.");
    ::metrics::describe_gauge!(DB_CONNECTIONS_MAX, "Most connections of a database pool.");
}

/// Counts every gRPC call of the services it wraps: started, handled by
/// status code, and handling time.
///
/// It sits outside the routes, so a call to a path no service serves is
/// seen too (and labelled `unknown`). A call counts as started once its
/// response headers are ready, and as handled when its status is known:
/// at once when the headers carry it (tonic's answer to a failed unary
/// call), otherwise when the body ends with its trailers, or as
/// `Canceled` when the body is dropped before them (the client went
/// away). Handling time runs to that same moment, as go-grpc-prometheus
/// measures it: for a stream, to its end.
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
    type Response = http::Response<GrpcMetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call {
            path: request.uri().path().to_owned(),
            start: Instant::now(),
        };
        let future = self.inner.call(request);
        // Nothing is recorded before the response headers, when it is
        // known whether the path names a service and method: the path is
        // the caller's to choose, and one answered UNIMPLEMENTED must not
        // become a series of its own, or a caller could grow the
        // exporter's memory without bound.
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(error) => {
                    // The transport answers a failed service itself;
                    // whatever it sends, the call did not complete
                    // normally.
                    call.answered(tonic::Code::Unknown);
                    return Err(error);
                }
            };
            let call = match header_code(&response) {
                Some(code) => {
                    call.answered(code);
                    None
                }
                None => {
                    call.started(split_path(&call.path));
                    Some(call)
                }
            };
            Ok(response.map(|inner| GrpcMetricsBody { inner, call }))
        })
    }
}

/// A call whose response is not finished yet.
#[derive(Debug)]
struct Call {
    path: String,
    start: Instant,
}

impl Call {
    /// Records a call answered with `code` in its response headers.
    fn answered(self, code: tonic::Code) {
        let labels = labels(&self.path, code);
        self.started(labels);
        self.handled(labels, code);
    }

    fn started(&self, (service, method): (&str, &str)) {
        ::metrics::counter!(
            GRPC_SERVER_STARTED,
            "grpc_service" => service.to_owned(),
            "grpc_method" => method.to_owned()
        )
        .increment(1);
    }

    /// Records the end of a call whose status came after its headers.
    fn ended(self, code: tonic::Code) {
        self.handled(split_path(&self.path), code);
    }

    fn handled(&self, (service, method): (&str, &str), code: tonic::Code) {
        let (service, method) = (service.to_owned(), method.to_owned());
        ::metrics::histogram!(
            GRPC_SERVER_HANDLING_SECONDS,
            "grpc_service" => service.clone(),
            "grpc_method" => method.clone()
        )
        .record(self.start.elapsed().as_secs_f64());
        ::metrics::counter!(
            GRPC_SERVER_HANDLED,
            "grpc_service" => service,
            "grpc_method" => method,
            "grpc_code" => code_name(code)
        )
        .increment(1);
    }
}

/// The response body of [`GrpcMetrics`]: passes every frame through, and
/// records the call's status when the trailers carry it, or `Canceled`
/// when the body is dropped before its end.
#[derive(Debug)]
pub struct GrpcMetricsBody<B> {
    inner: B,
    /// The call still to record; `None` once recorded (or when the
    /// response headers carried the status).
    call: Option<Call>,
}

impl<B> http_body::Body for GrpcMetricsBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Pending => None,
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(trailers_code),
            // An error or an end without trailers: no status was sent.
            Poll::Ready(Some(Err(_)) | None) => Some(tonic::Code::Unknown),
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            call.ended(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for GrpcMetricsBody<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.ended(tonic::Code::Cancelled);
        }
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

/// The status of a response known from its headers alone: the
/// `grpc-status` tonic sends with a failed unary call's headers, or
/// `Unknown` for an HTTP error without one. `None` when the status is yet
/// to come in the trailers.
fn header_code<B>(response: &http::Response<B>) -> Option<tonic::Code> {
    match response.headers().get("grpc-status") {
        Some(value) => Some(parse_code(value)),
        None if response.status() == http::StatusCode::OK => None,
        None => Some(tonic::Code::Unknown),
    }
}

/// The status in a response's trailers; `Unknown` without one.
fn trailers_code(trailers: &http::HeaderMap) -> tonic::Code {
    trailers
        .get("grpc-status")
        .map_or(tonic::Code::Unknown, parse_code)
}

fn parse_code(value: &http::HeaderValue) -> tonic::Code {
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32)
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
            USER_CACHE,
            OUTBOX_WAITING,
            OUTBOX_OLDEST_AGE,
            MAIL_DELIVERIES,
            MAIL_QUEUE,
            PASSWORD_HASH_WAIT,
            PASSWORD_HASH,
            NOTIFICATION_STREAMS,
            DB_CONNECTIONS,
            DB_CONNECTIONS_MAX,
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
    fn headers_carry_the_code_of_a_failed_unary_call_only() {
        let with = |status: u16, grpc: Option<&str>| {
            let mut builder = http::Response::builder().status(status);
            if let Some(grpc) = grpc {
                builder = builder.header("grpc-status", grpc);
            }
            header_code(&builder.body(()).unwrap()).map(code_name)
        };
        assert_eq!(with(200, Some("5")), Some("NotFound"));
        assert_eq!(with(200, Some("16")), Some("Unauthenticated"));
        assert_eq!(with(200, Some("junk")), Some("Unknown"));
        assert_eq!(with(503, None), Some("Unknown"));
        // The status follows in the trailers.
        assert_eq!(with(200, None), None);
    }

    use std::collections::VecDeque;
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body::{Body as _, Frame};

    /// A response body of fixed frames.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    /// Answers every call with one prepared response.
    struct Answer(Option<http::Response<Frames>>);

    impl tower::Service<http::Request<()>> for Answer {
        type Response = http::Response<Frames>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(self.0.take().expect("one call")))
        }
    }

    /// A streaming response: headers without a status, `messages` data
    /// frames, then trailers with `grpc_status` (none when `None`).
    fn stream(messages: usize, grpc_status: Option<&str>) -> http::Response<Frames> {
        let mut frames: VecDeque<_> = (0..messages)
            .map(|_| Frame::data(Bytes::from_static(b"\0\0\0\0\0")))
            .collect();
        if let Some(status) = grpc_status {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", status.parse().unwrap());
            frames.push_back(Frame::trailers(trailers));
        }
        http::Response::new(Frames(frames))
    }

    /// Calls `/roster.v1.NotificationService/Subscribe` through the layer,
    /// answered with `response`, reads `frames` frames of the body (all
    /// when `None`) and drops it; returns what the exporter then shows.
    fn served(response: http::Response<Frames>, frames: Option<usize>) -> String {
        let recorder = with_buckets(PrometheusBuilder::new())
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            use tower::{Layer as _, Service as _};
            let mut service = GrpcMetricsLayer.layer(Answer(Some(response)));
            let request = http::Request::builder()
                .uri("/roster.v1.NotificationService/Subscribe")
                .body(())
                .unwrap();
            let response = futures::executor::block_on(service.call(request)).unwrap();
            let mut body = std::pin::pin!(response.into_body());
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut read = 0;
            while frames.is_none_or(|n| read < n) {
                match body.as_mut().poll_frame(&mut cx) {
                    Poll::Ready(Some(_)) => read += 1,
                    Poll::Ready(None) => break,
                    Poll::Pending => unreachable!("the frames are all ready"),
                }
            }
        });
        handle.render()
    }

    const SUBSCRIBE: &str =
        "grpc_service=\"roster.v1.NotificationService\",grpc_method=\"Subscribe\"";

    fn handled(rendered: &str, code: &str) -> bool {
        rendered.lines().any(|line| {
            line == format!("{GRPC_SERVER_HANDLED}{{{SUBSCRIBE},grpc_code=\"{code}\"}} 1")
        })
    }

    #[test]
    fn a_stream_that_fails_after_its_first_message_counts_with_the_code_of_its_trailers() {
        let rendered = served(stream(2, Some("7")), None);
        assert!(handled(&rendered, "PermissionDenied"), "{rendered}");
        assert!(!handled(&rendered, "OK"), "{rendered}");
        assert!(
            rendered.contains(&format!("{GRPC_SERVER_STARTED}{{{SUBSCRIBE}}} 1")),
            "{rendered}"
        );
        assert!(
            rendered.contains(&format!(
                "{GRPC_SERVER_HANDLING_SECONDS}_count{{{SUBSCRIBE}}} 1"
            )),
            "{rendered}"
        );
    }

    #[test]
    fn a_stream_that_ends_well_counts_ok() {
        let rendered = served(stream(3, Some("0")), None);
        assert!(handled(&rendered, "OK"), "{rendered}");
    }

    #[test]
    fn a_stream_dropped_before_its_trailers_counts_canceled() {
        // The client went away after the first message.
        let rendered = served(stream(3, Some("0")), Some(1));
        assert!(handled(&rendered, "Canceled"), "{rendered}");
        assert!(!handled(&rendered, "OK"), "{rendered}");
    }

    #[test]
    fn a_stream_ending_without_a_status_counts_unknown() {
        let rendered = served(stream(1, None), None);
        assert!(handled(&rendered, "Unknown"), "{rendered}");
    }

    #[test]
    fn a_status_in_the_headers_counts_at_once_and_once() {
        let mut response = stream(0, None);
        response
            .headers_mut()
            .insert("grpc-status", "16".parse().unwrap());
        // Dropping the body unread adds no Canceled.
        let rendered = served(response, Some(0));
        assert!(handled(&rendered, "Unauthenticated"), "{rendered}");
        assert!(!rendered.contains("Canceled"), "{rendered}");
    }
}
