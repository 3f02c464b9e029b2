//! A JSON body extractor whose rejections are `{"detail": ...}`: 400 for malformed JSON,
//! 422 for well-formed JSON of the wrong shape, 413 for oversized bodies.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use xinference_core::{Error, ErrorKind};

/// The body, parsed as `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status().as_u16();
            let kind = if status == 413 {
                ErrorKind::PayloadTooLarge
            } else {
                ErrorKind::BadRequest
            };
            ApiError(Error::new(kind, rejection.body_text()))
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body: syntax errors are 400, shape errors 422.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError(Error::new(
            ErrorKind::BadRequest,
            format!("Malformed JSON body: {e}"),
        ))
    })?;
    serde_json::from_value(value).map_err(|e| {
        ApiError(Error::new(
            ErrorKind::Unprocessable,
            format!("Invalid request body: {e}"),
        ))
    })
}
