//! Secret settings: keys, passwords, tokens and URLs that may carry
//! credentials. Their `Debug` never shows the value, so neither
//! `rosterd config`, nor a log line, nor a settings struct printed whole
//! can leak one, whatever field a future change adds; the value is read
//! only through an explicit [`Secret::expose`]. Values are wiped from
//! memory when dropped.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroize as _;

/// What `Debug` prints for a secret that is set.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string setting. Empty means "not set", which `Debug` shows as
/// `""` so that an operator can tell an unset secret from a set one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// A URL setting that may carry credentials (`user:password@`, a token, or
/// `?password=`). `Debug` shows it with those hidden (see
/// [`redacted_url`](crate::config::redacted_url)): where a service
/// connects is useful to see, how it logs in is not.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Secret::new(value))
    }

    /// The whole URL, credentials included, for the one place that
    /// connects with it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL as logs and errors may show it.
    pub fn redacted(&self) -> String {
        crate::config::redacted_url(self.expose())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        Self(Secret::from(value))
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Secret::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Settings {
        key: Secret,
        keys: Vec<Secret>,
        url: SecretUrl,
        unset: Secret,
    }

    fn parsed() -> Settings {
        serde_json::from_str(
            r#"{"key": "hunter2-key", "keys": ["k-one", "k-two"],
                "url": "postgres://roster:pg-pass@db:5432/roster?password=q-pass",
                "unset": ""}"#,
        )
        .unwrap()
    }

    #[test]
    fn debug_of_a_settings_struct_shows_no_secret_value() {
        let shown = format!("{:?} {:#?}", parsed(), parsed());
        for secret in [
            "hunter2-key",
            "k-one",
            "k-two",
            "pg-pass",
            "q-pass",
            "roster:",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains(REDACTED), "{shown}");
        assert!(
            shown.contains("db:5432/roster"),
            "the URL's host stays: {shown}"
        );
        assert!(
            shown.contains("unset: \"\""),
            "an unset secret shows as empty: {shown}"
        );
    }

    #[test]
    fn the_value_is_there_for_whoever_exposes_it() {
        let settings = parsed();
        assert_eq!(settings.key.expose(), "hunter2-key");
        assert_eq!(settings.keys[1].expose(), "k-two");
        assert!(settings.url.expose().contains("pg-pass"));
        assert!(settings.unset.is_empty());
        assert_eq!(Secret::from("a"), Secret::new(String::from("a")));
    }
}
