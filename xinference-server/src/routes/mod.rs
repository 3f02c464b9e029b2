//! The route table. One module per area, each handler a few lines.

mod admin;
mod anthropic;
mod audio;
mod auth;
mod embeddings;
mod images;
mod llm;
mod models;
mod registrations;
mod rerank;
mod responses;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use xinference_core::{Error, Runtime};

/// `error` in the shape the route `path`'s clients read (Anthropic's, OpenAI's or `{"detail"}`).
pub(crate) use auth::refuse as shaped_error;

pub(crate) use audio::MAX_AUDIO_BYTES;

/// Largest request body accepted (larger ones are a 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Shared state of every handler.
pub type AppState = Arc<Runtime>;

/// Every (method, path) served, as the OpenAPI description lists them.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/status"),
    ("get", "/v1/cluster/auth"),
    ("get", "/v1/cluster/info"),
    ("get", "/v1/cluster/version"),
    ("get", "/v1/models"),
    ("post", "/v1/models"),
    ("get", "/v1/models/instances"),
    ("get", "/v1/models/{model_uid}"),
    ("delete", "/v1/models/{model_uid}"),
    ("get", "/v1/models/{model_uid}/progress"),
    ("get", "/v1/model_registrations/{model_type}"),
    ("post", "/v1/model_registrations/{model_type}"),
    ("get", "/v1/model_registrations/{model_type}/{model_name}"),
    (
        "delete",
        "/v1/model_registrations/{model_type}/{model_name}",
    ),
    ("get", "/v1/engines/{model_name}"),
    ("get", "/v1/engines/{model_type}/{model_name}"),
    ("get", "/v1/cache/models"),
    ("post", "/v1/embeddings"),
    ("post", "/v1/chat/completions"),
    ("post", "/v1/completions"),
    ("post", "/v1/responses"),
    ("get", "/v1/responses/{response_id}"),
    ("delete", "/v1/responses/{response_id}"),
    ("get", "/v1/responses/{response_id}/input_items"),
    ("post", "/v1/messages"),
    ("post", "/anthropic/v1/messages"),
    ("get", "/anthropic/v1/models"),
    ("get", "/anthropic/v1/models/{model_id}"),
    ("post", "/v1/rerank"),
    ("post", "/rerank"),
    ("post", "/v2/rerank"),
    ("post", "/v1/audio/transcriptions"),
    ("post", "/v1/audio/translations"),
    ("post", "/v1/images/generations"),
    ("post", "/v1/images/variations"),
    ("post", "/v1/images/inpainting"),
    ("get", "/v1/images/files/{name}"),
    ("get", "/v1/requests/{request_id}/progress"),
    ("get", "/openapi.json"),
    ("post", "/token"),
    ("post", "/v1/auth/refresh"),
    ("post", "/v1/auth/logout"),
    ("get", "/v1/admin/keys"),
    ("post", "/v1/admin/keys"),
    ("delete", "/v1/admin/keys/{key_id}"),
];

/// The whole application: routes, the web UI (the fallback: [`crate::ui`]), CORS (only for
/// allowed origins), credentials (when auth is on), concurrent requests per key (when limited),
/// body limit, JSON 404s, request ids and a log line per request.
/// The web UI's files come from [`crate::ui::Source::from_env`].
pub fn router(runtime: Arc<Runtime>) -> Router {
    router_with_ui(runtime, crate::ui::Source::from_env())
}

/// [`router`] with the web UI's files from `ui`.
pub fn router_with_ui(runtime: Arc<Runtime>, ui: crate::ui::Source) -> Router {
    let allowed = Arc::new(runtime.config().allowed_origins.clone());
    let limiter = runtime
        .config()
        .max_concurrent_per_key
        .map(crate::key_limit::KeyLimiter::new);
    Router::new()
        .route("/status", get(admin::status))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/cluster/auth", get(auth::cluster_auth))
        .route("/v1/cluster/info", get(admin::cluster_info))
        .route("/v1/cluster/version", get(admin::version))
        .route("/token", post(auth::token))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/auth/logout", post(auth::logout))
        .route(
            "/v1/admin/keys",
            get(auth::list_keys).post(auth::create_key),
        )
        .route(
            "/v1/admin/keys/{key_id}",
            axum::routing::delete(auth::revoke_key),
        )
        .route("/v1/cache/models", get(admin::cached_models))
        .route("/openapi.json", get(crate::openapi::openapi))
        .route("/v1/models", get(models::list).post(models::launch))
        .route("/v1/models/instances", get(models::instances))
        .route(
            "/v1/models/{model_uid}",
            get(models::describe).delete(models::terminate),
        )
        .route("/v1/models/{model_uid}/progress", get(models::progress))
        .route(
            "/v1/model_registrations/{model_type}",
            get(registrations::list).post(registrations::register),
        )
        .route(
            "/v1/model_registrations/{model_type}/{model_name}",
            get(registrations::get_one).delete(registrations::unregister),
        )
        .route("/v1/engines/{model_name}", get(registrations::engines))
        .route(
            "/v1/engines/{model_type}/{model_name}",
            get(registrations::engines_of_type),
        )
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/chat/completions", post(llm::chat))
        .route("/v1/completions", post(llm::completion))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{response_id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route(
            "/v1/responses/{response_id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/messages", post(anthropic::messages))
        .route("/anthropic/v1/messages", post(anthropic::messages_prefixed))
        .route("/anthropic/v1/models", get(anthropic::list_models))
        .route("/anthropic/v1/models/{model_id}", get(anthropic::get_model))
        .route("/v1/rerank", post(rerank::xinference))
        .route("/rerank", post(rerank::cohere_v1))
        .route("/v2/rerank", post(rerank::cohere_v2))
        .route(
            "/v1/audio/transcriptions",
            post(audio::transcriptions).layer(DefaultBodyLimit::max(audio::MAX_AUDIO_BYTES)),
        )
        .route(
            "/v1/audio/translations",
            post(audio::translations).layer(DefaultBodyLimit::max(audio::MAX_AUDIO_BYTES)),
        )
        .route("/v1/images/generations", post(images::generations))
        .route("/v1/images/variations", post(images::variations))
        .route("/v1/images/inpainting", post(images::inpainting))
        .route("/v1/images/files/{name}", get(images::file))
        .route("/v1/requests/{request_id}/progress", get(images::progress))
        // Paths no route serves: the web UI's files, else a JSON 404.
        .fallback(move |request| crate::ui::fallback(ui.clone(), request))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let limiter = limiter.clone();
                async move {
                    match limiter {
                        Some(l) => crate::key_limit::limit(l, request, next).await,
                        None => next.run(request).await,
                    }
                }
            },
        ))
        .layer(axum::middleware::from_fn(crate::model_permission::check))
        .layer(axum::middleware::from_fn_with_state(
            runtime.clone(),
            auth::require_credential,
        ))
        .layer(axum::middleware::from_fn(move |request, next| {
            crate::origin::refuse_foreign_writes(allowed.clone(), request, next)
        }))
        .layer(crate::origin::cors_layer(&runtime.config().allowed_origins))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(runtime)
}

/// Every request's log lines carry its id (the client's `x-request-id`, else a new UUID, sent
/// back in the response's `x-request-id`), method and path.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
}

/// `GET /health`: 200 while the process serves (liveness, as vLLM's `/health` for probes).
async fn health() -> StatusCode {
    StatusCode::OK
}

/// `GET /metrics`: the Prometheus text (`crate::metrics`); a 404 when
/// `XINFERENCE_DISABLE_METRICS=1`, as in Xinference.
async fn metrics(
    axum::extract::State(rt): axum::extract::State<AppState>,
) -> axum::response::Response {
    if std::env::var("XINFERENCE_DISABLE_METRICS").is_ok_and(|v| v == "1") {
        return crate::ApiError(Error::not_found("Not Found")).into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        crate::metrics::render(&rt),
    )
        .into_response()
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"detail": "Method Not Allowed"})),
    )
}
