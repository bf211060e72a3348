//! End-to-end tests: `rosterd` started as a process, called over gRPC the
//! way an operator or a client would.

mod access;
mod embedded;
mod health;
mod journey;
mod lifecycle;
mod mail;
mod metrics;
mod process;
mod production;
mod rolling;
mod security;
mod sessions;
mod tls;

/// The identifiers of the user `id`, as most calls take them.
pub fn ids(id: &str) -> roster_proto::v1::UserIdentifiers {
    roster_proto::v1::UserIdentifiers {
        user_id: id.into(),
        email: String::new(),
    }
}
