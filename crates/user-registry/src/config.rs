//! The user registry's settings (section `[user_registry]`).

use roster_core::ratelimit::RateLimitConfig;
use serde::Deserialize;

use crate::domain::PasswordPolicy;
use crate::lockout::LockoutConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserRegistryConfig {
    /// Whether people may register themselves (admins always may create).
    pub registration_enabled: bool,
    /// Whether self-registration needs an invitation token.
    pub invitation_required: bool,
    /// Whether self-registered users start as REQUESTED until an admin
    /// approves them.
    pub admin_approval_required: bool,
    /// How long a soft-deleted user can be restored, in seconds.
    pub restore_window_secs: u64,
    /// How long a forgotten-password temporary password lives, in seconds.
    pub temporary_password_ttl_secs: u64,
    /// How long a temporary password set by an admin lives, in seconds.
    pub admin_temporary_password_ttl_secs: u64,
    /// How long an email validation secret lives, in seconds.
    pub email_validation_ttl_secs: u64,
    /// Searches with text filters count matches up to this many; the
    /// `x-total-count` of a search that reaches it says "at least" (and
    /// `x-total-count-capped: true` is set).
    pub search_count_cap: u64,
    /// The password rules.
    pub password_policy: PasswordPolicy,
    /// Limits on the unauthenticated methods (UpdatePassword,
    /// CreateTemporaryPassword), per user and per client address.
    pub rate_limit: RateLimitConfig,
    /// Limits on self-registration (Create by non-admins), per client
    /// address. Each registration costs a password hash.
    pub registration_rate_limit: RateLimitConfig,
    /// Wrong passwords, and the locks they lead to (see `lockout.rs`).
    pub lockout: LockoutConfig,
    /// The most metadata entries a user may have (`UserMetadata`), 1 to
    /// 1000.
    pub metadata_max_entries: u64,
    /// The largest metadata value, in bytes, 1 to 65536 (64 KiB).
    pub metadata_max_value_bytes: usize,
    /// Keys that seal TOTP secrets and key the digests of recovery and
    /// mailed codes, each at least 32 characters (see `factor_keys.rs`):
    /// the first seals, all open, so a key rotates by going first. Empty:
    /// `rosterd` derives one from `auth.token_hash_key`, or, on the
    /// embedded default without that either, generates one once into
    /// `second-factor.key` beside the SQLite files.
    pub second_factor_keys: Vec<roster_core::secret::Secret>,
    /// The issuer shown by authenticator apps (the `otpauth://` URI).
    pub totp_issuer: String,
    /// How long a mailed second-factor code lives, in seconds.
    pub email_code_ttl_secs: u64,
    /// Who must have a second factor: `off`, `admins` or `everyone`. A
    /// user it applies to who has none gets the pending action
    /// ENROL_SECOND_FACTOR, so their sessions may only add one.
    pub require_second_factor: SecondFactorPolicy,
    /// The most bytes of users kept in memory for `Get` and checked
    /// `GetWithStatus` answers (see `store/cache.rs`: a user counts for its
    /// text, attributes and profile picture; one larger than an eighth of
    /// this is not kept). 0 turns the cache off.
    pub user_cache_max_bytes: u64,
    /// How long a cached user is served at most, in milliseconds: how
    /// stale a `Get` may be in this process when the event of a change
    /// made by another process is lost (events drop it within
    /// milliseconds). 0 turns the cache off.
    pub user_cache_ttl_ms: u64,
}

/// Who must have a second factor (`user_registry.require_second_factor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondFactorPolicy {
    #[default]
    Off,
    Admins,
    Everyone,
}

impl SecondFactorPolicy {
    /// Whether the policy asks a second factor of a user who is an admin
    /// (`admin`) or not.
    pub fn applies_to(self, admin: bool) -> bool {
        match self {
            Self::Off => false,
            Self::Admins => admin,
            Self::Everyone => true,
        }
    }
}

impl Default for UserRegistryConfig {
    fn default() -> Self {
        Self {
            registration_enabled: true,
            invitation_required: false,
            admin_approval_required: false,
            restore_window_secs: 24 * 3600,
            temporary_password_ttl_secs: 3600,
            admin_temporary_password_ttl_secs: 36 * 3600,
            email_validation_ttl_secs: 24 * 3600,
            search_count_cap: 1_000,
            password_policy: PasswordPolicy::default(),
            rate_limit: RateLimitConfig::default(),
            registration_rate_limit: RateLimitConfig {
                max_attempts: 60,
                window_secs: 60,
            },
            lockout: LockoutConfig::default(),
            metadata_max_entries: 50,
            metadata_max_value_bytes: 4096,
            second_factor_keys: Vec::new(),
            totp_issuer: "Roster".into(),
            email_code_ttl_secs: 10 * 60,
            require_second_factor: SecondFactorPolicy::Off,
            user_cache_max_bytes: 64 * 1024 * 1024,
            user_cache_ttl_ms: 10_000,
        }
    }
}

/// Longest lifetime or window a setting may give, so that adding it to a
/// timestamp can never overflow.
const MAX_SECS: u64 = 100 * 365 * 24 * 3600;

/// The longest a cached user may be served.
const MAX_USER_CACHE_TTL_MS: u64 = 24 * 3600 * 1000;

impl UserRegistryConfig {
    /// How long a cached user is served at most.
    pub fn user_cache_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.user_cache_ttl_ms)
    }

    /// Checks the values at start, naming the key of a bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, value) in [
            ("restore_window_secs", self.restore_window_secs),
            (
                "temporary_password_ttl_secs",
                self.temporary_password_ttl_secs,
            ),
            (
                "admin_temporary_password_ttl_secs",
                self.admin_temporary_password_ttl_secs,
            ),
            ("email_validation_ttl_secs", self.email_validation_ttl_secs),
            ("rate_limit.window_secs", self.rate_limit.window_secs),
            (
                "registration_rate_limit.window_secs",
                self.registration_rate_limit.window_secs,
            ),
            ("lockout.window_secs", self.lockout.window_secs),
            ("lockout.lock_secs", self.lockout.lock_secs),
            ("email_code_ttl_secs", self.email_code_ttl_secs),
        ] {
            anyhow::ensure!(
                value <= MAX_SECS,
                "user_registry.{key} must be at most {MAX_SECS} (100 years)"
            );
        }
        anyhow::ensure!(
            self.user_cache_ttl_ms <= MAX_USER_CACHE_TTL_MS,
            "user_registry.user_cache_ttl_ms must be at most {MAX_USER_CACHE_TTL_MS} (a day)"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.metadata_max_entries),
            "user_registry.metadata_max_entries must be 1 to 1000"
        );
        anyhow::ensure!(
            (1..=65536).contains(&self.metadata_max_value_bytes),
            "user_registry.metadata_max_value_bytes must be 1 to 65536"
        );
        let policy = &self.password_policy;
        anyhow::ensure!(
            policy.min_length <= policy.max_length,
            "user_registry.password_policy.min_length must not exceed max_length"
        );
        // NIST SP 800-63B's floor and OWASP ASVS 2.1.2's ceiling.
        anyhow::ensure!(
            policy.min_length >= 8,
            "user_registry.password_policy.min_length must be at least 8"
        );
        anyhow::ensure!(
            policy.max_length >= 64,
            "user_registry.password_policy.max_length must be at least 64"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_policy(min_length: usize, max_length: usize) -> UserRegistryConfig {
        UserRegistryConfig {
            password_policy: PasswordPolicy {
                min_length,
                max_length,
                ..PasswordPolicy::default()
            },
            ..UserRegistryConfig::default()
        }
    }

    #[test]
    fn password_lengths_below_the_standards_are_refused_naming_the_setting() {
        UserRegistryConfig::default().validate().unwrap();
        with_policy(8, 64).validate().unwrap();
        for (config, key) in [
            (with_policy(7, 128), "password_policy.min_length"),
            (with_policy(12, 63), "password_policy.max_length"),
            (with_policy(100, 64), "password_policy.min_length"),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
    }

    #[test]
    fn metadata_limits_out_of_range_are_refused_naming_the_setting() {
        for (config, key) in [
            (
                UserRegistryConfig {
                    metadata_max_entries: 0,
                    ..UserRegistryConfig::default()
                },
                "metadata_max_entries",
            ),
            (
                UserRegistryConfig {
                    metadata_max_entries: 1001,
                    ..UserRegistryConfig::default()
                },
                "metadata_max_entries",
            ),
            (
                UserRegistryConfig {
                    metadata_max_value_bytes: 0,
                    ..UserRegistryConfig::default()
                },
                "metadata_max_value_bytes",
            ),
            (
                UserRegistryConfig {
                    metadata_max_value_bytes: 65537,
                    ..UserRegistryConfig::default()
                },
                "metadata_max_value_bytes",
            ),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
