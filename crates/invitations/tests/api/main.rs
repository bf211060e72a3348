//! The invitations service and its mailer over real gRPC, next to the other
//! services as `rosterd start all` runs them, delivering to a real SMTP
//! server (`roster_test_support::TestSmtp`); and the mail queue's store
//! conformance suite.

mod support;

mod faults;
mod mailer;
mod smoke;
mod store;
