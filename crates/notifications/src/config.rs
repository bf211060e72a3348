//! The notifications service's settings (section `[notifications]`).

use std::time::Duration;

use serde::Deserialize;

/// The shortest interval between two checks of a subscriber's credential.
pub const MIN_STREAM_RECHECK_SECS: u64 = 1;
/// The longest interval between two checks of a subscriber's credential.
pub const MAX_STREAM_RECHECK_SECS: u64 = 3600;

/// The notifications' settings (section `[notifications]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// How often an open `Subscribe` stream checks again that the caller's
    /// credential still resolves and still carries
    /// `RIGHT_USER_NOTIFICATIONS_READ`, in seconds (1 to 3600). It is also
    /// checked whenever an event about the user arrives, so a revoked
    /// credential usually ends the stream at once; this bounds the wait
    /// when that event is missed.
    pub stream_recheck_secs: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            stream_recheck_secs: 5,
        }
    }
}

impl NotificationsConfig {
    /// Refuses settings that cannot work, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (MIN_STREAM_RECHECK_SECS..=MAX_STREAM_RECHECK_SECS).contains(&self.stream_recheck_secs),
            "notifications.stream_recheck_secs must be between {MIN_STREAM_RECHECK_SECS} and {MAX_STREAM_RECHECK_SECS}"
        );
        Ok(())
    }

    /// [`stream_recheck_secs`](Self::stream_recheck_secs) as a duration,
    /// within the limits [`validate`](Self::validate) enforces.
    pub fn stream_recheck(&self) -> Duration {
        Duration::from_secs(
            self.stream_recheck_secs
                .clamp(MIN_STREAM_RECHECK_SECS, MAX_STREAM_RECHECK_SECS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let config = NotificationsConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.stream_recheck(), Duration::from_secs(5));
    }

    #[test]
    fn a_recheck_interval_out_of_range_is_refused_naming_the_key() {
        for secs in [0, MAX_STREAM_RECHECK_SECS + 1, u64::MAX] {
            let config = NotificationsConfig {
                stream_recheck_secs: secs,
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("notifications.stream_recheck_secs"),
                "{secs}: {error}"
            );
        }
        for ok in [MIN_STREAM_RECHECK_SECS, MAX_STREAM_RECHECK_SECS] {
            let config = NotificationsConfig {
                stream_recheck_secs: ok,
            };
            assert!(config.validate().is_ok());
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<NotificationsConfig, _> =
            serde_json::from_str(r#"{"stream_recheck_secs": 2, "recheck": 1}"#);
        assert!(parsed.is_err());
        let parsed: NotificationsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed.stream_recheck_secs, 5);
    }
}
