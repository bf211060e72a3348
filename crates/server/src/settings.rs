//! The whole configuration of a `rosterd` process. Every key has a default,
//! so no configuration at all runs the embedded default: SQLite files under
//! `./data`, the in-process event bus, gRPC on 127.0.0.1:8884.

use roster_core::auth::AuthConfig;
use roster_core::db::DatabaseConfig;
use roster_core::events::EventsConfig;
use roster_core::password::PasswordConfig;
use roster_core::telemetry::TelemetryConfig;
use roster_user_registry::UserRegistryConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where gRPC listens (`host:port`).
    pub listen: String,
    pub database: DatabaseConfig,
    pub events: EventsConfig,
    pub telemetry: TelemetryConfig,
    pub auth: AuthConfig,
    pub password: PasswordConfig,
    pub cluster: ClusterConfig,
    pub user_registry: UserRegistryConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8884".into(),
            database: DatabaseConfig::default(),
            events: EventsConfig::default(),
            telemetry: TelemetryConfig::default(),
            auth: AuthConfig::default(),
            password: PasswordConfig::default(),
            cluster: ClusterConfig::default(),
            user_registry: UserRegistryConfig::default(),
        }
    }
}

/// How the services of a deployment find and trust each other.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Shared secrets that internal calls present in
    /// `x-roster-cluster-key`. The first one is used for outgoing calls.
    /// With none, a process makes a random key of its own (fine for
    /// `start all`; separate processes need a common key).
    pub keys: Vec<String>,
    /// The address of the access service (`http://host:port`), which
    /// resolves credentials. Empty: this process itself.
    pub access_address: String,
}
