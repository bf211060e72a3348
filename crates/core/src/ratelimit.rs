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

pub struct RateLimiter {
    config: RateLimitConfig,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt for every key; false if any key is over its limit.
    pub fn allow(&self, keys: &[&str]) -> bool {
        if self.config.max_attempts == 0 {
            return true;
        }
        let window = Duration::from_secs(self.config.window_secs.max(1));
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let mut allowed = true;
        for key in keys.iter().filter(|k| !k.is_empty()) {
            let entry = windows.entry((*key).to_string()).or_insert((now, 0));
            if now.duration_since(entry.0) >= window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
            if entry.1 > self.config.max_attempts {
                allowed = false;
            }
        }
        allowed
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
        assert!(limiter.allow(&["user:a", "ip:1"]));
        assert!(limiter.allow(&["user:a", "ip:1"]));
        assert!(!limiter.allow(&["user:a", "ip:2"]));
        assert!(limiter.allow(&["user:b", "ip:2"]));
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
