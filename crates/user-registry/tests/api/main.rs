//! The user registry over real gRPC, on PostgreSQL with JetStream and on
//! SQLite with the in-process bus.

mod bad_input;
mod cache;
mod create;
mod credentials;
mod delete;
mod email_validation;
mod escalation;
mod external;
mod factors;
mod get;
mod hardening;
mod invited;
mod lifecycle;
mod list;
mod machine;
mod mails;
mod metadata;
mod outbox;
mod password;
mod search;
mod smoke;
mod store;
mod support;
mod update;
