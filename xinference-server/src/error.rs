//! Errors on the wire: `{"detail": "..."}` with Xinference's status codes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use xinference_core::{Error, ErrorKind};

/// An error answer. Built from any core [`Error`].
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind().http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() && self.0.kind() == ErrorKind::Internal {
            tracing::error!("internal error: {}", self.0);
        }
        let mut response = (status, Json(json!({"detail": self.0.message()}))).into_response();
        if self.0.kind() == ErrorKind::NotReady {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
