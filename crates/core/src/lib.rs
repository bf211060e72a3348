//! What every Roster service shares, and nothing that only one service uses:
//!
//! - [`component`]: what every service's `*Component` does for its process
//!   (register gRPC services, run background tasks until shutdown);
//! - [`config`]: layered configuration (defaults → TOML file → environment);
//! - [`telemetry`]: tracing subscriber and optional OTLP export;
//! - [`server`]: the gRPC server bootstrap (health, reflection, tracing,
//!   graceful shutdown);
//! - [`error`]: the internal-error pattern and status helpers;
//! - [`validation`]: field violations that name the field;
//! - [`list`]: limit/page/order, `x-total-count` and field masks;
//! - [`db`]: PostgreSQL and SQLite pools and per-service migrations;
//! - [`health`]: readiness checks behind `grpc.health.v1`;
//! - [`files`]: files and folders readable by their owner only;
//! - [`events`]: the event bus (NATS JetStream or in-process), the
//!   transactional outbox and its relay;
//! - [`auth`]: bearer token → `AuthInfo` → cached → rights checks;
//! - [`mail`]: the mail outbox, through which services hand mails with
//!   secrets to the mailer;
//! - [`ratelimit`]: per-key attempt limits for unauthenticated methods;
//! - [`resend`]: channels that send a call again when the server never
//!   saw it (a connection closing under it);
//! - [`rights`]: right sets and state limits;
//! - [`password`]: Argon2id hashing on the blocking pool;
//! - [`token`]: random secrets and `<type>.<id>.<secret>` tokens;
//! - [`tls`]: TLS on the server and on channels to peers, reloaded when
//!   the certificate files change.
//! - [`metrics`]: Prometheus metrics, their names, and the gRPC layer
//!   that counts every call;
//! - [`secret`]: secret settings whose `Debug` shows no value.

pub mod auth;
pub mod component;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod files;
pub mod health;
pub mod list;
pub mod mail;
pub mod metrics;
pub mod password;
pub mod ratelimit;
pub mod resend;
pub mod rights;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod token;
pub mod validation;
