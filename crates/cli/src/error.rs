//! The one place where every failure becomes an exit code. Scripts test
//! these codes, so each gRPC code is mapped by an exhaustive match: a new
//! code does not compile until someone decides its exit code.

use tonic::Code;

/// Exit codes of `roster`, documented in `docs/cli.md`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (an internal error of the server, an unknown code).
    pub const OTHER: u8 = 1;
    /// Usage error or invalid input: bad flags, an unreadable file, a value
    /// the server refused (`INVALID_ARGUMENT`, `OUT_OF_RANGE`).
    pub const INVALID_INPUT: u8 = 2;
    /// What was asked for does not exist (`NOT_FOUND`).
    pub const NOT_FOUND: u8 = 3;
    /// No credential, a rejected credential, or missing rights
    /// (`UNAUTHENTICATED`, `PERMISSION_DENIED`).
    pub const DENIED: u8 = 4;
    /// The server cannot be reached or is busy; retrying may help
    /// (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `CANCELLED`).
    pub const UNAVAILABLE: u8 = 5;
    /// The request conflicts with the current state (`ALREADY_EXISTS`,
    /// `FAILED_PRECONDITION`, `ABORTED`).
    pub const CONFLICT: u8 = 6;
    /// The server does not offer this operation (`UNIMPLEMENTED`).
    pub const UNIMPLEMENTED: u8 = 7;
    /// A bulk command finished, and some of its items failed.
    pub const PARTIAL: u8 = 8;
}

/// Everything that ends a command unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input was wrong before anything was sent.
    #[error("{0}")]
    Invalid(String),
    /// The server answered with an error status.
    #[error("{}", describe(.0))]
    Status(tonic::Status),
    /// No connection could be made.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection failed during a call (a TLS handshake the server
    /// refused, a reset).
    #[error("the connection failed: {0}")]
    Transport(String),
    /// No credential is configured for a command that needs one.
    #[error("{0}")]
    NoCredential(String),
    /// A bulk command where some items failed (the summary was printed).
    #[error("{failed} of {total} failed")]
    Partial { failed: usize, total: usize },
    /// Anything else (local files, the terminal).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError::Invalid(message.into())
    }

    /// The exit code scripts see.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => exit::INVALID_INPUT,
            CliError::Status(status) => code_exit(status.code()),
            CliError::Connect { .. } | CliError::Transport(_) => exit::UNAVAILABLE,
            CliError::NoCredential(_) => exit::DENIED,
            CliError::Partial { .. } => exit::PARTIAL,
            CliError::Other(_) => exit::OTHER,
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        // A status the server sent has no source; one tonic made for a
        // connection that broke under the call (a refused handshake, a
        // reset) carries the transport error: that is unavailability.
        match std::error::Error::source(&status) {
            Some(source)
                if matches!(
                    status.code(),
                    Code::Unknown | Code::Cancelled | Code::Unavailable | Code::Internal
                ) =>
            {
                CliError::Transport(chain(source))
            }
            _ => CliError::Status(status),
        }
    }
}

/// An error with its causes, `a: b: c`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The exit code of a gRPC status code.
pub fn code_exit(code: Code) -> u8 {
    match code {
        Code::Ok => exit::OK,
        Code::InvalidArgument | Code::OutOfRange => exit::INVALID_INPUT,
        Code::NotFound => exit::NOT_FOUND,
        Code::Unauthenticated | Code::PermissionDenied => exit::DENIED,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => {
            exit::UNAVAILABLE
        }
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => exit::CONFLICT,
        Code::Unimplemented => exit::UNIMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => exit::OTHER,
    }
}

/// The canonical name of a gRPC code (`INVALID_ARGUMENT`), as scripts
/// see it in bulk summaries.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `not found: user `bob` not found`: the code in words, then the
/// server's message, which names the field for invalid input.
fn describe(status: &tonic::Status) -> String {
    let code = match status.code() {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by the server",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    };
    if status.message().is_empty() {
        code.to_string()
    } else {
        format!("{code}: {}", status.message())
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
