//! The user registry's errors and the one place that decides their gRPC
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
    #[error("metadata key {0:?} not found")]
    MetadataNotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("the last admin cannot be removed")]
    LastAdmin,
    #[error("{0}")]
    FailedPrecondition(&'static str),
    #[error("too many attempts; try again later")]
    RateLimited,
    #[error("the server is busy; try again later")]
    Busy,
    #[error("caller: {0}")]
    Caller(#[source] Status),
    #[error("store failure")]
    Store(#[source] StoreError),
    #[error("internal failure")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists(key) => Error::AlreadyExists(key),
            StoreError::LastAdmin => Error::LastAdmin,
            StoreError::MetadataFull { limit, count } => {
                Error::InvalidArgument(FieldViolation::new(
                    "metadata",
                    format!(
                        "a user may have at most {limit} metadata entries; this would make {count}"
                    ),
                ))
            }
            StoreError::MetadataMissing(key) => Error::MetadataNotFound(key),
            other => Error::Store(other),
        }
    }
}

impl From<roster_core::password::PasswordError> for Error {
    fn from(err: roster_core::password::PasswordError) -> Self {
        match err {
            // Every hashing slot is taken: shed the request rather than
            // queue it for ever.
            roster_core::password::PasswordError::Busy => Error::Busy,
            other => Error::Internal(other.into()),
        }
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
            err @ Error::MetadataNotFound(_) => Status::not_found(err.to_string()),
            Error::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
            Error::LastAdmin => {
                Status::failed_precondition("last_admin: the last admin cannot be removed")
            }
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::RateLimited => Status::resource_exhausted("too many attempts; try again later"),
            Error::Busy => Status::unavailable("the server is busy; try again later"),
            Error::Caller(status) => status,
            Error::Store(e) => roster_core::error::internal(&e),
            Error::Internal(e) => roster_core::error::internal_anyhow(&e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
