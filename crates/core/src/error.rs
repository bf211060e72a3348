//! The error pattern every service follows: each service has one
//! `thiserror` enum and an exhaustive `From<Error> for tonic::Status`. This
//! module holds the pieces those mappings share.

use tonic::Status;

/// Logs an internal error with its whole cause chain at `error` and returns
/// the status a caller sees: "internal error", nothing more.
pub fn internal(err: &(dyn std::error::Error + 'static)) -> Status {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "internal error");
    Status::internal("internal error")
}

/// As [`internal`], for `anyhow` errors.
pub fn internal_anyhow(err: &anyhow::Error) -> Status {
    tracing::error!(error = format!("{err:#}"), "internal error");
    Status::internal("internal error")
}
