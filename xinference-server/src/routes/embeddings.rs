//! `POST /v1/embeddings`.

use super::AppState;
use crate::error::ApiJson;
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use xinference_core::{EmbeddingRequest, EmbeddingResponse};

/// Embeds the input with the named model, in Xinference's response shape.
pub async fn create(
    State(rt): State<AppState>,
    ApiJson(request, _): ApiJson<EmbeddingRequest>,
) -> ApiResult<Json<EmbeddingResponse>> {
    Ok(Json(rt.create_embedding(request).await?))
}
