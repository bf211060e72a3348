//! The access service's settings (section `[access]`).

use roster_core::ratelimit::RateLimitConfig;
use serde::Deserialize;

/// The longest a login token may live: it is a password stand-in sent by
/// mail, meant to be used within minutes.
pub const MAX_LOGIN_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

/// The longest rate-limit window.
const MAX_WINDOW_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Whether CreateLoginToken works at all (off unless enabled).
    pub login_tokens_enabled: bool,
    /// How long a login token lives, in seconds.
    pub login_token_ttl_secs: u64,
    /// Most live (unused, unexpired) login tokens per user.
    pub max_live_login_tokens: u32,
    /// Limits on CreateLoginToken, per client address and per user.
    pub login_token_rate_limit: RateLimitConfig,
    /// Whether a user whose primary email address is not validated keeps
    /// only RIGHT_USER_INFO, RIGHT_USER_SETTINGS_BASIC and RIGHT_USER_DELETE
    /// on their own account until it is.
    pub require_validated_email: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            login_tokens_enabled: false,
            login_token_ttl_secs: 3600,
            max_live_login_tokens: 5,
            login_token_rate_limit: RateLimitConfig::default(),
            require_validated_email: false,
        }
    }
}

impl AccessConfig {
    /// Refuses settings that cannot work, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_LOGIN_TOKEN_TTL_SECS).contains(&self.login_token_ttl_secs),
            "access.login_token_ttl_secs must be between 1 and {MAX_LOGIN_TOKEN_TTL_SECS} (30 days)"
        );
        anyhow::ensure!(
            self.login_token_rate_limit.window_secs <= MAX_WINDOW_SECS,
            "access.login_token_rate_limit.window_secs must be at most {MAX_WINDOW_SECS} (one day)"
        );
        anyhow::ensure!(
            self.max_live_login_tokens > 0,
            "access.max_live_login_tokens must be above 0"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_that_cannot_be_timestamps_are_refused_at_start() {
        assert!(AccessConfig::default().validate().is_ok());
        for ttl in [0, MAX_LOGIN_TOKEN_TTL_SECS + 1, u64::MAX] {
            let config = AccessConfig {
                login_token_ttl_secs: ttl,
                ..AccessConfig::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("access.login_token_ttl_secs"), "{error}");
        }
        let config = AccessConfig {
            login_token_rate_limit: RateLimitConfig {
                max_attempts: 1,
                window_secs: u64::MAX,
            },
            ..AccessConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
