//! `POST /v1/chat/completions` and `POST /v1/completions`: whole answers as JSON, streams as
//! OpenAI server-sent events ending with `data: [DONE]`; a failure after the stream started is
//! sent as `data: {"error": ...}`.

use super::AppState;
use crate::error::ApiJson;
use crate::error::ApiResult;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use serde_json::json;
use std::convert::Infallible;
use xinference_core::protocol::chat::{ChatCompletionRequest, CompletionRequest};
use xinference_core::runtime::{ChatOutput, ChunkStream, CompletionOutput};

/// Frames chunks as SSE: each chunk as `data: {json}`, an error as `data: {"error": ...}`
/// (and the end of the stream), then `data: [DONE]`.
fn sse<T: Serialize + Send + 'static>(
    chunks: ChunkStream<T>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = chunks
        .scan(false, |failed, item| {
            if *failed {
                return futures::future::ready(None);
            }
            let event = match item {
                Ok(chunk) => {
                    Event::default().data(serde_json::to_string(&chunk).unwrap_or_default())
                }
                Err(e) => {
                    *failed = true;
                    Event::default().data(json!({"error": e.message()}).to_string())
                }
            };
            futures::future::ready(Some(Ok(event)))
        })
        .chain(stream::once(async { Ok(Event::default().data("[DONE]")) }));
    Sse::new(events)
}

/// Chat completion, whole or streamed.
pub async fn chat(
    State(rt): State<AppState>,
    ApiJson(request, _): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    Ok(match rt.chat(request).await? {
        ChatOutput::Whole(c) => Json(c).into_response(),
        ChatOutput::Stream(s) => sse(s).into_response(),
    })
}

/// Legacy completion, whole or streamed.
pub async fn completion(
    State(rt): State<AppState>,
    ApiJson(request, _): ApiJson<CompletionRequest>,
) -> ApiResult<Response> {
    Ok(match rt.completion(request).await? {
        CompletionOutput::Whole(c) => Json(c).into_response(),
        CompletionOutput::Stream(s) => sse(s).into_response(),
    })
}
