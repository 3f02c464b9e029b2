//! The error and the JSON body extractor of the routes that answer in another API's error
//! shape (Anthropic's Messages API, OpenAI's Responses API): one generic pair, with the shape
//! as a type parameter. Xinference's own routes use [`crate::ApiError`] and `ApiJson`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::marker::PhantomData;
use xinference_core::{Error, ErrorKind};

/// An API's way of answering a failure.
pub trait ErrorShape {
    /// The HTTP status of a failure of `kind`.
    fn status(kind: ErrorKind) -> u16;
    /// The JSON body of `error`.
    fn body(error: &Error) -> Value;
}

/// An error answered in the shape `S`.
pub struct ShapedError<S>(pub Error, PhantomData<S>);

impl<S> From<Error> for ShapedError<S> {
    fn from(e: Error) -> Self {
        ShapedError(e, PhantomData)
    }
}

impl<S> std::fmt::Debug for ShapedError<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: ErrorShape> IntoResponse for ShapedError<S> {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(S::status(self.0.kind()))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.0.kind() == ErrorKind::Internal {
            tracing::error!("internal error: {}", self.0);
        }
        let mut response = (status, Json(S::body(&self.0))).into_response();
        if self.0.kind() == ErrorKind::NotReady {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}

/// A JSON body whose every rejection is a [`ShapedError`]: 400 for malformed JSON and for JSON
/// of the wrong shape (neither API has a 422 for it), 413 for an oversized body.
pub struct ShapedJson<T, S>(pub T, PhantomData<S>);

impl<St: Send + Sync, T: DeserializeOwned, S: ErrorShape> FromRequest<St> for ShapedJson<T, S> {
    type Rejection = ShapedError<S>;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let kind = if rejection.status().as_u16() == 413 {
                ErrorKind::PayloadTooLarge
            } else {
                ErrorKind::BadRequest
            };
            ShapedError::from(Error::new(kind, rejection.body_text()))
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_request(format!("Malformed JSON body: {e}")))?;
        if !value.is_object() {
            return Err(Error::bad_request("The request body must be a JSON object").into());
        }
        serde_json::from_value(value)
            .map(|body| ShapedJson(body, PhantomData))
            .map_err(|e| Error::bad_request(format!("Invalid request body: {e}")).into())
    }
}
