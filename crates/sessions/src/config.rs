//! The sessions service's settings (section `[sessions]`).

use roster_core::ratelimit::RateLimitConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// How long a session lives, in seconds, from login (fixed: using the
    /// session does not extend it).
    pub session_ttl_secs: u64,
    /// How long expired sessions stay listed (marked expired) before they
    /// are deleted, in seconds.
    pub keep_expired_secs: u64,
    /// Login attempts (with a password or a login token) per client address
    /// and window.
    pub login_rate_limit: RateLimitConfig,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 30 * 24 * 3600,
            keep_expired_secs: 7 * 24 * 3600,
            login_rate_limit: RateLimitConfig {
                max_attempts: 30,
                window_secs: 60,
            },
        }
    }
}

/// Ten years: long enough for any setting, short enough for timestamps.
const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

impl SessionsConfig {
    /// Refuses settings that cannot work, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_SECS).contains(&self.session_ttl_secs),
            "sessions.session_ttl_secs must be between 1 and {MAX_SECS} (ten years)"
        );
        for (key, value) in [
            ("keep_expired_secs", self.keep_expired_secs),
            (
                "login_rate_limit.window_secs",
                self.login_rate_limit.window_secs,
            ),
        ] {
            anyhow::ensure!(
                value <= MAX_SECS,
                "sessions.{key} must be at most {MAX_SECS} (ten years)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_that_cannot_be_timestamps_are_refused_at_start() {
        assert!(SessionsConfig::default().validate().is_ok());
        let config = SessionsConfig {
            session_ttl_secs: u64::MAX,
            ..SessionsConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("session_ttl_secs")
        );
    }
}
