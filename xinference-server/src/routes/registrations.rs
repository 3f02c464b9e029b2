//! Registry routes: list, get, register, unregister, engines.

use super::AppState;
use crate::error::ApiJson;
use crate::error::ApiResult;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use xinference_core::{Error, ModelType};

/// Query of `GET /v1/model_registrations/{type}`.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    detailed: bool,
}

/// `GET /v1/model_registrations/{type}`: `[{"model_name", "is_builtin"}]`, or whole families when detailed.
pub async fn list(
    State(rt): State<AppState>,
    Path(model_type): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let t: ModelType = model_type.parse()?;
    let items: Vec<Value> = rt
        .registry()
        .families(t)
        .into_iter()
        .map(|f| {
            if q.detailed {
                let mut full = f.json.clone();
                if let Value::Object(map) = &mut full {
                    map.insert("is_builtin".into(), json!(f.is_builtin));
                }
                full
            } else {
                json!({"model_name": f.name, "is_builtin": f.is_builtin})
            }
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

/// `GET /v1/model_registrations/{type}/{name}`: the whole family JSON.
pub async fn get_one(
    State(rt): State<AppState>,
    Path((model_type, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t: ModelType = model_type.parse()?;
    Ok(Json(rt.registry().get(t, &name)?.json))
}

/// Body of `POST /v1/model_registrations/{type}`: the family as a JSON string.
#[derive(Deserialize)]
pub struct RegisterBody {
    model: Value,
    #[serde(default)]
    persist: bool,
}

/// `POST /v1/model_registrations/{type}`: register a custom family, answering `null`.
pub async fn register(
    State(rt): State<AppState>,
    Path(model_type): Path<String>,
    ApiJson(body, _): ApiJson<RegisterBody>,
) -> ApiResult<Json<Value>> {
    let t: ModelType = model_type.parse()?;
    // Xinference sends the family as a string; accept an object as well.
    let text = match body.model {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let registry = rt.registry().clone();
    tokio::task::spawn_blocking(move || registry.register(t, &text, body.persist))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    Ok(Json(Value::Null))
}

/// `DELETE /v1/model_registrations/{type}/{name}`.
pub async fn unregister(
    State(rt): State<AppState>,
    Path((model_type, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t: ModelType = model_type.parse()?;
    rt.registry().unregister(t, &name)?;
    Ok(Json(Value::Null))
}

/// `GET /v1/engines/{name}`: what can run a model of any type.
pub async fn engines(
    State(rt): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Object(rt.registry().engines(&name, None)?)))
}

/// `GET /v1/engines/{type}/{name}`.
pub async fn engines_of_type(
    State(rt): State<AppState>,
    Path((model_type, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t: ModelType = model_type.parse()?;
    Ok(Json(Value::Object(rt.registry().engines(&name, Some(t))?)))
}
