//! Per-model permissions of API keys (Xinference's `model_permissions`): a key limited to some
//! model uids gets a 403 when a request names another, in the body's `model` (JSON or a
//! multipart form field) of the inference routes, or in the path of `/v1/models/{uid}`.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use xinference_core::auth::Principal;
use xinference_core::{Error, ErrorKind};

/// The routes whose body names the model.
const INFERENCE: &[&str] = &[
    "/v1/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/anthropic/v1/messages",
    "/v1/rerank",
    "/rerank",
    "/v2/rerank",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/images/generations",
    "/v1/images/variations",
    "/v1/images/inpainting",
];

/// The `model` of a JSON or multipart body, if it names one.
async fn model_of(headers: &HeaderMap, bytes: &Bytes) -> Option<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let mut request = Request::new(Body::from(bytes.clone()));
        *request.headers_mut() = headers.clone();
        let mut form = Multipart::from_request(request, &()).await.ok()?;
        while let Ok(Some(field)) = form.next_field().await {
            if field.name() == Some("model") {
                return field.text().await.ok();
            }
        }
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("model")?.as_str().map(str::to_owned)
}

/// Middleware (inside the credential check): refuses with 403, in the route's error shape,
/// a request of a model-limited key that names a model outside its list.
pub async fn check(request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    if principal.models.is_none() {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/v1/models/") {
        let uid = rest.split('/').next().unwrap_or("");
        if uid != "instances" {
            if let Err(e) = principal.require_model(uid) {
                return crate::routes::shaped_error(&path, e);
            }
        }
        return next.run(request).await;
    }
    if request.method() != Method::POST || !INFERENCE.contains(&path.as_str()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let limit = crate::routes::MAX_BODY_BYTES.max(crate::routes::MAX_AUDIO_BYTES);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return crate::routes::shaped_error(
                &path,
                Error::new(ErrorKind::PayloadTooLarge, "the request body is too large"),
            )
        }
    };
    if let Some(model) = model_of(&parts.headers, &bytes).await {
        if let Err(e) = principal.require_model(&model) {
            return crate::routes::shaped_error(&path, e);
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
