//! The invitations service and its mailer over real gRPC, next to the other
//! services as `rosterd start all` runs them.

mod smoke;
