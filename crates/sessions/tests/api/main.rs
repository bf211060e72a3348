//! The sessions service over real gRPC, with the user registry and the
//! access service beside it as `rosterd start all` runs them.

mod smoke;
