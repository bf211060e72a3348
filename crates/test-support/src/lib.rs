//! The test harness. A [`TestEnv`](env::TestEnv) gives each test its own
//! fresh PostgreSQL database, its own JetStream stream and subject
//! namespace, a SQLite file, and services on ephemeral ports, so tests run
//! in parallel against real parts.

pub mod db;
pub mod nats;

pub use db::{TestBackend, TestDb};
pub use nats::TestNats;
