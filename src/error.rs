//! The one error model every surface maps from (see DESIGN.md, "One error model").
//!
//! Each error carries a kind, which decides the C status code, the Python
//! exception class, the Go sentinel and the gRPC code, and a message meant
//! for people. Messages never contain credentials.

use std::fmt;

/// What went wrong, in the terms every binding maps exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A malformed reference, option, an ambiguous id prefix or short name.
    InvalidArgument,
    /// The registry has no such manifest, or no such image where one is required.
    NotFound,
    /// The registry wants credentials we do not have, or rejected them.
    Unauthenticated,
    /// 403, registry `DENIED`, or a blocked registry.
    PermissionDenied,
    /// Network failure, 5xx, 429 after retries.
    Unavailable,
    /// Digest or size mismatch, corrupt store.
    Integrity,
    /// Schema 1, a non-image artifact, no platform, a manifest over 4 MiB.
    Unsupported,
    /// The disk holding the store is full.
    StorageFull,
    /// I/O and other store errors.
    Io,
    /// The caller cancelled the operation.
    Cancelled,
    /// No progress within the configured time.
    Timeout,
    /// A bug, including a caught panic.
    Internal,
}

impl ErrorKind {
    /// The stable status code used by the C ABI (0 is success).
    pub fn code(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => 1,
            ErrorKind::NotFound => 2,
            ErrorKind::Unauthenticated => 3,
            ErrorKind::PermissionDenied => 4,
            ErrorKind::Unavailable => 5,
            ErrorKind::Integrity => 6,
            ErrorKind::Unsupported => 7,
            ErrorKind::StorageFull => 8,
            ErrorKind::Io => 9,
            ErrorKind::Cancelled => 10,
            ErrorKind::Timeout => 11,
            ErrorKind::Internal => 12,
        }
    }

    /// A short lowercase name, used in CLI messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotFound => "not found",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::StorageFull => "storage full",
            ErrorKind::Io => "i/o",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error of a given kind with a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Make an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    /// The kind, for mapping to a binding's error type.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    pub(crate) fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub(crate) fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "operation cancelled")
    }
    /// An I/O error while doing `what`; a full disk becomes [`ErrorKind::StorageFull`].
    pub(crate) fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => ErrorKind::StorageFull,
            _ if err.raw_os_error() == Some(27) => ErrorKind::StorageFull, // EFBIG: file size limit
            _ => ErrorKind::Io,
        };
        Self::new(kind, format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
