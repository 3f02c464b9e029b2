//! The one error answer and the one JSON body extractor of every route. A route answers in
//! the shape its clients read, a type parameter with Xinference's as the default:
//! [`Xinference`] `{"detail": "..."}`, [`Anthropic`] (Messages API) and [`OpenAi`] (Responses
//! API). The status always comes from [`ErrorKind::http_status`] (through the shape's
//! [`ErrorShape::status`], which only reads the core's mapping).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::marker::PhantomData;
use xinference_core::{Error, ErrorKind};

/// An API's way of answering a failure.
pub trait ErrorShape {
    /// The kind of a well-formed JSON body of the wrong shape.
    const SHAPE_MISMATCH: ErrorKind;
    /// Whether a body that is not a JSON object is refused before it is read as the type.
    const OBJECT_ONLY: bool;
    /// The HTTP status of a failure of `kind`.
    fn status(kind: ErrorKind) -> u16 {
        kind.http_status()
    }
    /// The JSON body of `error`.
    fn body(error: &Error) -> Value;
}

/// Xinference's shape, `{"detail": "..."}`: 400 for malformed JSON, 422 for JSON of the
/// wrong shape.
pub struct Xinference;

impl ErrorShape for Xinference {
    const SHAPE_MISMATCH: ErrorKind = ErrorKind::Unprocessable;
    const OBJECT_ONLY: bool = false;

    fn body(error: &Error) -> Value {
        json!({"detail": error.message()})
    }
}

/// Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`; every invalid
/// request is a 400 (Anthropic has no 422 or 501).
pub struct Anthropic;

impl ErrorShape for Anthropic {
    const SHAPE_MISMATCH: ErrorKind = ErrorKind::BadRequest;
    const OBJECT_ONLY: bool = true;

    fn status(kind: ErrorKind) -> u16 {
        xinference_core::anthropic::error_status(kind).0
    }

    fn body(error: &Error) -> Value {
        serde_json::to_value(xinference_core::anthropic::error_response(error))
            .unwrap_or(Value::Null)
    }
}

/// OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`; a request the model
/// cannot serve as asked is a 400 as OpenAI answers it.
pub struct OpenAi;

impl ErrorShape for OpenAi {
    const SHAPE_MISMATCH: ErrorKind = ErrorKind::BadRequest;
    const OBJECT_ONLY: bool = true;

    fn status(kind: ErrorKind) -> u16 {
        xinference_core::responses::error_type(kind).0
    }

    fn body(error: &Error) -> Value {
        serde_json::to_value(xinference_core::responses::error_body(error)).unwrap_or(Value::Null)
    }
}

/// An error answered in the shape `S` (Xinference's unless named). Built from any core
/// [`Error`]; a `NotReady` (503) or `Overloaded` (429) answer carries `Retry-After`.
pub struct ApiError<S = Xinference>(pub Error, pub PhantomData<S>);

impl<S> From<Error> for ApiError<S> {
    fn from(e: Error) -> Self {
        ApiError(e, PhantomData)
    }
}

impl<S> std::fmt::Debug for ApiError<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: ErrorShape> IntoResponse for ApiError<S> {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(S::status(self.0.kind()))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.0.kind() == ErrorKind::Internal {
            tracing::error!("internal error: {}", self.0);
        }
        let mut response = (status, Json(S::body(&self.0))).into_response();
        let retry_after = match self.0.kind() {
            ErrorKind::NotReady => Some(HeaderValue::from_static("30")),
            // A full queue, a reached request_limits or a key's concurrency limit: every 429
            // says when to come back.
            ErrorKind::Overloaded => Some(HeaderValue::from(crate::key_limit::RETRY_AFTER_SECS)),
            _ => None,
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The result type of handlers.
pub type ApiResult<T, S = Xinference> = Result<T, ApiError<S>>;

/// A JSON body parsed as `T`, every rejection an [`ApiError`] in the shape `S`: 400 for
/// malformed JSON, `S::SHAPE_MISMATCH` for JSON of the wrong shape, 413 for an oversized body.
pub struct ApiJson<T, S = Xinference>(pub T, pub PhantomData<S>);

impl<T, S> ApiJson<T, S> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<St: Send + Sync, T: DeserializeOwned, S: ErrorShape> FromRequest<St> for ApiJson<T, S> {
    type Rejection = ApiError<S>;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let kind = if rejection.status().as_u16() == 413 {
                ErrorKind::PayloadTooLarge
            } else {
                ErrorKind::BadRequest
            };
            ApiError::from(Error::new(kind, rejection.body_text()))
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_request(format!("Malformed JSON body: {e}")))?;
        if S::OBJECT_ONLY && !value.is_object() {
            return Err(Error::bad_request("The request body must be a JSON object").into());
        }
        serde_json::from_value(value)
            .map(|body| ApiJson(body, PhantomData))
            .map_err(|e| Error::new(S::SHAPE_MISMATCH, format!("Invalid request body: {e}")).into())
    }
}
