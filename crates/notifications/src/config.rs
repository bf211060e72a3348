//! The notifications service's settings (section `[notifications]`).

use std::time::Duration;

use serde::Deserialize;

/// The shortest interval between two checks of a subscriber's credential.
pub const MIN_STREAM_RECHECK_SECS: u64 = 1;
/// The longest interval between two checks of a subscriber's credential.
pub const MAX_STREAM_RECHECK_SECS: u64 = 3600;
/// The most `Subscribe` streams per receiver the setting may allow.
pub const MAX_STREAMS_PER_USER: u32 = 1000;

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
    /// How many `Subscribe` streams of one receiver may be open at once on
    /// this server (1 to 1000), whoever opened them; one more is refused
    /// with `RESOURCE_EXHAUSTED` until one of them ends.
    pub max_streams_per_user: u32,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            stream_recheck_secs: 5,
            max_streams_per_user: 8,
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
        anyhow::ensure!(
            (1..=MAX_STREAMS_PER_USER).contains(&self.max_streams_per_user),
            "notifications.max_streams_per_user must be between 1 and {MAX_STREAMS_PER_USER}"
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

    /// [`max_streams_per_user`](Self::max_streams_per_user), within the
    /// limits [`validate`](Self::validate) enforces.
    pub fn stream_cap(&self) -> usize {
        self.max_streams_per_user.clamp(1, MAX_STREAMS_PER_USER) as usize
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
        assert_eq!(config.stream_cap(), 8);
    }

    #[test]
    fn a_recheck_interval_out_of_range_is_refused_naming_the_key() {
        for secs in [0, MAX_STREAM_RECHECK_SECS + 1, u64::MAX] {
            let config = NotificationsConfig {
                stream_recheck_secs: secs,
                ..NotificationsConfig::default()
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
                ..NotificationsConfig::default()
            };
            assert!(config.validate().is_ok());
        }
    }

    #[test]
    fn a_stream_cap_out_of_range_is_refused_naming_the_key() {
        for max in [0, MAX_STREAMS_PER_USER + 1, u32::MAX] {
            let config = NotificationsConfig {
                max_streams_per_user: max,
                ..NotificationsConfig::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("notifications.max_streams_per_user"),
                "{max}: {error}"
            );
        }
        for ok in [1, MAX_STREAMS_PER_USER] {
            let config = NotificationsConfig {
                max_streams_per_user: ok,
                ..NotificationsConfig::default()
            };
            assert!(config.validate().is_ok());
            assert_eq!(config.stream_cap(), ok as usize);
        }
        let parsed: NotificationsConfig =
            serde_json::from_str(r#"{"max_streams_per_user": 2}"#).unwrap();
        assert_eq!(parsed.max_streams_per_user, 2);
        assert_eq!(parsed.stream_recheck_secs, 5);
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
