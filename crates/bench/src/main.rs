//! `roster-bench`: measures the user registry over real gRPC, on
//! PostgreSQL with its events on JetStream, as deployed in production.
//!
//! It creates a fresh database (dropped at the end) and a JetStream
//! namespace, serves the user registry in-process on a loopback port with
//! the production Argon2id costs, seeds the `users` table with SQL, then
//! runs each scenario from concurrent clients and prints throughput and
//! latency percentiles:
//!
//! - `Create`: self-registration, unauthenticated; the Argon2id hash on
//!   the blocking pool dominates it;
//! - `Get`: an admin reading a random seeded user;
//! - `SearchUsers`: an admin searching a random 3-6 character substring of
//!   a seeded ID or name, 20 per page.
//!
//! PostgreSQL and NATS are found as the tests find them
//! (`ROSTER_TEST_DATABASE_URL`, `ROSTER_TEST_NATS_URL`). The process exits
//! non-zero when any request failed.

mod load;
mod registry;
mod report;
mod scenarios;
mod seed;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use roster_core::db::DatabaseConfig;
use roster_core::password::{PasswordConfig, PasswordHasher};
use tokio::time::Instant;

use crate::registry::Registry;
use crate::report::{Header, Row};
use crate::scenarios::{Scenario, Target};
use crate::seed::Seeded;

#[derive(Parser, Debug)]
#[command(
    name = "roster-bench",
    about = "Benchmark the user registry over gRPC on PostgreSQL and JetStream"
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
    /// Get requests (0 skips the scenario).
    #[arg(long, default_value_t = 20_000)]
    get: usize,
    /// SearchUsers requests (0 skips the scenario).
    #[arg(long, default_value_t = 2000)]
    search: usize,
    /// Warm-up requests before each scenario, in percent of its requests
    /// (at least one per client; 0 for none); they are not measured.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    warmup_percent: u32,
    /// HTTP/2 connections the clients share, round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    channels: u64,
    /// PostgreSQL connections of the registry's pool; defaults to the
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
    let registry = Registry::start(hasher.clone(), args.pool_size).await?;
    // Whatever happens, stop the server before the database is dropped.
    let outcome = measure(&args, &registry, hasher, password).await;
    registry.shutdown().await;
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
    }
    Ok(failed)
}

async fn measure(
    args: &Args,
    registry: &Registry,
    hasher: PasswordHasher,
    password: PasswordConfig,
) -> anyhow::Result<(Header, Vec<Row>)> {
    // One hash for every seeded user: real Argon2id output, so a login
    // against a seeded user would cost what it costs in production.
    let password_hash = hasher.hash("Seed-Passw0rd").await?;
    let seeded = Seeded::new(args.users);
    eprintln!("seeding {} users…", seeded.count);
    let times = seed::seed(&registry.pool, seeded, &password_hash)
        .await
        .context("seeding users")?;
    eprintln!(
        "seeded {} users in {:.1} s (insert {:.1} s, VACUUM ANALYZE {:.1} s)",
        seeded.count,
        (times.insert + times.vacuum).as_secs_f64(),
        times.insert.as_secs_f64(),
        times.vacuum.as_secs_f64(),
    );
    let table = seed::table_info(&registry.pool).await?;

    let mut channels = Vec::new();
    for _ in 0..args.channels {
        channels.push(registry.connect().await?);
    }
    let target = Target {
        channels,
        admin_token: registry.admin_token(),
        seeded,
        seed: args.seed,
    };

    let concurrency = args.concurrency as usize;
    let mut rows = Vec::new();
    for (scenario, requests) in [
        (Scenario::Create, args.create),
        (Scenario::Get, args.get),
        (Scenario::Search, args.search),
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
        let send = |target: Target| move |i| target.request(scenario, i);
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
        let started = Instant::now();
        let run = load::run(0..requests, concurrency, send(target.clone())).await?;
        eprintln!(
            "{}: done in {:.1} s",
            scenario.name(),
            started.elapsed().as_secs_f64()
        );
        rows.push(Row {
            scenario: scenario.name(),
            concurrency: concurrency.min(requests),
            warmup_errors,
            run,
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
        pool_size: registry.pool_size,
        channels: args.channels as usize,
        warmup_percent: args.warmup_percent,
    };
    Ok((header, rows))
}
