//! One error type for the whole library. Every failure has a [`ErrorKind`]; the HTTP status a
//! surface answers with is decided in exactly one place, [`ErrorKind::http_status`].

use std::fmt;

/// What went wrong, coarsely: enough to pick a status code and for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible (HTTP 400).
    BadRequest,
    /// No valid credential: the server has auth on and the request carries no token or key,
    /// or an expired, forged or revoked one (HTTP 401).
    Unauthorized,
    /// The caller may not do this (HTTP 403): e.g. a cross-origin browser request that the
    /// server's allowed origins do not name.
    Forbidden,
    /// The named model, uid, registration or file does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with what exists: e.g. a user name already taken (HTTP 409).
    Conflict,
    /// The request body is larger than the server accepts (HTTP 413).
    PayloadTooLarge,
    /// The body parsed but a field has the wrong type or value (HTTP 422).
    Unprocessable,
    /// A queue is full or `request_limits` is reached; retry later (HTTP 429).
    Overloaded,
    /// The model exists but is still loading or has failed to load (HTTP 503).
    NotReady,
    /// The launch was cancelled while it was downloading or loading (HTTP 499).
    Cancelled,
    /// A feature that the wire format names but this build does not implement (HTTP 501).
    NotImplemented,
    /// A bug or an unexpected I/O failure (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status code that Xinference answers with for this kind of failure.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Overloaded => 429,
            ErrorKind::Cancelled => 499,
            ErrorKind::NotImplemented => 501,
            ErrorKind::NotReady => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The kind that corresponds to an HTTP status code (used by the remote client).
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            400 => ErrorKind::BadRequest,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::PayloadTooLarge,
            422 => ErrorKind::Unprocessable,
            429 => ErrorKind::Overloaded,
            499 => ErrorKind::Cancelled,
            501 => ErrorKind::NotImplemented,
            503 => ErrorKind::NotReady,
            _ => ErrorKind::Internal,
        }
    }
}

/// An error with a kind and a human-readable message (the message is what `{"detail": ...}` says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// A 400: the request cannot be served as asked.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    /// A 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// A 404: something named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A 429: too many requests queued or in flight.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overloaded, message)
    }
    /// A 503: the model is not ready to serve.
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotReady, message)
    }
    /// A 500: an unexpected failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The same error with `context: ` put in front of its message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(format!("I/O error: {e}"))
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::internal(format!("model computation failed: {e}"))
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Return early with an error of the given kind: `bail!(BadRequest, "no {x}")`.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*)))
    };
}

/// The message of a caught panic.
pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned())
}
