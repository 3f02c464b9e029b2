//! Model lifecycle routes: launch, list, describe, terminate, instances, progress.

use super::AppState;
use crate::error::ApiJson;
use crate::error::ApiResult;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use xinference_core::auth::Principal;
use xinference_core::LaunchRequest;

/// Whether the caller may see model `uid`: a key limited to some models (its
/// `model_permissions`) sees only those; without auth every model is visible.
pub(crate) fn visible(principal: &Option<Extension<Principal>>, uid: &str) -> bool {
    principal.as_ref().is_none_or(|p| p.may_use(uid))
}

/// Query of `POST /v1/models`.
#[derive(Deserialize)]
pub struct LaunchQuery {
    #[serde(default = "yes")]
    wait_ready: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/models`: launch, answering `{"model_uid"}`.
pub async fn launch(
    State(rt): State<AppState>,
    Query(q): Query<LaunchQuery>,
    ApiJson(mut request, _): ApiJson<LaunchRequest>,
) -> ApiResult<Json<Value>> {
    // The Python client sends `wait_ready` in the body too.
    let wait_ready = match request.extra.remove("wait_ready") {
        Some(Value::Bool(b)) => b,
        _ => q.wait_ready,
    };
    let uid = rt.launch_model(request, wait_ready).await?;
    Ok(Json(json!({"model_uid": uid})))
}

/// `GET /v1/models`: launched models, OpenAI-style (those the caller may use).
pub async fn list(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> Json<Value> {
    let data: Vec<Value> = rt
        .list_models()
        .into_iter()
        .filter(|(uid, _)| visible(&principal, uid))
        .map(|(uid, mut description)| {
            description.insert("id".into(), json!(uid));
            description.insert("object".into(), json!("model"));
            description.insert("created".into(), json!(0));
            description.insert("owned_by".into(), json!("xinference"));
            Value::Object(description)
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{uid}`.
pub async fn describe(
    State(rt): State<AppState>,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Object(rt.describe_model(&uid)?)))
}

/// `DELETE /v1/models/{uid}`: terminate, answering `null`.
pub async fn terminate(
    State(rt): State<AppState>,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    rt.terminate_model(&uid).await?;
    Ok(Json(Value::Null))
}

/// Query of `GET /v1/models/instances`.
#[derive(Deserialize)]
pub struct InstancesQuery {
    model_name: Option<String>,
    model_uid: Option<String>,
}

/// `GET /v1/models/instances` (those the caller may use).
pub async fn instances(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Query(q): Query<InstancesQuery>,
) -> Json<Value> {
    let rows: Vec<_> = rt
        .instance_info(q.model_name.as_deref(), q.model_uid.as_deref())
        .into_iter()
        .filter(|row| visible(&principal, &row.model_uid))
        .collect();
    Json(json!(rows))
}

/// `GET /v1/models/{uid}/progress`.
pub async fn progress(
    State(rt): State<AppState>,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(rt.launch_progress(&uid)?)))
}
