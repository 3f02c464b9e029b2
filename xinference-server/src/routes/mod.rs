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
mod users;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use xinference_core::auth::scopes::Requirement::{self, Public, Scope};
use xinference_core::auth::scopes::{
    ADMIN, CACHE_LIST, KEYS_CREATE, KEYS_MANAGE, MODELS_LIST, MODELS_READ, MODELS_REGISTER,
    MODELS_WRITE, USERS_MANAGE,
};
use xinference_core::{Error, Runtime};

/// `error` in the shape the route `path`'s clients read (Anthropic's, OpenAI's or `{"detail"}`).
pub(crate) use auth::refuse as shaped_error;

pub(crate) use audio::MAX_AUDIO_BYTES;

/// Largest request body accepted (larger ones are a 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Shared state of every handler.
pub type AppState = Arc<Runtime>;

/// One served route: its method (lower case, as OpenAPI writes it), its path (axum's
/// `{param}` syntax), the credential it needs when auth is on, and its handler.
pub struct Route {
    /// `get`, `post`, `put` or `delete`.
    pub method: &'static str,
    /// The path pattern.
    pub path: &'static str,
    /// What a request needs before the handler runs (when auth is on).
    pub requirement: Requirement,
    handler: fn() -> MethodRouter<AppState>,
}

const fn route(
    method: &'static str,
    path: &'static str,
    requirement: Requirement,
    handler: fn() -> MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        requirement,
        handler,
    }
}

/// Every route served, listed once: the router, the auth middleware's scopes and the OpenAPI
/// check all read this table. Scopes follow Xinference's route table.
pub const ROUTES: &[Route] = &[
    route("get", "/health", Public, || get(health)),
    route("get", "/status", Public, || get(admin::status)),
    route("get", "/v1/cluster/auth", Public, || {
        get(auth::cluster_auth)
    }),
    route("get", "/metrics", Public, || get(metrics)),
    route("get", "/v1/cluster/info", Scope(ADMIN), || {
        get(admin::cluster_info)
    }),
    route("get", "/v1/cluster/version", Scope(ADMIN), || {
        get(admin::version)
    }),
    // The refresh token in the body is the credential of these two.
    route("post", "/token", Public, || post(auth::token)),
    route("post", "/v1/auth/refresh", Public, || post(auth::refresh)),
    route("post", "/v1/auth/logout", Public, || post(auth::logout)),
    route("get", "/v1/admin/keys", Scope(KEYS_MANAGE), || {
        get(auth::list_keys)
    }),
    route("post", "/v1/admin/keys", Scope(KEYS_CREATE), || {
        post(auth::create_key)
    }),
    route(
        "delete",
        "/v1/admin/keys/{key_id}",
        Scope(KEYS_MANAGE),
        || delete(auth::revoke_key),
    ),
    route("get", "/v1/admin/users", Scope(USERS_MANAGE), || {
        get(users::list)
    }),
    route("post", "/v1/admin/users", Scope(USERS_MANAGE), || {
        post(users::create)
    }),
    route(
        "get",
        "/v1/admin/users/{user_id}",
        Scope(USERS_MANAGE),
        || get(users::get_one),
    ),
    route(
        "put",
        "/v1/admin/users/{user_id}",
        Scope(USERS_MANAGE),
        || put(users::update),
    ),
    route(
        "delete",
        "/v1/admin/users/{user_id}",
        Scope(USERS_MANAGE),
        || delete(users::delete),
    ),
    route(
        "put",
        "/v1/admin/users/{user_id}/password",
        Scope(USERS_MANAGE),
        || put(users::password),
    ),
    route(
        "get",
        "/v1/admin/users/{user_id}/permissions",
        Scope(USERS_MANAGE),
        || get(users::permissions),
    ),
    route(
        "put",
        "/v1/admin/users/{user_id}/permissions",
        Scope(USERS_MANAGE),
        || put(users::set_permissions),
    ),
    route("get", "/v1/cache/models", Scope(CACHE_LIST), || {
        get(admin::cached_models)
    }),
    route("get", "/openapi.json", Scope(MODELS_LIST), || {
        get(crate::openapi::openapi)
    }),
    route("get", "/v1/models", Scope(MODELS_LIST), || {
        get(models::list)
    }),
    route("post", "/v1/models", Scope(MODELS_WRITE), || {
        post(models::launch)
    }),
    route("get", "/v1/models/instances", Scope(MODELS_LIST), || {
        get(models::instances)
    }),
    route("get", "/v1/models/{model_uid}", Scope(MODELS_LIST), || {
        get(models::describe)
    }),
    route(
        "delete",
        "/v1/models/{model_uid}",
        Scope(MODELS_WRITE),
        || delete(models::terminate),
    ),
    route(
        "get",
        "/v1/models/{model_uid}/progress",
        Scope(MODELS_READ),
        || get(models::progress),
    ),
    route(
        "get",
        "/v1/model_registrations/{model_type}",
        Scope(MODELS_LIST),
        || get(registrations::list),
    ),
    route(
        "post",
        "/v1/model_registrations/{model_type}",
        Scope(MODELS_REGISTER),
        || post(registrations::register),
    ),
    route(
        "get",
        "/v1/model_registrations/{model_type}/{model_name}",
        Scope(MODELS_LIST),
        || get(registrations::get_one),
    ),
    route(
        "delete",
        "/v1/model_registrations/{model_type}/{model_name}",
        Scope(MODELS_REGISTER),
        || delete(registrations::unregister),
    ),
    route(
        "get",
        "/v1/engines/{model_name}",
        Scope(MODELS_LIST),
        || get(registrations::engines),
    ),
    route(
        "get",
        "/v1/engines/{model_type}/{model_name}",
        Scope(MODELS_LIST),
        || get(registrations::engines_of_type),
    ),
    route("post", "/v1/embeddings", Scope(MODELS_READ), || {
        post(embeddings::create)
    }),
    route("post", "/v1/chat/completions", Scope(MODELS_READ), || {
        post(llm::chat)
    }),
    route("post", "/v1/completions", Scope(MODELS_READ), || {
        post(llm::completion)
    }),
    route("post", "/v1/responses", Scope(MODELS_READ), || {
        post(responses::create)
    }),
    route(
        "get",
        "/v1/responses/{response_id}",
        Scope(MODELS_READ),
        || get(responses::retrieve),
    ),
    route(
        "delete",
        "/v1/responses/{response_id}",
        Scope(MODELS_READ),
        || delete(responses::delete),
    ),
    route(
        "get",
        "/v1/responses/{response_id}/input_items",
        Scope(MODELS_READ),
        || get(responses::input_items),
    ),
    route("post", "/v1/messages", Scope(MODELS_READ), || {
        post(anthropic::messages)
    }),
    route("post", "/anthropic/v1/messages", Scope(MODELS_READ), || {
        post(anthropic::messages_prefixed)
    }),
    route("get", "/anthropic/v1/models", Scope(MODELS_LIST), || {
        get(anthropic::list_models)
    }),
    route(
        "get",
        "/anthropic/v1/models/{model_id}",
        Scope(MODELS_LIST),
        || get(anthropic::get_model),
    ),
    route("post", "/v1/rerank", Scope(MODELS_READ), || {
        post(rerank::xinference)
    }),
    route("post", "/rerank", Scope(MODELS_READ), || {
        post(rerank::cohere_v1)
    }),
    route("post", "/v2/rerank", Scope(MODELS_READ), || {
        post(rerank::cohere_v2)
    }),
    route(
        "post",
        "/v1/audio/transcriptions",
        Scope(MODELS_READ),
        || post(audio::transcriptions).layer(DefaultBodyLimit::max(audio::MAX_AUDIO_BYTES)),
    ),
    route("post", "/v1/audio/translations", Scope(MODELS_READ), || {
        post(audio::translations).layer(DefaultBodyLimit::max(audio::MAX_AUDIO_BYTES))
    }),
    route("post", "/v1/images/generations", Scope(MODELS_READ), || {
        post(images::generations)
    }),
    route("post", "/v1/images/variations", Scope(MODELS_READ), || {
        post(images::variations)
    }),
    route("post", "/v1/images/inpainting", Scope(MODELS_READ), || {
        post(images::inpainting)
    }),
    route("get", "/v1/images/files/{name}", Scope(MODELS_READ), || {
        get(images::file)
    }),
    route(
        "get",
        "/v1/requests/{request_id}/progress",
        Scope(MODELS_READ),
        || get(images::progress),
    ),
];

/// The requirement of a request whose method is `method` and whose matched route pattern is
/// `path` (`HEAD` as `GET`). A request that matched no route (or no method of its route) needs
/// a valid credential of any scope, so that it learns nothing of what exists.
pub fn requirement(method: &str, path: Option<&str>) -> Requirement {
    let method = if method.eq_ignore_ascii_case("head") {
        "get"
    } else {
        method
    };
    path.and_then(|path| {
        ROUTES
            .iter()
            .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
    })
    .map_or(Requirement::Authenticated, |r| r.requirement)
}

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
    ROUTES
        .iter()
        .fold(Router::new(), |router, r| {
            router.route(r.path, (r.handler)())
        })
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
        return crate::ApiError::<crate::Xinference>::from(Error::not_found("Not Found"))
            .into_response();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_listed_once_and_needs_xinference_scopes() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
        let needs = |method, path| requirement(method, Some(path));
        assert_eq!(needs("GET", "/health"), Public);
        assert_eq!(needs("HEAD", "/health"), Public);
        assert_eq!(needs("POST", "/token"), Public);
        assert_eq!(needs("GET", "/v1/models"), Scope(MODELS_LIST));
        assert_eq!(needs("POST", "/v1/models"), Scope(MODELS_WRITE));
        assert_eq!(
            needs("DELETE", "/v1/models/{model_uid}"),
            Scope(MODELS_WRITE)
        );
        assert_eq!(
            needs("GET", "/v1/models/{model_uid}/progress"),
            Scope(MODELS_READ)
        );
        assert_eq!(needs("POST", "/v1/embeddings"), Scope(MODELS_READ));
        assert_eq!(
            needs("GET", "/v1/responses/{response_id}"),
            Scope(MODELS_READ)
        );
        assert_eq!(needs("GET", "/v1/images/files/{name}"), Scope(MODELS_READ));
        assert_eq!(
            needs("POST", "/v1/model_registrations/{model_type}"),
            Scope(MODELS_REGISTER)
        );
        assert_eq!(needs("GET", "/v1/cache/models"), Scope(CACHE_LIST));
        assert_eq!(needs("POST", "/v1/admin/keys"), Scope(KEYS_CREATE));
        assert_eq!(
            needs("DELETE", "/v1/admin/keys/{key_id}"),
            Scope(KEYS_MANAGE)
        );
        assert_eq!(needs("GET", "/v1/admin/users"), Scope(USERS_MANAGE));
        assert_eq!(
            needs("PUT", "/v1/admin/users/{user_id}/password"),
            Scope(USERS_MANAGE)
        );
        assert_eq!(needs("GET", "/metrics"), Public);
        assert_eq!(needs("POST", "/v1/auth/refresh"), Public);
        assert_eq!(needs("GET", "/v1/cluster/info"), Scope(ADMIN));
        // No route, or no such method on a route: any valid credential.
        assert_eq!(requirement("GET", None), Requirement::Authenticated);
        assert_eq!(needs("PUT", "/v1/models"), Requirement::Authenticated);
    }
}
