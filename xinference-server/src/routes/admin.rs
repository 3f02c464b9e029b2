//! Health, cluster and cache routes.

use super::AppState;
use crate::error::ApiResult;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use xinference_core::hub::list_cached;

/// `GET /status`: uptime and the (single, in-process) worker.
pub async fn status(State(rt): State<AppState>) -> Json<Value> {
    Json(json!({
        "uptime": rt.uptime_secs(),
        "workers": {
            "127.0.0.1": {
                "status": {"cpu_count": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)},
                "models": rt.list_models().len(),
            }
        }
    }))
}

/// Query of `GET /v1/cache/models`.
#[derive(Deserialize)]
pub struct CacheQuery {
    model_name: Option<String>,
}

/// `GET /v1/cache/models`: complete entries of the local model cache.
pub async fn cached_models(
    State(rt): State<AppState>,
    Query(q): Query<CacheQuery>,
) -> ApiResult<Json<Value>> {
    let home = rt.config().home.clone();
    let list = tokio::task::spawn_blocking(move || list_cached(&home, q.model_name.as_deref()))
        .await
        .map_err(|e| xinference_core::Error::internal(e.to_string()))?;
    Ok(Json(json!({"list": list})))
}
