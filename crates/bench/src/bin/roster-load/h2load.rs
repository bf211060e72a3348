//! Running h2load and reading what it reports: the summary it prints
//! (throughput, request counts, status classes) and its `--log-file` (one
//! line per request, for the latency percentiles).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

/// h2load's summary lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub elapsed: Duration,
    pub requests_per_second: f64,
    pub total: u64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    pub status_2xx: u64,
}

/// Reads the summary that h2load prints on standard output.
pub fn parse_summary(output: &str) -> anyhow::Result<Summary> {
    let finished = line_starting(output, "finished in ")?;
    // finished in 2.91s, 6870.10 req/s, 1.05MB/s
    let mut parts = finished["finished in ".len()..].split(", ");
    let elapsed = parse_duration(parts.next().unwrap_or_default())?;
    let rate = parts
        .next()
        .and_then(|p| p.strip_suffix(" req/s"))
        .context("no req/s after `finished in`")?;
    let requests_per_second = rate
        .parse()
        .with_context(|| format!("req/s `{rate}` is not a number"))?;

    // requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout
    let requests = line_starting(output, "requests: ")?;
    let count = |what: &str| counted(&requests["requests: ".len()..], what);
    // status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx
    let statuses = line_starting(output, "status codes: ")?;
    Ok(Summary {
        elapsed,
        requests_per_second,
        total: count("total")?,
        done: count("done")?,
        succeeded: count("succeeded")?,
        failed: count("failed")?,
        errored: count("errored")?,
        timeout: count("timeout")?,
        status_2xx: counted(&statuses["status codes: ".len()..], "2xx")?,
    })
}

fn line_starting<'a>(output: &'a str, prefix: &str) -> anyhow::Result<&'a str> {
    output
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(prefix))
        .with_context(|| format!("h2load printed no `{prefix}…` line"))
}

/// The number before `what` in a comma-separated list of `N what` items.
fn counted(list: &str, what: &str) -> anyhow::Result<u64> {
    for item in list.split(',') {
        let mut words = item.split_whitespace();
        if let (Some(n), Some(name)) = (words.next(), words.next())
            && name == what
        {
            return n
                .parse()
                .with_context(|| format!("`{n}` before `{what}` is not a number"));
        }
    }
    bail!("no `{what}` count in `{list}`")
}

/// h2load's durations: `2.91s`, `851ms`, `355us`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("`{text}` is not an h2load duration");
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not an h2load duration"))?;
    Ok(Duration::from_secs_f64(value * scale))
}

/// Per-request latencies from h2load's `--log-file`: tab-separated start
/// time (µs since the epoch), HTTP status (-1 for a failed stream) and µs
/// until the end of the response.
#[derive(Debug, Clone, PartialEq)]
pub struct Latencies {
    /// Latencies of the requests answered with HTTP 200, sorted.
    pub ok: Vec<Duration>,
    /// Requests with any other status.
    pub other: u64,
}

pub fn parse_log(log: &str) -> anyhow::Result<Latencies> {
    let mut ok = Vec::new();
    let mut other = 0;
    for (i, line) in log.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let columns: Vec<&str> = line.split('\t').collect();
        ensure!(
            columns.len() >= 3,
            "log line {} has {} columns, not 3: `{line}`",
            i + 1,
            columns.len()
        );
        let status: i32 = columns[1]
            .parse()
            .with_context(|| format!("log line {}: status `{}`", i + 1, columns[1]))?;
        let micros: u64 = columns[2]
            .parse()
            .with_context(|| format!("log line {}: duration `{}`", i + 1, columns[2]))?;
        if status == 200 {
            ok.push(Duration::from_micros(micros));
        } else {
            other += 1;
        }
    }
    ok.sort_unstable();
    Ok(Latencies { ok, other })
}

impl Latencies {
    /// The `p`-th percentile (nearest rank) of the successful requests.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.ok.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.ok.len() as f64).ceil() as usize;
        Some(self.ok[rank.clamp(1, self.ok.len()) - 1])
    }
}

pub fn read_log(path: &Path) -> anyhow::Result<Latencies> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading h2load's log {}", path.display()))?;
    parse_log(&text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Latencies, parse_log, parse_summary};

    /// What h2load (nghttp2 1.52) printed for a run against `roster-echo`.
    const SAMPLE: &str = include_str!("h2load-sample.txt");

    #[test]
    fn the_summary_is_read() {
        let summary = parse_summary(SAMPLE).unwrap();
        assert_eq!(summary.total, 2000);
        assert_eq!(summary.done, 2000);
        assert_eq!(summary.succeeded, 2000);
        assert_eq!(summary.failed, 0);
        assert_eq!(summary.errored, 0);
        assert_eq!(summary.timeout, 0);
        assert_eq!(summary.status_2xx, 2000);
        assert!(summary.requests_per_second > 0.0);
        assert!(summary.elapsed > Duration::ZERO);
    }

    #[test]
    fn a_summary_without_counts_is_refused() {
        let err = parse_summary("finished in 1.00s, 10.00 req/s, 1KB/s\n").unwrap_err();
        assert!(err.to_string().contains("requests: "), "{err}");
        let err = parse_summary("").unwrap_err();
        assert!(err.to_string().contains("finished in"), "{err}");
    }

    #[test]
    fn latencies_come_from_the_log_and_failures_are_counted_apart() {
        let log = "1765000000000000\t200\t1500\n\
                   1765000000000100\t200\t900\n\
                   1765000000000200\t-1\t20\n\
                   1765000000000300\t200\t3100\n";
        let latencies = parse_log(log).unwrap();
        assert_eq!(latencies.other, 1);
        assert_eq!(
            latencies.ok,
            [900, 1500, 3100].map(Duration::from_micros).to_vec()
        );
        assert_eq!(
            latencies.percentile(50.0),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(
            latencies.percentile(99.0),
            Some(Duration::from_micros(3100))
        );
        assert_eq!(
            Latencies {
                ok: vec![],
                other: 0
            }
            .percentile(50.0),
            None
        );
    }

    #[test]
    fn a_malformed_log_line_is_named() {
        let err = parse_log("1765000000000000\t200\n").unwrap_err();
        assert!(err.to_string().contains("log line 1"), "{err}");
    }
}
