//! The sessions service over real gRPC, with the user registry and the
//! access service beside it as `rosterd start all` runs them, and its store
//! on PostgreSQL and SQLite.

mod lockout;
mod login;
mod revocation;
mod second_factors;
mod sessions;
mod smoke;
mod store;
mod support;
mod timing;
