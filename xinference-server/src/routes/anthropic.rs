//! The Anthropic Messages API: `POST /v1/messages` and `POST /anthropic/v1/messages`,
//! `GET /anthropic/v1/models[/{model_id}]`. Every failure, a malformed body included, answers
//! in Anthropic's shape `{"type": "error", "error": {"type", "message"}}`; streams are
//! server-sent events named by their type (`event: message_start`, ...).

use super::AppState;
use crate::error::{Anthropic, ApiError, ApiJson};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::stream::StreamExt;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use xinference_core::anthropic::{error_response, MessagesOutput};
use xinference_core::auth::Principal;
use xinference_core::protocol::anthropic::{
    MessagesRequest, ModelInfo, ModelList, ANTHROPIC_VERSION, ANTHROPIC_VERSIONS,
};
use xinference_core::Error;

type AnthropicResult<T> = Result<T, ApiError<Anthropic>>;

/// A JSON body whose every rejection is an Anthropic error (`invalid_request_error` or
/// `request_too_large`).
type AnthropicJson<T> = ApiJson<T, Anthropic>;

/// Checks `anthropic-version` against [`ANTHROPIC_VERSIONS`]: `required` on the standard
/// path (as Anthropic and Xinference do), optional on `/anthropic/...`.
fn check_version(headers: &HeaderMap, required: bool) -> AnthropicResult<()> {
    let supported = ANTHROPIC_VERSIONS.join("`, `");
    match headers.get("anthropic-version") {
        None if required => Err(Error::bad_request(format!(
            "anthropic-version: header is required (use `{ANTHROPIC_VERSION}`)"
        ))
        .into()),
        None => Ok(()),
        Some(v)
            if ANTHROPIC_VERSIONS
                .iter()
                .any(|s| s.as_bytes() == v.as_bytes()) =>
        {
            Ok(())
        }
        Some(v) => Err(Error::bad_request(format!(
            "anthropic-version: `{}` is not supported; the supported versions are `{supported}`",
            String::from_utf8_lossy(v.as_bytes())
        ))
        .into()),
    }
}

/// `POST /v1/messages` (needs `anthropic-version`).
pub async fn messages(
    State(rt): State<AppState>,
    headers: HeaderMap,
    body: AnthropicResult<AnthropicJson<MessagesRequest>>,
) -> AnthropicResult<Response> {
    check_version(&headers, true)?;
    answer(rt, body?.0).await
}

/// `POST /anthropic/v1/messages` (`anthropic-version` optional).
pub async fn messages_prefixed(
    State(rt): State<AppState>,
    headers: HeaderMap,
    body: AnthropicResult<AnthropicJson<MessagesRequest>>,
) -> AnthropicResult<Response> {
    check_version(&headers, false)?;
    answer(rt, body?.0).await
}

async fn answer(rt: AppState, request: MessagesRequest) -> AnthropicResult<Response> {
    Ok(match rt.messages(request).await? {
        MessagesOutput::Whole(m) => Json(m).into_response(),
        MessagesOutput::Stream(events) => {
            // A failure ends the stream with an `error` event (the core stream stops there).
            let events = events.map(|item| {
                let (name, data) = match item {
                    Ok(event) => (event.name(), serde_json::to_string(&event)),
                    Err(e) => ("error", serde_json::to_string(&error_response(&e))),
                };
                Ok::<_, Infallible>(Event::default().event(name).data(data.unwrap_or_default()))
            });
            Sse::new(events).into_response()
        }
    })
}

/// One running LLM in Anthropic's model shape, with Xinference's extra fields.
fn model_info(uid: String, description: &Map<String, Value>) -> ModelInfo {
    let mut extra = Map::new();
    extra.insert("object".into(), json!("model"));
    extra.insert("created".into(), json!(0));
    let context = description
        .get("context_length")
        .cloned()
        .unwrap_or(Value::Null);
    extra.insert("max_tokens".into(), context.clone());
    extra.insert("max_input_tokens".into(), context);
    extra.insert("lifecycle".into(), json!("active"));
    ModelInfo {
        kind: "model".into(),
        display_name: description
            .get("model_name")
            .and_then(Value::as_str)
            .unwrap_or(&uid)
            .to_owned(),
        id: uid,
        created_at: "1970-01-01T00:00:00Z".into(),
        extra,
    }
}

/// The running LLMs the caller may use.
fn running_llms(rt: &AppState, principal: &Option<Extension<Principal>>) -> Vec<ModelInfo> {
    rt.list_models()
        .into_iter()
        .filter(|(uid, _)| super::models::visible(principal, uid))
        .filter(|(_, d)| d.get("model_type").and_then(Value::as_str) == Some("LLM"))
        .map(|(uid, d)| model_info(uid, &d))
        .collect()
}

/// `GET /anthropic/v1/models`: the running LLMs, paged by `limit` (1-1000, default 20),
/// `after_id` and `before_id` as Anthropic pages.
pub async fn list_models(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Query(query): Query<HashMap<String, String>>,
) -> AnthropicResult<Json<ModelList>> {
    let limit = match query.get("limit") {
        None => 20,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| Error::bad_request("limit: must be an integer from 1 to 1000"))?,
    };
    let mut models = running_llms(&rt, &principal);
    if let Some(after) = query.get("after_id") {
        let pos = models.iter().position(|m| &m.id == after);
        models.drain(..pos.map_or(models.len(), |p| p + 1));
    }
    if let Some(before) = query.get("before_id") {
        let pos = models.iter().position(|m| &m.id == before);
        models.truncate(pos.unwrap_or(0));
        let skip = models.len().saturating_sub(limit);
        models.drain(..skip);
    }
    let has_more = if query.contains_key("before_id") {
        // Paging backwards: more models come before this page.
        running_llms(&rt, &principal).first().map(|m| &m.id) != models.first().map(|m| &m.id)
            && !models.is_empty()
    } else {
        models.len() > limit
    };
    models.truncate(limit);
    Ok(Json(ModelList {
        first_id: models.first().map(|m| m.id.clone()),
        last_id: models.last().map(|m| m.id.clone()),
        has_more,
        data: models,
    }))
}

/// `GET /anthropic/v1/models/{model_id}`.
pub async fn get_model(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(model_id): Path<String>,
) -> AnthropicResult<Json<ModelInfo>> {
    running_llms(&rt, &principal)
        .into_iter()
        .find(|m| m.id == model_id)
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("model `{model_id}` is not running")).into())
}
