//! The sessions service's errors and the one place that decides their gRPC
//! codes. The match has no `_` arm: a new variant does not compile until
//! someone decides its code.

use roster_core::validation::FieldViolation;
use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("too many attempts; try again later")]
    RateLimited,
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("caller: {0}")]
    Caller(#[source] Status),
    #[error("store failure")]
    Store(#[source] StoreError),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        Error::Store(err)
    }
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
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::RateLimited => Status::resource_exhausted("too many attempts; try again later"),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Caller(status) => status,
            Error::Store(e) => roster_core::error::internal(&e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
