//! `POST /v1/rerank` (Xinference's shape) and Cohere's `POST /rerank` (v1) and
//! `POST /v2/rerank`, which Cohere-speaking clients call.

use super::AppState;
use crate::error::ApiJson;
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use xinference_core::protocol::rerank::{
    CohereRerankRequest, CohereRerankResponse, RerankRequest, RerankResponse,
};

/// Ranks the documents with the named model, in Xinference's response shape.
pub async fn xinference(
    State(rt): State<AppState>,
    ApiJson(request, _): ApiJson<RerankRequest>,
) -> ApiResult<Json<RerankResponse>> {
    Ok(Json(rt.rerank(request).await?))
}

/// Cohere's v1 rerank.
pub async fn cohere_v1(
    State(rt): State<AppState>,
    ApiJson(request, _): ApiJson<CohereRerankRequest>,
) -> ApiResult<Json<CohereRerankResponse>> {
    Ok(Json(rt.rerank_cohere(request, "1").await?))
}

/// Cohere's v2 rerank.
pub async fn cohere_v2(
    State(rt): State<AppState>,
    ApiJson(request, _): ApiJson<CohereRerankRequest>,
) -> ApiResult<Json<CohereRerankResponse>> {
    Ok(Json(rt.rerank_cohere(request, "2").await?))
}
