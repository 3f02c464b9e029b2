//! The OpenAI Responses API: `POST /v1/responses`, `GET` / `DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`. Every failure, a malformed body included, answers in
//! OpenAI's shape `{"error": {"message", "type", "param", "code"}}`; streams are server-sent
//! events named by their type (`event: response.created`, ...), with no `[DONE]`.

use super::AppState;
use crate::error::{ApiError, ApiJson, OpenAi};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use xinference_core::protocol::responses::{
    DeletedResponse, InputItemList, Response as ResponseObject, ResponsesRequest,
};
use xinference_core::responses::{error_body, ResponsesOutput};
use xinference_core::Error;

type OpenAiResult<T> = Result<T, ApiError<OpenAi>>;

/// A JSON body whose every rejection is an OpenAI error.
type OpenAiJson<T> = ApiJson<T, OpenAi>;

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
