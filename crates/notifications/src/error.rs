//! The notifications service's errors and the one place that decides their
//! gRPC codes. The match has no `_` arm: a new variant does not compile
//! until someone decides its code.

use roster_core::validation::FieldViolation;
use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    /// The caller may not do this (`UNAUTHENTICATED`, `PERMISSION_DENIED`).
    #[error("caller: {0}")]
    Caller(#[source] Status),
    /// Another service could not answer (already a status for the caller,
    /// usually `UNAVAILABLE`).
    #[error("peer: {0}")]
    Peer(#[source] Status),
    /// The receiver has as many `Subscribe` streams open as allowed
    /// (`RESOURCE_EXHAUSTED`).
    #[error("at most {max} notification streams of one receiver may be open at once")]
    TooManyStreams { max: usize },
    #[error("store failure")]
    Store(#[from] StoreError),
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
            Error::Peer(status) => status,
            Error::TooManyStreams { max } => Status::resource_exhausted(format!(
                "this receiver has {max} notification streams open already, as many as \
                 allowed at once; close one before opening another"
            )),
            Error::Store(e) => roster_core::error::internal(&e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
