//! The invitations service and its mailer over real gRPC, next to the other
//! services as `rosterd start all` runs them, delivering to a real SMTP
//! server (`roster_test_support::TestSmtp`); and the store conformance
//! suite of the mail queue and the invitations.

mod support;

mod claims;
mod faults;
mod invitations;
mod mailer;
mod smoke;
mod store;
