//! The whole configuration of a `rosterd` process. Every key has a default,
//! so no configuration at all runs the embedded default: SQLite files under
//! `./data`, the in-process event bus, gRPC on 127.0.0.1:8884.

use roster_access::AccessConfig;
use roster_core::auth::AuthConfig;
use roster_core::db::DatabaseConfig;
use roster_core::events::EventsConfig;
use roster_core::metrics::MetricsConfig;
use roster_core::password::PasswordConfig;
use roster_core::ratelimit::RateLimitConfig;
use roster_core::secret::Secret;
use roster_core::server::ServerConfig;
use roster_core::telemetry::TelemetryConfig;
use roster_core::tls::TlsConfig;
use roster_invitations::{InvitationsConfig, MailConfig};
use roster_notifications::NotificationsConfig;
use roster_sessions::SessionsConfig;
use roster_user_registry::UserRegistryConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where gRPC listens (`host:port`).
    pub listen: String,
    /// Where the internal services (the ones only other Roster services
    /// call, with the cluster key) listen, with every other service too,
    /// for the deployment's own traffic. Set: `listen` serves only the
    /// public services and refuses cluster keys, and peers' cluster
    /// addresses must point here. Empty: everything on `listen`.
    pub internal_listen: String,
    /// Health and shutdown: `drain_delay_ms`, `readiness_interval_ms`.
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub events: EventsConfig,
    pub telemetry: TelemetryConfig,
    /// Prometheus metrics on `GET /metrics` at `listen`; empty: off.
    pub metrics: MetricsConfig,
    pub auth: AuthConfig,
    pub password: PasswordConfig,
    pub cluster: ClusterConfig,
    pub user_registry: UserRegistryConfig,
    pub access: AccessConfig,
    pub sessions: SessionsConfig,
    pub mail: MailConfig,
    pub invitations: InvitationsConfig,
    pub notifications: NotificationsConfig,
    pub bootstrap: BootstrapConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8884".into(),
            internal_listen: String::new(),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            database: DatabaseConfig::default(),
            events: EventsConfig::default(),
            telemetry: TelemetryConfig::default(),
            metrics: MetricsConfig::default(),
            auth: AuthConfig::default(),
            password: PasswordConfig::default(),
            cluster: ClusterConfig::default(),
            user_registry: UserRegistryConfig::default(),
            access: AccessConfig::default(),
            sessions: SessionsConfig::default(),
            mail: MailConfig::default(),
            invitations: InvitationsConfig::default(),
            notifications: NotificationsConfig::default(),
            bootstrap: BootstrapConfig::default(),
        }
    }
}

/// The shortest cluster key accepted: 32 bytes, as many as a random key
/// needs to be out of reach of guessing.
pub const MIN_CLUSTER_KEY_BYTES: usize = 32;

impl Settings {
    /// Refuses settings that are unsafe together, naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.server.validate()?;
        // The built-in key is in Roster's source: fine for the embedded
        // default on one machine, not for a database other hosts reach.
        anyhow::ensure!(
            self.database.url.is_empty() || !self.auth.token_hash_key.is_empty(),
            "auth.token_hash_key is required with a PostgreSQL database (database.url); \
             set it to a long random secret shared by every process"
        );
        Ok(())
    }
}

/// How the services of a deployment find and trust each other.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Shared secrets that internal calls present in
    /// `x-roster-cluster-key`. The first one is used for outgoing calls.
    /// Each must be at least [`MIN_CLUSTER_KEY_BYTES`] bytes long. With
    /// none, a process makes a random key of its own (fine for `start
    /// all`; separate processes need a common key).
    pub keys: Vec<Secret>,
    /// Wrong cluster keys one client address may present per window; past
    /// that, its cluster-key calls get `RESOURCE_EXHAUSTED` unchecked until
    /// the window ends.
    pub wrong_key_rate_limit: RateLimitConfig,
    /// Peer addresses are `http://host:port`, or `https://host:port` to
    /// reach the peer over TLS (trusting `tls.ca_file`).
    ///
    /// The address of the access service (`http://host:port`), which
    /// resolves credentials. Empty: this process itself.
    pub access_address: String,
    /// The address of the user registry (`http://host:port`), which the
    /// access and sessions services ask about users and passwords. Empty:
    /// this process itself.
    pub user_registry_address: String,
    /// The address of the sessions service (`http://host:port`), which the
    /// access service asks about session tokens. Empty: this process.
    pub sessions_address: String,
    /// The address of the invitations service (`http://host:port`), whose
    /// mailer every service hands its mails to, and which checks invitation
    /// tokens at registration. Empty: this process.
    pub invitations_address: String,
}

impl ClusterConfig {
    /// Refuses a configured key shorter than [`MIN_CLUSTER_KEY_BYTES`],
    /// naming its position (never its value).
    pub fn check_keys(&self) -> anyhow::Result<()> {
        for (i, key) in self.keys.iter().enumerate() {
            anyhow::ensure!(
                key.expose().len() >= MIN_CLUSTER_KEY_BYTES,
                "cluster.keys: key {} of {} is {} bytes long; every cluster key must be at least {MIN_CLUSTER_KEY_BYTES} bytes (for example `openssl rand -hex 32`)",
                i + 1,
                self.keys.len(),
                key.expose().len()
            );
        }
        Ok(())
    }
}

/// The first admin, made once so that a fresh install can be driven by
/// scripts. Applied by the process that serves the access service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// The admin's user ID. Empty: no bootstrap.
    pub admin_user_id: String,
    /// The admin's primary email address. Empty: `<admin_user_id>@roster.invalid`.
    pub admin_email: String,
    /// The admin's password (a secret; prefer `admin_password_file` or the
    /// `ROSTER__BOOTSTRAP__ADMIN_PASSWORD` variable). Empty, and no file: a
    /// random password nobody knows; use the API key.
    pub admin_password: Secret,
    /// A file holding the admin's password (a mounted secret); wins over
    /// `admin_password`. Trailing newlines are ignored.
    pub admin_password_file: String,
    /// When set and the file does not exist yet: an API key with every
    /// right for the admin is created and written there (mode 0600). An
    /// existing file is left alone, so the key is made once.
    pub admin_api_key_file: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every secret setting, set through the environment as an operator
    /// would, each with a value no other setting shows.
    const SECRETS: &[(&str, &str)] = &[
        ("ROSTER__CLUSTER__KEYS", "cluster-key-one,cluster-key-two"),
        ("ROSTER__AUTH__TOKEN_HASH_KEY", "token-hash-key-value"),
        ("ROSTER__BOOTSTRAP__ADMIN_PASSWORD", "bootstrap-admin-pass"),
        (
            "ROSTER__DATABASE__URL",
            "postgres://roster:database-pass@db:5432/roster?password=query-pass",
        ),
        (
            "ROSTER__MAIL__SMTP_URL",
            "smtps://mailer:smtp-pass@mail:465",
        ),
        (
            "ROSTER__EVENTS__NATS_URL",
            "nats://nats-url-token@nats:4222",
        ),
        ("ROSTER__EVENTS__NATS_PASSWORD", "nats-password-value"),
        ("ROSTER__EVENTS__NATS_USER", "roster"),
        (
            "ROSTER__TELEMETRY__OTLP_ENDPOINT",
            "http://otlp-user:otlp-pass@otel:4317",
        ),
    ];

    fn load(vars: &[(&str, &str)]) -> Settings {
        roster_core::config::load_from(
            None,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap()
    }

    #[test]
    fn printed_settings_show_no_secret_value() {
        let settings = load(SECRETS);
        assert_eq!(settings.cluster.keys[1].expose(), "cluster-key-two");
        let shown = format!("{settings:?}\n{settings:#?}");
        for leaked in [
            "cluster-key-one",
            "cluster-key-two",
            "token-hash-key-value",
            "bootstrap-admin-pass",
            "database-pass",
            "query-pass",
            "smtp-pass",
            "nats-url-token",
            "nats-password-value",
            "otlp-pass",
        ] {
            assert!(!shown.contains(leaked), "{leaked} shows: {shown}");
        }
        // Where things are stays visible.
        assert!(shown.contains("db:5432/roster"), "{shown}");
        assert!(shown.contains("nats:4222"), "{shown}");
    }

    #[test]
    fn a_secret_that_looks_like_a_number_stays_text() {
        let settings = load(&[("ROSTER__BOOTSTRAP__ADMIN_PASSWORD", "0012345678901")]);
        assert_eq!(settings.bootstrap.admin_password.expose(), "0012345678901");
    }

    #[test]
    fn postgres_without_a_token_hash_key_is_refused_naming_the_setting() {
        let url = ("ROSTER__DATABASE__URL", "postgres://roster@db/roster");
        let error = load(&[url]).validate().unwrap_err();
        assert!(error.to_string().contains("auth.token_hash_key"), "{error}");
        load(&[url, ("ROSTER__AUTH__TOKEN_HASH_KEY", "k")])
            .validate()
            .unwrap();
        // The embedded default (SQLite) may use the built-in key.
        load(&[]).validate().unwrap();
    }
}
