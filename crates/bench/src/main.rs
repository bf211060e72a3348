//! `roster-bench`: measures the user registry, the access service and the
//! sessions service over real gRPC, on PostgreSQL with their events on
//! JetStream, as deployed in production.
//!
//! It creates a fresh database (one schema per service, dropped at the
//! end) and a JetStream namespace, serves the three services in-process on
//! a loopback port with the production Argon2id costs and real credential
//! resolution (`EntityAccess.AuthInfo`), seeds the `users` table with SQL
//! (one real Argon2id hash of [`seed::SEED_PASSWORD`] for every user),
//! creates an approved admin and an API key with `RIGHT_ALL` for it through
//! the API and logs the admin in, then runs each scenario from concurrent
//! clients and prints throughput and latency percentiles:
//!
//! - `Create`: self-registration, unauthenticated; the Argon2id hash on
//!   the blocking pool dominates it;
//! - `Login`: `Authentication.Login` of a random seeded user with its
//!   password; one Argon2id verification on the user registry's blocking
//!   pool dominates it;
//! - `AuthInfo`: a service resolving the admin's API key, as every
//!   service's Authenticator does on a cache miss;
//! - `Get (API key, cached)`: the admin reading a random seeded user, the
//!   credential cached for the default TTL;
//! - `Get (API key, during logins)`: the same while `--background-logins`
//!   clients log seeded users in, to show that password hashing (on the
//!   blocking pool) does not stall the requests on the async runtime; the
//!   report gives the ratio of the two p99 latencies;
//! - `Get (session, cached)`: the same reads with the admin's session
//!   token instead of the API key (resolved through
//!   `SessionCredentials.CheckSession` on a cache miss);
//! - `Get (API key, uncached)`: the same on a second server whose
//!   Authenticator caches nothing, so every request calls `AuthInfo`;
//! - `SearchUsers`: the admin searching a random 3-6 character substring of
//!   a seeded ID or name, 20 per page;
//! - `Login with TOTP`: a seeded user with an authenticator app logging in:
//!   the password answers with a challenge, which `CompleteLogin` with the
//!   current code turns into a session (one user per request, since a code
//!   is accepted once).
//!
//! PostgreSQL and NATS are found as the tests find them
//! (`ROSTER_TEST_DATABASE_URL`, `ROSTER_TEST_NATS_URL`). The process exits
//! non-zero when any request failed.

mod load;
mod report;
mod scenarios;
mod seed;
mod services;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::Parser;
use roster_core::db::DatabaseConfig;
use roster_core::password::{PasswordConfig, PasswordHasher};
use tokio::time::Instant;

use crate::load::Background;
use crate::report::{BackgroundRun, Header, Row};
use crate::scenarios::{Scenario, Target};
use crate::seed::Seeded;
use crate::services::Services;

#[derive(Parser, Debug)]
#[command(
    name = "roster-bench",
    about = "Benchmark the user registry, the access and the sessions service over gRPC on PostgreSQL and JetStream"
)]
struct Args {
    /// Users seeded with SQL before the scenarios run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Concurrent clients in every scenario.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Create requests (0 skips the scenario).
    #[arg(long, default_value_t = 1000)]
    create: usize,
    /// Authentication.Login requests (0 skips the scenario).
    #[arg(long, default_value_t = 1000)]
    login: usize,
    /// EntityAccess.AuthInfo requests (0 skips the scenario).
    #[arg(long, default_value_t = 10_000)]
    auth_info: usize,
    /// Get requests with the credential cache (0 skips the scenario).
    #[arg(long, default_value_t = 20_000)]
    get: usize,
    /// Get requests with the credential cache while other clients log in
    /// (0 skips the scenario).
    #[arg(long, default_value_t = 20_000)]
    get_during_logins: usize,
    /// Clients logging in, one login after the other, throughout
    /// `--get-during-logins` (its warm-up included).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    background_logins: u64,
    /// Get requests with the admin's session token, credential cache on
    /// (0 skips the scenario).
    #[arg(long, default_value_t = 10_000)]
    get_session: usize,
    /// Get requests without the credential cache (0 skips the scenario).
    #[arg(long, default_value_t = 10_000)]
    get_uncached: usize,
    /// SearchUsers requests (0 skips the scenario).
    #[arg(long, default_value_t = 2000)]
    search: usize,
    /// Logins with a TOTP (password, then CompleteLogin), each of a seeded
    /// user of its own (0 skips the scenario). Runs last: its users then
    /// have a TOTP, which would turn the other scenarios' logins of them
    /// into challenges.
    #[arg(long, default_value_t = 500)]
    login_totp: usize,
    /// Warm-up requests before each scenario, in percent of its requests
    /// (at least one per client; 0 for none); they are not measured.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    warmup_percent: u32,
    /// HTTP/2 connections the clients share, round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    channels: u64,
    /// PostgreSQL connections of each service's pool; defaults to the
    /// production default.
    #[arg(long, default_value_t = DatabaseConfig::default().max_connections)]
    pool_size: u32,
    /// Seed of the request inputs; the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON lines (a header, then one line per scenario) instead of
    /// the table.
    #[arg(long)]
    json: bool,
}

/// The first request index of the background logins: far above the Login
/// scenario's, so they draw other users than it does.
const BACKGROUND_LOGINS_FIRST: usize = 1 << 30;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(args).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("error: {failed} request(s) failed");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark and returns how many requests failed.
async fn bench(args: Args) -> anyhow::Result<u64> {
    let password = PasswordConfig::default();
    let hasher = PasswordHasher::new(&password).context("building the password hasher")?;
    let services = Services::start(hasher.clone(), args.pool_size).await?;
    // Whatever happens, stop the servers before the database is dropped.
    let outcome = measure(&args, &services, hasher, password).await;
    services.shutdown().await;
    let (header, rows) = outcome?;

    if args.json {
        report::print_json(&header, &rows);
    } else {
        report::print_text(&header, &rows);
    }
    let mut failed = 0;
    for row in &rows {
        // Warm-up requests are not measured, but must succeed all the same.
        failed += row.run.errors + row.warmup_errors;
        for error in &row.run.first_errors {
            eprintln!("{} failed: {error}", row.scenario);
        }
        if let Some(background) = &row.background {
            failed += background.run.errors;
            for error in &background.run.first_errors {
                eprintln!("{}: a background login failed: {error}", row.scenario);
            }
        }
    }
    Ok(failed)
}

async fn measure(
    args: &Args,
    services: &Services,
    hasher: PasswordHasher,
    password: PasswordConfig,
) -> anyhow::Result<(Header, Vec<Row>)> {
    // One hash for every seeded user: real Argon2id output, so a login of
    // a seeded user costs what it costs in production.
    let password_hash = hasher.hash(seed::SEED_PASSWORD).await?;
    let seeded = Seeded::new(args.users);
    eprintln!("seeding {} users…", seeded.count);
    let times = seed::seed(&services.pool, seeded, &password_hash)
        .await
        .context("seeding users")?;
    eprintln!(
        "seeded {} users in {:.1} s (insert {:.1} s, VACUUM ANALYZE {:.1} s)",
        seeded.count,
        (times.insert + times.vacuum).as_secs_f64(),
        times.insert.as_secs_f64(),
        times.vacuum.as_secs_f64(),
    );
    let table = seed::table_info(&services.pool).await?;
    // After the statistics, so the header counts seeded users only.
    let api_key = services
        .admin_api_key()
        .await
        .context("creating the admin and its API key")?;
    let session_token = services.admin_session().await?;

    let mut channels = Vec::new();
    let mut uncached_channels = Vec::new();
    for _ in 0..args.channels {
        channels.push(services.connect().await?);
        uncached_channels.push(services.connect_uncached().await?);
    }
    let target = Target {
        channels,
        uncached_channels,
        api_key,
        session_token,
        seeded,
        seed: args.seed,
        totp_secrets: std::sync::Arc::default(),
    };

    let concurrency = args.concurrency as usize;
    let mut rows = Vec::new();
    for (scenario, requests) in [
        (Scenario::Create, args.create),
        (Scenario::Login, args.login),
        (Scenario::AuthInfo, args.auth_info),
        (Scenario::Get, args.get),
        (Scenario::GetDuringLogins, args.get_during_logins),
        (Scenario::GetSession, args.get_session),
        (Scenario::GetUncached, args.get_uncached),
        (Scenario::Search, args.search),
        (Scenario::LoginTotp, args.login_totp),
    ] {
        if requests == 0 {
            continue;
        }
        // Warm-up indices follow the measured ones, so warm-up creates use
        // IDs of their own and warm-up reads pick other users.
        let warmup = match args.warmup_percent {
            0 => 0,
            percent => (requests * percent as usize / 100).max(concurrency),
        };
        // Each TOTP login, warm-up included, has a user of its own.
        let target = if scenario == Scenario::LoginTotp {
            eprintln!(
                "{}: enrolling {} users…",
                scenario.name(),
                requests + warmup
            );
            let secrets = target.enrol_totp(requests + warmup).await?;
            Target {
                totp_secrets: std::sync::Arc::new(secrets),
                ..target.clone()
            }
        } else {
            target.clone()
        };
        let send = |target: Target| move |i| target.request(scenario, i);
        // Started before the warm-up, so the measured requests meet logins
        // in full flow; its indices are far from the Login scenario's.
        let background = (scenario == Scenario::GetDuringLogins).then(|| {
            let clients = args.background_logins as usize;
            eprintln!("{}: {clients} clients logging in…", scenario.name());
            let target = target.clone();
            let login = move |i| target.request(Scenario::Login, i);
            (
                clients,
                Background::start(BACKGROUND_LOGINS_FIRST, clients, login),
            )
        });
        let mut warmup_errors = 0;
        if warmup > 0 {
            eprintln!("{}: warming up ({warmup} requests)…", scenario.name());
            let warm = load::run(
                requests..requests + warmup,
                concurrency,
                send(target.clone()),
            )
            .await?;
            warmup_errors = warm.errors;
            for error in &warm.first_errors {
                eprintln!("{} warm-up failed: {error}", scenario.name());
            }
        }
        eprintln!("{}: {requests} requests…", scenario.name());
        let resolutions = if scenario.uncached() {
            &services.resolutions.uncached
        } else {
            &services.resolutions.cached
        };
        let resolved_before = resolutions.load(Ordering::Relaxed);
        let started = Instant::now();
        let run = load::run(0..requests, concurrency, send(target.clone())).await?;
        let resolved = resolutions.load(Ordering::Relaxed) - resolved_before;
        let background = match background {
            Some((clients, logins)) => Some(BackgroundRun {
                clients,
                run: logins.stop().await?,
            }),
            None => None,
        };
        eprintln!(
            "{}: done in {:.1} s",
            scenario.name(),
            started.elapsed().as_secs_f64()
        );
        rows.push(Row {
            scenario: scenario.name(),
            concurrency: concurrency.min(requests),
            warmup_errors,
            resolutions: scenario.authenticated().then_some(resolved),
            run,
            background,
        });
    }

    let header = Header {
        seeded_users: table.rows,
        table_bytes: table.total_bytes,
        seed_insert: times.insert,
        seed_vacuum: times.vacuum,
        server_version: table.server_version,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        release: !cfg!(debug_assertions),
        password,
        pool_size: services.pool_size,
        cache_ttl_ms: services.cache_ttl_ms,
        channels: args.channels as usize,
        warmup_percent: args.warmup_percent,
    };
    Ok((header, rows))
}
