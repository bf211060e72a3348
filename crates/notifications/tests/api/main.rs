//! The notifications service over real gRPC, next to the other services as
//! `rosterd start all` runs them, on both backends: who may create, how
//! receivers resolve, listing and marking, events, mails to a real SMTP
//! server, streaming; and the store conformance suite.

mod support;

mod create;
mod directory;
mod events;
mod list;
mod mail;
mod status;
mod store;
mod subscribe;
