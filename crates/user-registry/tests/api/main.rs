//! The user registry over real gRPC, on PostgreSQL with JetStream and on
//! SQLite with the in-process bus.

mod smoke;
mod support;
