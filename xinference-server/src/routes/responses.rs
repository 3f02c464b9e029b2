//! The OpenAI Responses API: `POST /v1/responses`, `GET` / `DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`. Every failure, a malformed body included, answers in
//! OpenAI's shape `{"error": {"message", "type", "param", "code"}}`; streams are server-sent
//! events named by their type (`event: response.created`, ...), with no `[DONE]`.

use super::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::convert::Infallible;
use xinference_core::protocol::responses::{
    DeletedResponse, InputItemList, Response as ResponseObject, ResponsesRequest,
};
use xinference_core::responses::{error_body, error_type, ResponsesOutput};
use xinference_core::{Error, ErrorKind};

/// An error answered in OpenAI's shape.
#[derive(Debug)]
pub struct OpenAiError(pub Error);

impl From<Error> for OpenAiError {
    fn from(e: Error) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let (status, _, _) = error_type(self.0.kind());
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.0.kind() == ErrorKind::Internal {
            tracing::error!("internal error: {}", self.0);
        }
        let mut response = (status, Json(error_body(&self.0))).into_response();
        if self.0.kind() == ErrorKind::NotReady {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}

type OpenAiResult<T> = Result<T, OpenAiError>;

/// A JSON body whose every rejection is an OpenAI error: 400 for malformed JSON and for JSON
/// of the wrong shape, 413 for an oversized body.
pub struct OpenAiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OpenAiJson<T> {
    type Rejection = OpenAiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let kind = if rejection.status().as_u16() == 413 {
                ErrorKind::PayloadTooLarge
            } else {
                ErrorKind::BadRequest
            };
            OpenAiError(Error::new(kind, rejection.body_text()))
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_request(format!("Malformed JSON body: {e}")))?;
        if !value.is_object() {
            return Err(Error::bad_request("The request body must be a JSON object").into());
        }
        serde_json::from_value(value)
            .map(OpenAiJson)
            .map_err(|e| Error::bad_request(format!("Invalid request body: {e}")).into())
    }
}

/// `POST /v1/responses`, whole or streamed.
pub async fn create(
    State(rt): State<AppState>,
    body: OpenAiResult<OpenAiJson<ResponsesRequest>>,
) -> OpenAiResult<Response> {
    Ok(match rt.responses(body?.0).await? {
        ResponsesOutput::Whole(r) => Json(r).into_response(),
        ResponsesOutput::Stream(events) => {
            let events = events.map(|item| {
                let event = match item {
                    Ok(e) => Event::default()
                        .event(e.name())
                        .data(serde_json::to_string(&e).unwrap_or_default()),
                    Err(e) => Event::default()
                        .event("error")
                        .data(serde_json::to_string(&error_body(&e)).unwrap_or_default()),
                };
                Ok::<_, Infallible>(event)
            });
            Sse::new(events).into_response()
        }
    })
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    State(rt): State<AppState>,
    Path(id): Path<String>,
) -> OpenAiResult<Json<ResponseObject>> {
    Ok(Json(rt.get_response(&id).await?))
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(rt): State<AppState>,
    Path(id): Path<String>,
) -> OpenAiResult<Json<DeletedResponse>> {
    Ok(Json(rt.delete_response(&id).await?))
}

/// Paging of `input_items`.
#[derive(Debug, Deserialize)]
pub struct InputItemsQuery {
    limit: Option<String>,
    order: Option<String>,
    after: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`.
pub async fn input_items(
    State(rt): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<InputItemsQuery>, axum::extract::rejection::QueryRejection>,
) -> OpenAiResult<Json<InputItemList>> {
    let Query(q) = query.map_err(|e| Error::bad_request(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<usize>()
                .map_err(|_| Error::bad_request(format!("limit must be an integer, not `{s}`")))?,
        ),
    };
    Ok(Json(
        rt.response_input_items(&id, limit, q.order.as_deref(), q.after.as_deref())
            .await?,
    ))
}
