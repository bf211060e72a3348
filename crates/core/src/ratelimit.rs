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
/// table is still full, attempts under new keys are refused (failing closed
/// protects the expensive work behind the limit).
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    config: RateLimitConfig,
    state: Mutex<State>,
}

struct State {
    windows: HashMap<String, (Instant, u32)>,
    last_prune: Instant,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
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
        // Pruning scans the table, so it runs at most once a second.
        if state.windows.len() >= MAX_KEYS
            && now.duration_since(state.last_prune) >= Duration::from_secs(1)
        {
            state
                .windows
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            state.last_prune = now;
        }
        for key in keys.iter().filter(|k| !k.is_empty()) {
            if !state.windows.contains_key(*key) && state.windows.len() >= MAX_KEYS {
                tracing::warn!("rate limit table full; refusing attempts under new keys");
                return false;
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
}
