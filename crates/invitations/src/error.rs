//! The invitations service's errors and the one place that decides their
//! gRPC codes.

use roster_core::validation::FieldViolation;
use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    #[error("caller: {0}")]
    Caller(#[source] Status),
    #[error("store failure")]
    Store(#[source] StoreError),
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::Caller(status)
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument(v) => v.into(),
            Error::Caller(status) => status,
            Error::Store(e) => roster_core::error::internal(&e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
