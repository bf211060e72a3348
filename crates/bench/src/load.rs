//! A closed-loop load generator: a fixed number of clients, each sending
//! its next request as soon as the previous one is answered, and the
//! latency of every request. [`run`] sends a fixed number of requests;
//! [`Background`] keeps sending until it is stopped, as load running
//! alongside a measured scenario.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

/// What one request brings back besides its latency: `Some(total)` for
/// searches (the `x-total-count` header), `None` otherwise.
pub type Outcome = Result<Option<u64>, String>;

/// Most error messages kept per run; the rest are only counted.
const KEPT_ERRORS: usize = 5;

/// One run of a scenario.
#[derive(Debug, Default)]
pub struct Run {
    /// Successful requests only: a fast failure must not flatter the
    /// percentiles.
    pub latencies: Vec<Duration>,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub totals: Vec<u64>,
}

impl Run {
    pub fn requests(&self) -> u64 {
        self.latencies.len() as u64 + self.errors
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Ok(total) => {
                self.latencies.push(latency);
                self.totals.extend(total);
            }
            Err(error) => {
                self.errors += 1;
                if self.first_errors.len() < KEPT_ERRORS {
                    self.first_errors.push(error);
                }
            }
        }
    }

    fn absorb(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.totals.extend(other.totals);
        for error in other.first_errors {
            if self.first_errors.len() < KEPT_ERRORS {
                self.first_errors.push(error);
            }
        }
    }
}

/// Sends one request per index of `requests` from `clients` concurrent
/// clients. `op(i)` builds and sends request `i`; the indices let each
/// scenario derive distinct, reproducible inputs.
pub async fn run<F, Fut>(requests: Range<usize>, clients: usize, op: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let op = Arc::new(op);
    // A shared counter rather than a fixed share per client: a client stuck
    // behind a slow request does not hold back the rest of the run.
    let next = Arc::new(AtomicUsize::new(requests.start));
    let end = requests.end;
    let clients = clients.clamp(1, requests.len().max(1));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..clients {
        let op = op.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut run = Run::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let sent = Instant::now();
                let outcome = op(i).await;
                run.record(outcome, sent.elapsed());
            }
            run
        });
    }
    let mut all = Run::default();
    while let Some(worker) = workers.join_next().await {
        all.absorb(worker?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// Load sent in the background by a fixed number of clients, from
/// [`Background::start`] until [`Background::stop`].
pub struct Background {
    stopping: Arc<AtomicBool>,
    started: Instant,
    workers: JoinSet<Run>,
}

impl Background {
    /// Starts `clients` clients sending `op(first)`, `op(first + 1)`, … one
    /// after the other, each index once, until stopped.
    pub fn start<F, Fut>(first: usize, clients: usize, op: F) -> Background
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let op = Arc::new(op);
        let next = Arc::new(AtomicUsize::new(first));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = JoinSet::new();
        for _ in 0..clients.max(1) {
            let op = op.clone();
            let next = next.clone();
            let stopping = stopping.clone();
            workers.spawn(async move {
                let mut run = Run::default();
                while !stopping.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let outcome = op(i).await;
                    run.record(outcome, sent.elapsed());
                }
                run
            });
        }
        Background {
            stopping,
            started: Instant::now(),
            workers,
        }
    }

    /// Lets every client finish the request it is waiting for, then returns
    /// them all, `elapsed` from the start to the last answer.
    pub async fn stop(mut self) -> anyhow::Result<Run> {
        self.stopping.store(true, Ordering::Relaxed);
        let mut all = Run::default();
        while let Some(worker) = self.workers.join_next().await {
            all.absorb(worker?);
        }
        all.elapsed = self.started.elapsed();
        Ok(all)
    }
}

/// Latency percentiles of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// `None` when no request succeeded.
    pub fn of(latencies: &[Duration]) -> Option<Summary> {
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        Some(Summary {
            p50: percentile(&sorted, 50.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
        })
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at
/// least `p` percent of the values at or below it.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        let summary = Summary::of(&ms(&values)).unwrap();
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));

        let one = Summary::of(&ms(&[7])).unwrap();
        assert_eq!(
            (one.p50, one.p99, one.max),
            (ms(&[7])[0], ms(&[7])[0], ms(&[7])[0])
        );
        assert_eq!(Summary::of(&[]), None);
    }

    #[tokio::test]
    async fn every_index_is_sent_once_and_errors_are_counted() {
        let run = run(10..110, 7, |i| async move {
            if i % 10 == 0 {
                Err(format!("request {i} failed"))
            } else {
                Ok(Some(i as u64))
            }
        })
        .await
        .unwrap();
        assert_eq!(run.requests(), 100);
        assert_eq!(run.errors, 10);
        assert_eq!(run.first_errors.len(), KEPT_ERRORS);
        let mut totals = run.totals.clone();
        totals.sort_unstable();
        let expected: Vec<u64> = (10..110).filter(|i| i % 10 != 0).collect();
        assert_eq!(totals, expected);
    }

    #[tokio::test]
    async fn background_load_runs_until_stopped_each_index_once() {
        let background = Background::start(1000, 3, |i| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if i % 7 == 0 {
                Err(format!("request {i} failed"))
            } else {
                Ok(Some(i as u64))
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let run = background.stop().await.unwrap();
        assert!(run.requests() >= 3, "{}", run.requests());
        let mut sent = run.totals.clone();
        let failed = (1000..1000 + run.requests()).filter(|i| i % 7 == 0).count() as u64;
        assert_eq!(run.errors, failed);
        sent.sort_unstable();
        let expected: Vec<u64> = (1000..1000 + run.requests())
            .filter(|i| i % 7 != 0)
            .collect();
        assert_eq!(sent, expected);
    }
}
