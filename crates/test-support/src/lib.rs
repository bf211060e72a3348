//! The test harness. A [`TestEnv`](env::TestEnv) gives each test its own
//! fresh PostgreSQL database, its own JetStream stream and subject
//! namespace, a SQLite file, and services on ephemeral ports, so tests run
//! in parallel against real parts.

pub mod assert;
pub mod db;
pub mod env;
pub mod events;
pub mod nats;
pub mod pki;
pub mod smtp;

pub use assert::{assert_invalid_field, expect_code, total_count};
pub use db::{TestBackend, TestDb, outbox_max_attempts};
pub use env::{
    Backend, TEST_PASSWORD, TestConfig, TestEnv, UserRegistryReplica, next_event,
    test_password_config, with_cluster_key, with_token,
};
pub use events::{event_contains, event_data, next_event_where};
pub use nats::TestNats;
pub use pki::{TestCa, TestCert, client_tls};
/// The lockout settings of the user registry, for tests of other
/// services that log in (they count where passwords are checked).
pub use roster_user_registry::config::SecondFactorPolicy;
pub use roster_user_registry::lockout::LockoutConfig;
pub use smtp::{ReceivedMail, TestSmtp};
