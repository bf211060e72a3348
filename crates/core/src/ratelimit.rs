//! A fixed-window rate limiter for unauthenticated methods (password
//! change, forgotten password, login), keyed by user or by client address.
//! It counts per process; with several replicas each one limits on its own,
//! which bounds the total at replicas × limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Attempts allowed per key and window; 0 disables the limit.
    pub max_attempts: u32,
    /// The window length in seconds.
    pub window_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            window_secs: 60,
        }
    }
}

/// Most keys tracked at once. Past it, expired windows are pruned; if the
/// table is still full (a flood of keys from many addresses), the oldest
/// tenth of the windows is forgotten. Refusing every new key instead would
/// let such a flood keep every new client out; forgetting old windows
/// only gives the oldest keys a fresh budget, and what the limits protect
/// most (password guesses) is also counted in the database.
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    config: RateLimitConfig,
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    windows: HashMap<String, (Instant, u32)>,
    last_prune: Instant,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_capacity(config, MAX_KEYS)
    }

    /// A limiter tracking at most `capacity` keys.
    pub fn with_capacity(config: RateLimitConfig, capacity: usize) -> Self {
        Self {
            config,
            capacity: capacity.max(10),
            state: Mutex::new(State {
                windows: HashMap::new(),
                last_prune: Instant::now(),
            }),
        }
    }

    /// Counts an attempt under each key in turn and stops at the first key
    /// over its limit, so a refused attempt adds nothing under the keys
    /// after it (put the client address first: a flood from one address
    /// then cannot fill the table with user keys). False if refused.
    pub fn allow(&self, keys: &[&str]) -> bool {
        if self.config.max_attempts == 0 {
            return true;
        }
        let window = Duration::from_secs(self.config.window_secs.max(1));
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys.iter().filter(|k| !k.is_empty()) {
            if !state.windows.contains_key(*key) && state.windows.len() >= self.capacity {
                state.make_room(now, window, self.capacity);
            }
            let entry = state.windows.entry((*key).to_string()).or_insert((now, 0));
            if now.duration_since(entry.0) >= window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
            if entry.1 > self.config.max_attempts {
                return false;
            }
        }
        true
    }

    /// Whether `key` has used up its window, without counting an attempt
    /// (for limits that count only failures).
    pub fn exhausted(&self, key: &str) -> bool {
        if self.config.max_attempts == 0 {
            return false;
        }
        let window = Duration::from_secs(self.config.window_secs.max(1));
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.windows.get(key).is_some_and(|(start, count)| {
            start.elapsed() < window && *count >= self.config.max_attempts
        })
    }
}

impl State {
    /// Drops expired windows (a scan, so at most once a second) and, if
    /// that is not enough, the oldest tenth: one linear selection, after
    /// which the next tenth of the capacity is inserted without work.
    fn make_room(&mut self, now: Instant, window: Duration, capacity: usize) {
        if now.duration_since(self.last_prune) >= Duration::from_secs(1) {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            self.last_prune = now;
        }
        if self.windows.len() < capacity {
            return;
        }
        let mut starts: Vec<Instant> = self.windows.values().map(|(start, _)| *start).collect();
        let cut = starts.len() / 10;
        let (_, oldest_kept, _) = starts.select_nth_unstable(cut);
        let oldest_kept = *oldest_kept;
        self.windows.retain(|_, (start, _)| *start >= oldest_kept);
        // Many windows may share one start: never keep more than fits.
        if self.windows.len() >= capacity {
            let drop: Vec<String> = self.windows.keys().take(cut.max(1)).cloned().collect();
            for key in drop {
                self.windows.remove(&key);
            }
        }
        tracing::warn!("rate limit table full; forgot the oldest windows");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_over_the_limit_are_refused_per_key() {
        let limiter = RateLimiter::new(RateLimitConfig {
            max_attempts: 2,
            window_secs: 60,
        });
        assert!(limiter.allow(&["ip:1", "user:a"]));
        assert!(limiter.allow(&["ip:1", "user:a"]));
        assert!(!limiter.allow(&["ip:2", "user:a"]));
        assert!(limiter.allow(&["ip:2", "user:b"]));
        // ip:1 is spent: its refused attempts count nothing for user:c.
        assert!(!limiter.allow(&["ip:1", "user:c"]));
        assert!(!limiter.allow(&["ip:1", "user:c"]));
        assert!(limiter.allow(&["ip:3", "user:c"]));
    }

    #[test]
    fn exhausted_looks_without_counting() {
        let limiter = RateLimiter::new(RateLimitConfig {
            max_attempts: 2,
            window_secs: 60,
        });
        assert!(!limiter.exhausted("ip:1"));
        assert!(limiter.allow(&["ip:1"]));
        assert!(!limiter.exhausted("ip:1"));
        assert!(!limiter.exhausted("ip:1"), "looking counts nothing");
        assert!(limiter.allow(&["ip:1"]));
        assert!(limiter.exhausted("ip:1"));
        assert!(!limiter.exhausted("ip:2"));
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = RateLimiter::new(RateLimitConfig {
            max_attempts: 0,
            window_secs: 1,
        });
        for _ in 0..100 {
            assert!(limiter.allow(&["k"]));
        }
    }

    #[test]
    fn a_full_table_still_lets_new_clients_in() {
        let limiter = RateLimiter::with_capacity(
            RateLimitConfig {
                max_attempts: 1,
                window_secs: 3600,
            },
            100,
        );
        for i in 0..100 {
            assert!(limiter.allow(&[&format!("flood:{i}")]));
        }
        for i in 0..50 {
            assert!(limiter.allow(&[&format!("newcomer:{i}")]), "newcomer {i}");
        }
        // A newcomer's own window is still counted.
        assert!(!limiter.allow(&["newcomer:49"]));
    }
}
