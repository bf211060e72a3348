//! The invitations service's errors and the one place that decides their
//! gRPC codes. The match has no `_` arm: a new variant does not compile
//! until someone decides its code.

use roster_core::validation::FieldViolation;
use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolation),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(&'static str),
    #[error("caller: {0}")]
    Caller(#[source] Status),
    #[error("store failure")]
    Store(#[source] StoreError),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvitationPending(email) => Error::AlreadyExists(format!(
                "invitation_already_sent: `{email}` has a pending invitation (delete or resend it)"
            )),
            other => Error::Store(other),
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
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Caller(status) => status,
            Error::Store(e) => roster_core::error::internal(&e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
