//! The `roster` binary against a real `rosterd start all` (the embedded
//! default: SQLite files, the in-process bus, mails as files), one server
//! per test, driven only through the command line as scripts drive it.

mod docs;
mod errors;
mod factors;
mod journey;
mod machines;
mod metadata;
mod nouns;
mod support;
mod tables;
mod tls;
mod watch;
