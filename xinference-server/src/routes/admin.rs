//! Health, cluster and cache routes.

use super::AppState;
use crate::error::ApiResult;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use xinference_core::auth::Principal;
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

/// `GET /v1/cluster/version`: `{"version", "full-revisionid"}` as Xinference answers.
pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "full-revisionid": null}))
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes, when the platform has them.
fn memory() -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// `GET /v1/cluster/info`: the nodes (here one, serving everything) as Xinference lists them,
/// with this build's version, SIMD features and compute threads, CPUs, memory and models (as
/// many as the caller may see: a key limited to some models counts only those).
pub async fn cluster_info(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> ApiResult<Json<Value>> {
    let models = rt
        .list_models()
        .keys()
        .filter(|uid| super::models::visible(&principal, uid))
        .count();
    let (mem_total, mem_available) = tokio::task::spawn_blocking(memory)
        .await
        .map_err(|e| xinference_core::Error::internal(e.to_string()))?;
    Ok(Json(json!([{
        "node_type": "Supervisor",
        "ip_address": "127.0.0.1",
        "version": env!("CARGO_PKG_VERSION"),
        "simd_features": xinference_core::simd_features(),
        "compute_threads": xinference_core::compute::threads(),
        "cpu_count": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "mem_total": mem_total,
        "mem_available": mem_available,
        "mem_used": mem_total.zip(mem_available).map(|(t, a)| t.saturating_sub(a)),
        "gpu_count": 0,
        "gpu_vram_total": 0,
        "models": models,
        "uptime": rt.uptime_secs(),
    }])))
}
