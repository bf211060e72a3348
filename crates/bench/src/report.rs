//! The results: an aligned plain-text table, or the same as JSON lines.

use std::time::Duration;

use roster_core::password::PasswordConfig;
use serde_json::json;

use crate::load::{Run, Summary};
use crate::scenarios::Scenario;

/// Where and how the numbers were taken.
pub struct Header {
    pub seeded_users: i64,
    pub table_bytes: i64,
    pub seed_insert: Duration,
    pub seed_vacuum: Duration,
    pub server_version: String,
    pub cores: usize,
    pub release: bool,
    pub password: PasswordConfig,
    pub pool_size: u32,
    pub channels: usize,
    pub warmup_percent: u32,
    /// The credential cache TTL of the server with both services.
    pub cache_ttl_ms: u64,
}

/// How credentials are resolved shapes every authenticated request, so the
/// output says it.
fn credentials_note(cache_ttl_ms: u64) -> String {
    format!(
        "an approved admin's API key with RIGHT_ALL, made through \
         UserAccess.CreateAPIKey (the session scenario: the admin's session \
         token from Authentication.Login); each server's Authenticator \
         resolves it with EntityAccess.AuthInfo over gRPC (cluster key: \
         API-key lookup, or SessionCredentials.CheckSession for a session; \
         UserLifecycle.GetWithStatus of its user, one call; rights) and \
         caches the answer for \
         {cache_ttl_ms} ms (auth.cache_ttl_ms default), or not at all on the \
         uncached server"
    )
}

/// The sessions service's settings, which differ from the defaults.
const SESSIONS_NOTE: &str = "Authentication.Login with the defaults except \
     sessions.login_rate_limit.max_attempts = 0 and \
     user_registry.lockout.max_failures(_per_client) = 0 (all off: every \
     login comes from one address)";

/// Logins sent in the background of a scenario.
pub struct BackgroundRun {
    pub clients: usize,
    /// From the start of the scenario's warm-up to the end of its measured
    /// run.
    pub run: Run,
}

/// One scenario's line.
pub struct Row {
    pub scenario: &'static str,
    pub concurrency: usize,
    /// Failed warm-up requests: not in the table, but a failure all the same.
    pub warmup_errors: u64,
    /// For scenarios that send the API key: how many times the serving
    /// Authenticator called `EntityAccess.AuthInfo` during the measured run
    /// (its cache misses).
    pub resolutions: Option<u64>,
    pub run: Run,
    /// The logins sent while the scenario ran, if any.
    pub background: Option<BackgroundRun>,
}

fn throughput(run: &Run) -> f64 {
    let secs = run.elapsed.as_secs_f64();
    if secs > 0.0 {
        run.latencies.len() as f64 / secs
    } else {
        0.0
    }
}

impl Row {
    fn throughput(&self) -> f64 {
        throughput(&self.run)
    }

    /// The share of authenticated requests answered from the credential
    /// cache, for scenarios that send the API key.
    fn cache_hit_ratio(&self) -> Option<f64> {
        let requests = self.run.requests();
        let resolutions = self.resolutions?;
        (requests > 0).then(|| 1.0 - resolutions.min(requests) as f64 / requests as f64)
    }

    /// The mean `x-total-count`, for scenarios that report one.
    fn average_total(&self) -> Option<f64> {
        let totals = &self.run.totals;
        (!totals.is_empty()).then(|| totals.iter().sum::<u64>() as f64 / totals.len() as f64)
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The cached Get's latencies without and with logins running alongside,
/// when both scenarios ran.
struct LoginImpact {
    without: Summary,
    during: Summary,
}

impl LoginImpact {
    fn of(rows: &[Row]) -> Option<LoginImpact> {
        let summary = |scenario: Scenario| {
            rows.iter()
                .find(|row| row.scenario == scenario.name())
                .and_then(|row| Summary::of(&row.run.latencies))
        };
        Some(LoginImpact {
            without: summary(Scenario::Get)?,
            during: summary(Scenario::GetDuringLogins)?,
        })
    }

    fn p50_ratio(&self) -> f64 {
        ms(self.during.p50) / ms(self.without.p50)
    }

    fn p99_ratio(&self) -> f64 {
        ms(self.during.p99) / ms(self.without.p99)
    }
}

pub fn print_text(header: &Header, rows: &[Row]) {
    let p = &header.password;
    println!(
        "Roster user registry, access and sessions services over gRPC, PostgreSQL and JetStream"
    );
    println!(
        "  users table:   {} seeded rows, {:.1} MiB with indexes (seeded in {:.1} s: \
         insert {:.1} s, VACUUM ANALYZE {:.1} s)",
        header.seeded_users,
        header.table_bytes as f64 / (1024.0 * 1024.0),
        (header.seed_insert + header.seed_vacuum).as_secs_f64(),
        header.seed_insert.as_secs_f64(),
        header.seed_vacuum.as_secs_f64(),
    );
    println!("  PostgreSQL:    {}", header.server_version);
    println!(
        "  machine:       {} cores, shared by the clients and the servers (one process)",
        header.cores
    );
    println!(
        "  build:         {}",
        if header.release { "release" } else { "debug" }
    );
    println!(
        "  passwords:     Argon2id, {} KiB, {} passes, {} lane(s) (production defaults)",
        p.memory_kib, p.iterations, p.parallelism
    );
    println!(
        "  connections:   {} to PostgreSQL per service and server; {} HTTP/2 channel(s) \
         per server shared by the clients",
        header.pool_size, header.channels
    );
    println!(
        "  warm-up:       {}% of each scenario's requests, not measured",
        header.warmup_percent
    );
    println!("  credentials:   {}", credentials_note(header.cache_ttl_ms));
    println!("  sessions:      {SESSIONS_NOTE}");
    println!();

    let titles = [
        "scenario",
        "requests",
        "concurrency",
        "errors",
        "throughput (req/s)",
        "p50 (ms)",
        "p99 (ms)",
        "max (ms)",
    ];
    let lines: Vec<[String; 8]> = rows
        .iter()
        .map(|row| {
            let summary = Summary::of(&row.run.latencies);
            let latency = |pick: fn(&Summary) -> Duration| {
                summary.map_or("-".into(), |s| format!("{:.2}", ms(pick(&s))))
            };
            [
                row.scenario.to_string(),
                row.run.requests().to_string(),
                row.concurrency.to_string(),
                row.run.errors.to_string(),
                format!("{:.1}", row.throughput()),
                latency(|s| s.p50),
                latency(|s| s.p99),
                latency(|s| s.max),
            ]
        })
        .collect();
    let mut widths = titles.map(str::len);
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.len());
        }
    }
    // The scenario name is text and reads best left-aligned; numbers line
    // up on the right.
    let format_line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                if column == 0 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", format_line(&titles.map(String::from)));
    println!("{}", widths.map(|w| "-".repeat(w)).join("  "));
    for line in &lines {
        println!("{}", format_line(line));
    }
    println!();
    for row in rows {
        if let (Some(resolutions), Some(ratio)) = (row.resolutions, row.cache_hit_ratio()) {
            println!(
                "{}: {resolutions} EntityAccess.AuthInfo call(s) for {} requests, \
                 {:.2} % answered from the credential cache",
                row.scenario,
                row.run.requests(),
                ratio * 100.0
            );
        }
    }
    for row in rows {
        let Some(background) = &row.background else {
            continue;
        };
        let logins = &background.run;
        let latency = Summary::of(&logins.latencies).map_or(String::new(), |s| {
            format!(" (p50 {:.1} ms, p99 {:.1} ms)", ms(s.p50), ms(s.p99))
        });
        println!(
            "{}: meanwhile {} clients made {} logins, {:.1}/s{latency}, {} failed \
             (over the warm-up and the measured run, {:.1} s)",
            row.scenario,
            background.clients,
            logins.requests(),
            throughput(logins),
            logins.errors,
            logins.elapsed.as_secs_f64(),
        );
    }
    if let Some(impact) = LoginImpact::of(rows) {
        println!(
            "{} against {}: p99 {:.2} / {:.2} ms = {:.2}x, p50 {:.2} / {:.2} ms = {:.2}x",
            Scenario::GetDuringLogins.name(),
            Scenario::Get.name(),
            ms(impact.during.p99),
            ms(impact.without.p99),
            impact.p99_ratio(),
            ms(impact.during.p50),
            ms(impact.without.p50),
            impact.p50_ratio(),
        );
    }
    for row in rows {
        if let Some(average) = row.average_total() {
            println!(
                "{}: average {} {:.1} over {} searches",
                row.scenario,
                roster_core::list::TOTAL_COUNT_HEADER,
                average,
                row.run.totals.len()
            );
        }
    }
}

pub fn print_json(header: &Header, rows: &[Row]) {
    let p = &header.password;
    println!(
        "{}",
        json!({
            "type": "header",
            "seeded_users": header.seeded_users,
            "table_bytes": header.table_bytes,
            "seed_insert_secs": header.seed_insert.as_secs_f64(),
            "seed_vacuum_analyze_secs": header.seed_vacuum.as_secs_f64(),
            "postgres_version": header.server_version,
            "cores": header.cores,
            "release": header.release,
            "argon2": {
                "memory_kib": p.memory_kib,
                "iterations": p.iterations,
                "parallelism": p.parallelism,
            },
            "pool_size": header.pool_size,
            "channels": header.channels,
            "warmup_percent": header.warmup_percent,
            "auth_cache_ttl_ms": header.cache_ttl_ms,
            "credentials": credentials_note(header.cache_ttl_ms),
            "sessions": SESSIONS_NOTE,
        })
    );
    for row in rows {
        let summary = Summary::of(&row.run.latencies);
        let background = row.background.as_ref().map(|background| {
            let logins = &background.run;
            let summary = Summary::of(&logins.latencies);
            json!({
                "scenario": Scenario::Login.name(),
                "clients": background.clients,
                "requests": logins.requests(),
                "errors": logins.errors,
                "elapsed_secs": logins.elapsed.as_secs_f64(),
                "throughput_rps": throughput(logins),
                "p50_ms": summary.map(|s| ms(s.p50)),
                "p99_ms": summary.map(|s| ms(s.p99)),
                "max_ms": summary.map(|s| ms(s.max)),
            })
        });
        println!(
            "{}",
            json!({
                "type": "scenario",
                "scenario": row.scenario,
                "requests": row.run.requests(),
                "concurrency": row.concurrency,
                "errors": row.run.errors,
                "throughput_rps": row.throughput(),
                "p50_ms": summary.map(|s| ms(s.p50)),
                "p99_ms": summary.map(|s| ms(s.p99)),
                "max_ms": summary.map(|s| ms(s.max)),
                "average_total_count": row.average_total(),
                "credential_resolutions": row.resolutions,
                "cache_hit_ratio": row.cache_hit_ratio(),
                "background": background,
            })
        );
    }
    if let Some(impact) = LoginImpact::of(rows) {
        println!(
            "{}",
            json!({
                "type": "comparison",
                "scenario": Scenario::GetDuringLogins.name(),
                "baseline": Scenario::Get.name(),
                "p50_ratio": impact.p50_ratio(),
                "p99_ratio": impact.p99_ratio(),
            })
        );
    }
}
