//! `roster-load`: Roster measured from outside, as its users see it.
//!
//! It starts `rosterd` as its own processes (release build) — `start all`
//! on PostgreSQL + JetStream with the credential cache on, a second one on
//! the same database with the cache off, and a third on the embedded
//! default (SQLite, in-process events) — and `roster-echo`, a bare tonic
//! unary server, the gRPC ceiling of the machine. It seeds the users table
//! with SQL, lets `rosterd` bootstrap an admin with an API key, logs the
//! admin in for a session token, writes each request as a gRPC body (the
//! 5-byte frame prefix and the protobuf bytes) into a file, and drives
//! every target with h2load (`-d body`, `content-type: application/grpc`,
//! `te: trailers`). Throughput comes from h2load's summary, p50 and p99
//! from its `--log-file`, and every target is shown against the echo
//! measured in the same run (Login against the raw Argon2id rate measured
//! here, on the same cores, with the production parameters).
//!
//! h2load only sees HTTP 200, which a gRPC error is too, so before and
//! after each run `rosterd`'s `grpc_server_handled_total` of the method is
//! read: the run fails unless its OK count grew by exactly the requests
//! h2load completed and no other code grew.

mod events;
mod grpc;
mod h2load;
mod metrics;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use roster_core::events::{EventsConfig, NatsBus};
use roster_core::password::{PasswordConfig, PasswordHasher};
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    AuthInfoRequest, GetUserRequest, ListUsersRequest, LoginRequest, SearchUsersRequest,
    UserIdentifiers,
};
use roster_test_support::{TestDb, TestNats};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[allow(dead_code)]
#[path = "../../seed.rs"]
mod seed;

#[derive(Parser, Debug)]
#[command(
    name = "roster-load",
    about = "Measure rosterd from outside with h2load, against a bare tonic echo server"
)]
struct Args {
    /// The rosterd binary; default: beside this one.
    #[arg(long)]
    rosterd: Option<PathBuf>,
    /// The echo server binary; default: beside this one.
    #[arg(long)]
    echo: Option<PathBuf>,
    /// Users seeded into the PostgreSQL deployment.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    users: u64,
    /// Requests per run of the echo, Get and AuthInfo.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Requests per run of List (a page of 100).
    #[arg(long, default_value_t = 2_000)]
    list_requests: u64,
    /// Requests per run of SearchUsers.
    #[arg(long, default_value_t = 2_000)]
    search_requests: u64,
    /// Logins per run (each one Argon2id verification); 0 skips Login.
    #[arg(long, default_value_t = 200)]
    logins: u64,
    /// Seconds of raw Argon2id verification to measure the hashing rate.
    #[arg(long, default_value_t = 5)]
    raw_hash_seconds: u64,
    /// h2load connections (`-c`).
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Streams in flight per connection (`-m`).
    #[arg(long, default_value_t = 16)]
    streams: u32,
    /// Runs of each target; the table shows every run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    runs: u32,
    /// Only these targets (comma-separated names from the table's first
    /// column, e.g. `echo,get-pg`); default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Open `Subscribe` streams of one user for the fan-out measurement;
    /// 0 skips it.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=1000))]
    fanout_streams: u64,
    /// Notifications sent to every stream in the fan-out measurement.
    #[arg(long, default_value_t = 5)]
    fanout_rounds: u64,
    /// Changes timed from commit to their event in this process; 0 skips it.
    #[arg(long, default_value_t = 200)]
    event_samples: u64,
    /// Events committed at once to time the outbox relay; 0 skips it.
    #[arg(long, default_value_t = 20_000)]
    relay_events: u64,
    /// Keep the work directory (bodies, h2load logs, rosterd logs).
    #[arg(long)]
    keep: bool,
}

const ADMIN: &str = "load-admin";
const ADMIN_PASSWORD: &str = "Outside-Measure-Passw0rd";
const CLUSTER_KEY: &str = "roster-load-cluster-key-at-least-32-bytes";
const TOKEN_HASH_KEY: &str = "roster-load-token-hash-key";

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A child process, killed when dropped.
struct Process {
    name: &'static str,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(name))
}

/// A `rosterd start all` with its gRPC and metrics addresses.
struct Rosterd {
    process: Process,
    log: PathBuf,
    addr: String,
    metrics: String,
}

fn start_rosterd(
    name: &'static str,
    binary: &Path,
    dir: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<Rosterd> {
    std::fs::create_dir_all(dir)?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let log_path = dir.join("rosterd.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(binary)
        .args(["start", "all"])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("ROSTER__LISTEN", &addr)
        .env("ROSTER__METRICS__LISTEN", &metrics)
        .env("ROSTER__CLUSTER__KEYS", CLUSTER_KEY)
        // Every login below comes from one address with one password.
        .env("ROSTER__SESSIONS__LOGIN_RATE_LIMIT__MAX_ATTEMPTS", "0")
        .env("ROSTER__USER_REGISTRY__LOCKOUT__MAX_FAILURES", "0")
        .env(
            "ROSTER__USER_REGISTRY__LOCKOUT__MAX_FAILURES_PER_CLIENT",
            "0",
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Rosterd {
        process: Process { name, child },
        log: log_path,
        addr,
        metrics,
    })
}

fn bootstrap_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("ROSTER__BOOTSTRAP__ADMIN_USER_ID", ADMIN.into()),
        ("ROSTER__BOOTSTRAP__ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        (
            "ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE",
            dir.join("admin-api-key").display().to_string(),
        ),
    ]
}

/// Waits until `rosterd` answers a Get of the admin with `token` (read
/// from the bootstrap's key file when `None`), and returns the token.
async fn wait_serving(
    rosterd: &mut Rosterd,
    key_file: &Path,
    token: Option<&str>,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Err(err) = rosterd.process.check_alive() {
            return Err(err.context(log_tail(&rosterd.log)));
        }
        let token = match token {
            Some(token) => Some(token.to_owned()),
            None => std::fs::read_to_string(key_file)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        };
        if let Some(token) = token
            && let Ok(channel) =
                tonic::transport::Endpoint::from_shared(format!("http://{}", rosterd.addr))?
                    .connect()
                    .await
        {
            let mut request = tonic::Request::new(get_request(ADMIN));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
            if UserRegistryClient::new(channel).get(request).await.is_ok() {
                return Ok(token);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "{} did not serve within 120 s; its log ends:\n{}",
            rosterd.process.name,
            log_tail(&rosterd.log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last lines `rosterd` logged.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn get_request(user_id: &str) -> GetUserRequest {
    GetUserRequest {
        user_ids: Some(UserIdentifiers {
            user_id: user_id.into(),
            email: String::new(),
        }),
        field_mask: None,
    }
}

/// One thing h2load drives.
#[derive(Clone)]
struct Target {
    name: &'static str,
    what: String,
    addr: String,
    /// `(metrics address, service, method)` to check the answers; `None`
    /// for the echo, which counts nothing.
    check: Option<(String, &'static str, &'static str)>,
    path: &'static str,
    body: PathBuf,
    headers: Vec<String>,
    requests: u64,
    connections: u32,
    streams: u32,
    /// Compared with the raw hashing rate, not the echo.
    vs_hashing: bool,
    /// Driven while another h2load keeps logins saturating the hashing
    /// pool.
    during_logins: bool,
}

/// One run of a target.
struct Measured {
    run: u32,
    name: &'static str,
    what: String,
    in_flight: u32,
    requests: u64,
    rate: f64,
    p50: Duration,
    p99: Duration,
    vs_hashing: bool,
}

fn h2load_command(target: &Target, requests: u64, log: &Path) -> Command {
    let mut command = Command::new("h2load");
    command
        .arg(format!("-c{}", target.connections))
        .arg(format!("-m{}", target.streams))
        .arg("-t1")
        .arg(format!("-n{requests}"))
        .args(["--header", "content-type: application/grpc"])
        .args(["--header", "te: trailers"]);
    for header in &target.headers {
        command.args(["--header", header]);
    }
    command
        .arg("-d")
        .arg(&target.body)
        .arg(format!("--log-file={}", log.display()))
        .arg(format!("http://{}{}", target.addr, target.path));
    command
}

/// The command as the docs show it, credentials elided.
fn shown(target: &Target) -> String {
    let mut line = format!(
        "h2load -c{} -m{} -t1 -n{} --header 'content-type: application/grpc' --header 'te: trailers'",
        target.connections, target.streams, target.requests
    );
    for header in &target.headers {
        let (name, _) = header.split_once(':').unwrap_or((header, ""));
        let _ = write!(line, " --header '{name}: …'");
    }
    let _ = write!(
        line,
        " -d {} --log-file=… http://{}{}",
        target
            .body
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        target.addr,
        target.path
    );
    line
}

/// Runs h2load once (after a warm-up of a tenth of the requests) and
/// checks every answer.
fn measure(target: &Target, dir: &Path, run: u32) -> anyhow::Result<Measured> {
    // The method's counts. A credential resolution reads its user with
    // `UserLifecycle.GetWithStatus`, so it adds nothing to a `Get`'s.
    let counts =
        |page: &str, (service, method): (&str, &str)| metrics::handled(page, service, method);
    let before = match &target.check {
        Some((addr, service, method)) => Some(counts(&metrics::scrape(addr)?, (service, method))),
        None => None,
    };
    let warmup = (target.requests / 10).max(u64::from(target.connections));
    let mut completed = 0;
    for (requests, measured) in [(warmup, false), (target.requests, true)] {
        let log = dir.join(format!("{}-{run}-{measured}.log", target.name));
        let output = h2load_command(target, requests, &log)
            .stdin(Stdio::null())
            .output()
            .context("running h2load")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "h2load failed on {}: {}{}",
            target.name,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = h2load::parse_summary(&stdout)
            .with_context(|| format!("reading h2load's summary:\n{stdout}"))?;
        ensure!(
            summary.failed == 0
                && summary.errored == 0
                && summary.timeout == 0
                && summary.status_2xx == requests
                && summary.succeeded == requests,
            "{}: h2load saw failures: {summary:?}",
            target.name
        );
        completed += summary.done;
        if !measured {
            continue;
        }
        let latencies = h2load::read_log(&log)?;
        ensure!(
            latencies.other == 0 && latencies.ok.len() as u64 == requests,
            "{}: the log has {} answers with HTTP 200 and {} others, for {requests} requests",
            target.name,
            latencies.ok.len(),
            latencies.other
        );
        if let (Some(before), Some((addr, service, method))) = (&before, &target.check) {
            let after = counts(&metrics::scrape(addr)?, (service, method));
            metrics::check_all_ok(before, &after, completed).with_context(|| {
                format!(
                    "{}: checking grpc-status ({completed} requests)",
                    target.name
                )
            })?;
        }
        return Ok(Measured {
            run,
            name: target.name,
            what: target.what.clone(),
            in_flight: target.connections * target.streams,
            requests,
            rate: summary.requests_per_second,
            p50: latencies.percentile(50.0).unwrap_or_default(),
            p99: latencies.percentile(99.0).unwrap_or_default(),
            vs_hashing: target.vs_hashing,
        });
    }
    unreachable!("the loop returns on its measured run")
}

/// Argon2id verifications per second with the production parameters, on
/// as many concurrent verifications as the hasher allows (one per core).
async fn raw_hash_rate(seconds: u64) -> anyhow::Result<(f64, usize)> {
    let config = PasswordConfig::default();
    let hasher = PasswordHasher::new(&config)?;
    let stored = hasher.hash(ADMIN_PASSWORD).await?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..threads {
        let hasher = hasher.clone();
        let stored = stored.clone();
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let ok = hasher.verify(ADMIN_PASSWORD, Some(&stored)).await?;
                anyhow::ensure!(ok, "the password did not verify");
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        threads,
    ))
}

fn write_body(dir: &Path, name: &str, message: &impl prost::Message) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.bin"));
    std::fs::write(&path, grpc::frame(message))?;
    Ok(path)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let rosterd_bin = match &args.rosterd {
        Some(path) => path.clone(),
        None => sibling("rosterd")?,
    };
    let echo_bin = match &args.echo {
        Some(path) => path.clone(),
        None => sibling("roster-echo")?,
    };
    // Absolute: rosterd runs in a directory of its own.
    let rosterd_bin = std::fs::canonicalize(&rosterd_bin)
        .with_context(|| format!("{} does not exist", rosterd_bin.display()))?;
    let echo_bin = std::fs::canonicalize(&echo_bin)
        .with_context(|| format!("{} does not exist", echo_bin.display()))?;
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);

    let work = tempfile::Builder::new().prefix("roster-load-").tempdir()?;
    // Kept: removed by nobody, failed runs included.
    let (dir, work) = if args.keep {
        (work.keep(), None)
    } else {
        (work.path().to_path_buf(), Some(work))
    };
    eprintln!("work directory: {}", dir.display());

    // The ceiling.
    let echo_addr = format!("127.0.0.1:{}", free_port()?);
    let mut echo = Process {
        name: "roster-echo",
        child: Command::new(&echo_bin)
            .arg(&echo_addr)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", echo_bin.display()))?,
    };

    // PostgreSQL + JetStream, credential cache on.
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let shared_env = vec![
        ("ROSTER__DATABASE__URL", db.url.clone()),
        (
            "ROSTER__NOTIFICATIONS__MAX_STREAMS_PER_USER",
            args.fanout_streams.max(1).to_string(),
        ),
        ("ROSTER__AUTH__TOKEN_HASH_KEY", TOKEN_HASH_KEY.to_owned()),
        (
            "ROSTER__EVENTS__NATS_URL",
            nats.config.nats_url.expose().to_string(),
        ),
        ("ROSTER__EVENTS__STREAM", nats.config.stream.clone()),
        (
            "ROSTER__EVENTS__SUBJECT_PREFIX",
            nats.config.subject_prefix.clone(),
        ),
    ];
    let pg_dir = dir.join("postgres");
    let mut env = shared_env.clone();
    env.extend(bootstrap_env(&pg_dir));
    let mut pg = start_rosterd("rosterd (PostgreSQL)", &rosterd_bin, &pg_dir, &env)?;
    let api_key = wait_serving(&mut pg, &pg_dir.join("admin-api-key"), None).await?;
    eprintln!("rosterd on PostgreSQL + JetStream serves at {}", pg.addr);

    // Seed.
    let options = PgConnectOptions::from_str(&db.url)?.options([("search_path", "user_registry")]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await?;
    let seed_hash = PasswordHasher::new(&PasswordConfig::default())?
        .hash(seed::SEED_PASSWORD)
        .await?;
    let seeded = seed::Seeded::new(args.users);
    let times = seed::seed(&pool, seeded, &seed_hash).await?;
    eprintln!(
        "seeded {} users in {:.1} s (vacuum {:.1} s)",
        args.users,
        times.insert.as_secs_f64(),
        times.vacuum.as_secs_f64()
    );
    pool.close().await;

    // The admin's session token.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", pg.addr))?
        .connect()
        .await?;
    let session = AuthenticationClient::new(channel)
        .login(LoginRequest {
            user_ids: Some(UserIdentifiers {
                user_id: ADMIN.into(),
                email: String::new(),
            }),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .context("logging the admin in")?
        .into_inner()
        .token;

    // The same deployment with the credential cache off.
    let mut env = shared_env.clone();
    env.push(("ROSTER__AUTH__CACHE_TTL_MS", "0".into()));
    let mut uncached = start_rosterd(
        "rosterd (PostgreSQL, no credential cache)",
        &rosterd_bin,
        &dir.join("postgres-uncached"),
        &env,
    )?;
    wait_serving(&mut uncached, Path::new(""), Some(&api_key)).await?;

    // The embedded default.
    let sqlite_dir = dir.join("sqlite");
    let mut sqlite = start_rosterd(
        "rosterd (SQLite)",
        &rosterd_bin,
        &sqlite_dir,
        &bootstrap_env(&sqlite_dir),
    )?;
    let sqlite_key = wait_serving(&mut sqlite, &sqlite_dir.join("admin-api-key"), None).await?;

    // The bodies.
    let bodies = dir.join("bodies");
    std::fs::create_dir_all(&bodies)?;
    let echo_body = write_body(
        &bodies,
        "echo",
        &grpc::Echo {
            payload: b"user-000042".to_vec(),
        },
    )?;
    let get_body = write_body(&bodies, "get", &get_request(&seeded.user_id(42)))?;
    let get_admin_body = write_body(&bodies, "get-admin", &get_request(ADMIN))?;
    let list_body = write_body(
        &bodies,
        "list",
        &ListUsersRequest {
            limit: 100,
            ..Default::default()
        },
    )?;
    let search_body = write_body(
        &bodies,
        "search",
        &SearchUsersRequest {
            query: "4242".into(),
            limit: 20,
            ..Default::default()
        },
    )?;
    let auth_info_body = write_body(
        &bodies,
        "auth-info",
        &AuthInfoRequest {
            token: api_key.clone(),
        },
    )?;
    let login_body = write_body(
        &bodies,
        "login",
        &LoginRequest {
            user_ids: Some(UserIdentifiers {
                user_id: seeded.user_id(7),
                email: String::new(),
            }),
            password: seed::SEED_PASSWORD.into(),
        },
    )?;

    let bearer = |token: &str| vec![format!("authorization: Bearer {token}")];
    let read =
        |name, what: String, rosterd: &Rosterd, service, method, path, body, headers| Target {
            name,
            what,
            addr: rosterd.addr.clone(),
            check: Some((rosterd.metrics.clone(), service, method)),
            path,
            body,
            headers,
            requests: args.requests,
            connections: args.connections,
            streams: args.streams,
            vs_hashing: false,
            during_logins: false,
        };
    const UR: &str = "roster.v1.UserRegistry";
    let mut targets = vec![
        Target {
            name: "echo",
            what: "bare tonic unary echo (the ceiling)".into(),
            addr: echo_addr.clone(),
            check: None,
            path: "/roster.bench.Echo/Echo",
            body: echo_body,
            headers: vec![],
            requests: args.requests,
            connections: args.connections,
            streams: args.streams,
            vs_hashing: false,
            during_logins: false,
        },
        read(
            "get-pg",
            "Get, API key, cached, PostgreSQL + JetStream".into(),
            &pg,
            UR,
            "Get",
            "/roster.v1.UserRegistry/Get",
            get_body.clone(),
            bearer(&api_key),
        ),
        read(
            "get-pg-uncached",
            "Get, API key, credential cache off".into(),
            &uncached,
            UR,
            "Get",
            "/roster.v1.UserRegistry/Get",
            get_body.clone(),
            bearer(&api_key),
        ),
        read(
            "get-sqlite",
            "Get, API key, cached, embedded default (SQLite)".into(),
            &sqlite,
            UR,
            "Get",
            "/roster.v1.UserRegistry/Get",
            get_admin_body,
            bearer(&sqlite_key),
        ),
        read(
            "get-session",
            "Get, session token, cached, PostgreSQL".into(),
            &pg,
            UR,
            "Get",
            "/roster.v1.UserRegistry/Get",
            get_body,
            bearer(&session),
        ),
        Target {
            requests: args.list_requests,
            ..read(
                "list",
                "List, page of 100, PostgreSQL".into(),
                &pg,
                UR,
                "List",
                "/roster.v1.UserRegistry/List",
                list_body,
                bearer(&api_key),
            )
        },
        read(
            "auth-info",
            "EntityAccess.AuthInfo of the API key (cluster key)".into(),
            &pg,
            "roster.v1.EntityAccess",
            "AuthInfo",
            "/roster.v1.EntityAccess/AuthInfo",
            auth_info_body,
            vec![format!("x-roster-cluster-key: {CLUSTER_KEY}")],
        ),
    ];
    let mut search = read(
        "search",
        format!("SearchUsers `4242`, 20 a page, {} users", args.users),
        &pg,
        "roster.v1.EntityRegistrySearch",
        "SearchUsers",
        "/roster.v1.EntityRegistrySearch/SearchUsers",
        search_body,
        bearer(&api_key),
    );
    search.requests = args.search_requests;
    targets.push(search);
    let login = Target {
        name: "login",
        what: "Authentication.Login (4 × 4 in flight)".into(),
        addr: pg.addr.clone(),
        check: Some((pg.metrics.clone(), "roster.v1.Authentication", "Login")),
        path: "/roster.v1.Authentication/Login",
        body: login_body,
        headers: vec![],
        requests: args.logins,
        connections: 4,
        streams: 4,
        vs_hashing: true,
        during_logins: false,
    };
    if args.logins > 0 {
        targets.push(login.clone());
        let get_pg = targets
            .iter()
            .find(|t| t.name == "get-pg")
            .expect("the get-pg target");
        targets.push(Target {
            name: "get-during-logins",
            what: "Get, API key, cached, PostgreSQL, while 4 × 4 logins run".into(),
            during_logins: true,
            ..get_pg.clone()
        });
    }
    targets.retain(|t| wanted(t.name));

    let logs = dir.join("h2load");
    std::fs::create_dir_all(&logs)?;
    let mut rows = Vec::new();
    for run in 1..=args.runs {
        for target in &targets {
            for process in [&mut pg.process, &mut uncached.process, &mut sqlite.process] {
                process.check_alive()?;
            }
            echo.check_alive()?;
            eprintln!("run {run}: {}", target.name);
            // Logins that outlast the measurement, killed after it.
            let background = if target.during_logins {
                let log = logs.join(format!("logins-{run}.log"));
                let child = h2load_command(&login, 1_000_000, &log)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting the background logins")?;
                // Until the hashing pool is busy.
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some(Process {
                    name: "h2load (logins)",
                    child,
                })
            } else {
                None
            };
            let mut measured = measure(target, &logs, run)?;
            if let Some(mut background) = background {
                background
                    .check_alive()
                    .context("the logins ended before the measurement did")?;
                measured.what.push_str(" (background logins running)");
            }
            rows.push(measured);
        }
    }
    let event_rows = measure_events(&args, &wanted, &pg, &api_key, &nats, &db.url).await?;
    let hashing = if args.logins > 0 && wanted("login") {
        Some(raw_hash_rate(args.raw_hash_seconds).await?)
    } else {
        None
    };

    print_report(&args, &targets, &rows, hashing);
    print_event_report(&event_rows);
    drop((pg, uncached, sqlite, echo, work));
    Ok(())
}

fn print_report(args: &Args, targets: &[Target], rows: &[Measured], hashing: Option<(f64, usize)>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "roster-load: {cores} cores, load average {}, h2load -c{} -m{} -t1, {} run(s) per target",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        args.connections,
        args.streams,
        args.runs
    );
    if let Some((rate, threads)) = hashing {
        println!(
            "raw Argon2id verification (production parameters): {rate:.1} hashes/s on {threads} threads"
        );
    }
    println!();
    println!("| run | target | what | in flight | requests | req/s | p50 | p99 | vs echo |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        // The echo of the same run (or the first).
        let echo = rows
            .iter()
            .find(|r| r.name == "echo" && r.run == row.run)
            .map(|r| r.rate);
        let mut ratio = if row.vs_hashing {
            match hashing {
                Some((rate, _)) => format!("{:.2} of raw hashing", row.rate / rate),
                None => "-".into(),
            }
        } else {
            match echo {
                Some(echo) => format!("{:.3}", row.rate / echo),
                None => "-".into(),
            }
        };
        if row.name == "get-during-logins"
            && let Some(idle) = rows.iter().find(|r| r.name == "get-pg" && r.run == row.run)
        {
            let _ = write!(
                ratio,
                "; p99 {:.2} × idle",
                row.p99.as_secs_f64() / idle.p99.as_secs_f64()
            );
        }
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            row.run,
            row.name,
            row.what,
            row.in_flight,
            row.requests,
            row.rate,
            millis(row.p50),
            millis(row.p99),
            ratio
        );
    }
    println!();
    println!("commands:");
    for target in targets {
        println!("  {}", shown(target));
    }
}

/// One measurement of the events' path.
struct EventRow {
    name: &'static str,
    what: String,
    samples: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    rate: Option<f64>,
}

/// The fan-out, commit-to-consumer and relay measurements, on the
/// PostgreSQL + JetStream `rosterd`.
async fn measure_events(
    args: &Args,
    wanted: &dyn Fn(&str) -> bool,
    pg: &Rosterd,
    api_key: &str,
    nats: &TestNats,
    db_url: &str,
) -> anyhow::Result<Vec<EventRow>> {
    let mut rows = Vec::new();
    let endpoint = format!("http://{}", pg.addr);
    let spread_row = |name, what: String, spread: &events::Spread| EventRow {
        name,
        what,
        samples: spread.len(),
        p50: spread.percentile(50.0),
        p99: spread.percentile(99.0),
        max: spread.max(),
        rate: None,
    };
    if args.fanout_streams > 0 && wanted("fanout") {
        let streams = usize::try_from(args.fanout_streams)?;
        let rounds = usize::try_from(args.fanout_rounds.max(1))?;
        eprintln!("fan-out: {streams} streams, {rounds} rounds");
        let spread = events::fan_out(&endpoint, api_key, ADMIN, streams, 8, rounds).await?;
        rows.push(spread_row(
            "fanout",
            format!(
                "a notification to {streams} open Subscribe streams of one user (8 connections), from the change's answer to each stream"
            ),
            &spread,
        ));
    }
    let bus = NatsBus::connect(&EventsConfig {
        create_stream: false,
        ..nats.config.clone()
    })
    .await?;
    if args.event_samples > 0 && wanted("event-latency") {
        eprintln!("commit to consumer: {} changes", args.event_samples);
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())?
            .connect()
            .await?;
        let samples = usize::try_from(args.event_samples)?;
        let spread = events::commit_to_consumer(&bus, &channel, api_key, ADMIN, samples).await?;
        rows.push(spread_row(
            "event-latency",
            "user.api-key.create from its commit in rosterd to a JetStream subscriber in this process".into(),
            &spread,
        ));
    }
    if args.relay_events > 1 && wanted("relay") {
        let count = usize::try_from(args.relay_events)?;
        eprintln!("outbox relay: {count} events");
        let rate = events::relay_rate(&bus, db_url, count).await?;
        rows.push(EventRow {
            name: "relay",
            what: format!(
                "{count} events committed at once to the user registry's outbox, published to JetStream and received here"
            ),
            samples: count,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
            rate: Some(rate),
        });
    }
    Ok(rows)
}

fn print_event_report(rows: &[EventRow]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!("| target | what | samples | p50 | p99 | max | events/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let (p50, p99, max) = if row.rate.is_some() {
            ("-".into(), "-".into(), "-".into())
        } else {
            (millis(row.p50), millis(row.p99), millis(row.max))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.what,
            row.samples,
            p50,
            p99,
            max,
            row.rate.map_or("-".into(), |r| format!("{r:.0}"))
        );
    }
}
