//! The access service over real gRPC, with the user registry beside it as
//! `rosterd start all` runs them, and its store on PostgreSQL and SQLite.

mod api_keys;
mod auth_info;
mod escalation;
mod forged_events;
mod login_tokens;
mod older_registry;
mod smoke;
mod store;
mod support;

mod matrix;
mod revocation;
