//! End-to-end tests: `rosterd` started as a process, called over gRPC the
//! way an operator or a client would.

mod access;
mod embedded;
mod health;
mod journey;
mod mail;
mod metrics;
mod process;
mod production;
mod security;
mod sessions;
mod tls;
