//! Access control on the wire: the middleware that asks every request for a credential when
//! auth is on, `POST /token`, and the API-key admin routes. The decisions themselves (who a
//! credential is, which scope a route needs) are `xinference_core::auth`'s.

use super::AppState;
use crate::error::{Anthropic, ApiError, ApiJson, ApiResult, OpenAi, Xinference};
use axum::extract::{FromRequest, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use xinference_core::auth::scopes::Requirement;
use xinference_core::auth::{unauthorized, Auth, Principal, Tokens};
use xinference_core::{Error, ErrorKind};

/// The credential of a request: `Authorization: Bearer <token or key>`, else Anthropic's
/// `x-api-key`.
fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim().to_owned());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `error` in the shape the route's clients read: Anthropic's, OpenAI's (Responses API) or
/// Xinference's `{"detail"}`; 401s carry `WWW-Authenticate: Bearer`.
pub(crate) fn refuse(path: &str, error: Error) -> Response {
    let unauthorized = error.kind() == ErrorKind::Unauthorized;
    let mut response = if path.starts_with("/v1/messages") || path.starts_with("/anthropic/") {
        ApiError::<Anthropic>::from(error).into_response()
    } else if path.starts_with("/v1/responses") {
        ApiError::<OpenAi>::from(error).into_response()
    } else {
        ApiError::<Xinference>::from(error).into_response()
    };
    if unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Who `credential` is and whether it may do what `requirement` asks.
async fn check(
    auth: Arc<Auth>,
    credential: Option<String>,
    requirement: Requirement,
) -> Result<Principal, Error> {
    let credential = credential.ok_or_else(|| unauthorized("Not authenticated"))?;
    let principal = tokio::task::spawn_blocking(move || auth.authenticate(&credential))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    if let Requirement::Scope(scope) = requirement {
        principal.require(scope)?;
    }
    Ok(principal)
}

/// Middleware: with auth on, every route but the public ones needs a credential (401 without
/// or with a bad one) holding the route's scope (403 without it). The [`Principal`] is left
/// in the request's extensions for the handlers.
pub async fn require_credential(
    State(rt): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = rt.auth().cloned() else {
        return next.run(request).await;
    };
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    // The web UI's page and files are public (the API calls the page makes need credentials);
    // they are served by the fallback, so no route matched them.
    let requirement =
        if matched.is_none() && crate::ui::is_ui_request(request.method(), request.uri().path()) {
            Requirement::Public
        } else {
            super::requirement(request.method().as_str(), matched)
        };
    if requirement == Requirement::Public {
        return next.run(request).await;
    }
    match check(auth, credential(request.headers()), requirement).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => refuse(request.uri().path(), e),
    }
}

/// `GET /v1/cluster/auth`: whether clients must authenticate (they probe this first).
pub async fn cluster_auth(State(rt): State<AppState>) -> Json<Value> {
    Json(json!({"auth": rt.auth().is_some()}))
}

/// Body of `POST /token` (JSON, as xinference-client sends it, or an OAuth2 password form).
#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

fn auth_of(rt: &AppState) -> ApiResult<Arc<Auth>> {
    rt.auth().cloned().ok_or_else(|| {
        ApiError::from(Error::bad_request(
            "Auth is not enabled on this server (start it with --auth-config)",
        ))
    })
}

/// `POST /token`: username and password -> `{access_token, refresh_token, token_type,
/// expires_in}`.
pub async fn token(State(rt): State<AppState>, request: Request) -> ApiResult<Json<Value>> {
    let auth = auth_of(&rt)?;
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let login = if form {
        Form::<LoginRequest>::from_request(request, &())
            .await
            .map_err(|e| ApiError::from(Error::new(ErrorKind::Unprocessable, e.body_text())))?
            .0
    } else {
        let bytes = axum::body::to_bytes(request.into_body(), 64 * 1024)
            .await
            .map_err(|e| ApiError::from(Error::bad_request(e.to_string())))?;
        serde_json::from_slice::<LoginRequest>(&bytes).map_err(|e| {
            ApiError::from(Error::new(
                ErrorKind::Unprocessable,
                format!("expected {{\"username\", \"password\"}}: {e}"),
            ))
        })?
    };
    let minutes = auth.expire_minutes();
    let tokens =
        tokio::task::spawn_blocking(move || auth.login_tokens(&login.username, &login.password))
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
    Ok(Json(tokens_json(&tokens, minutes)))
}

/// Xinference's answer of `POST /token` and `POST /v1/auth/refresh`.
fn tokens_json(tokens: &Tokens, minutes: u64) -> Value {
    json!({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "bearer",
        "expires_in": minutes * 60,
    })
}

/// Body of `POST /v1/auth/refresh` and `/v1/auth/logout`.
#[derive(Deserialize)]
pub struct RefreshRequest {
    #[serde(default)]
    refresh_token: String,
}

/// `POST /v1/auth/refresh`: `{refresh_token}` -> new access and refresh tokens (the old
/// refresh token is used up); 400 without one, 401 when it is invalid, expired or logged out.
pub async fn refresh(
    State(rt): State<AppState>,
    ApiJson(body, _): ApiJson<RefreshRequest>,
) -> ApiResult<Json<Value>> {
    let auth = auth_of(&rt)?;
    if body.refresh_token.trim().is_empty() {
        return Err(ApiError::from(Error::bad_request("refresh_token required")));
    }
    let minutes = auth.expire_minutes();
    let tokens = tokio::task::spawn_blocking(move || auth.refresh(&body.refresh_token))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    Ok(Json(tokens_json(&tokens, minutes)))
}

/// `POST /v1/auth/logout`: `{refresh_token}` can no longer be refreshed; `{"ok": true}`.
pub async fn logout(
    State(rt): State<AppState>,
    ApiJson(body, _): ApiJson<RefreshRequest>,
) -> ApiResult<Json<Value>> {
    let auth = auth_of(&rt)?;
    tokio::task::spawn_blocking(move || auth.logout(&body.refresh_token))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    Ok(Json(json!({"ok": true})))
}

/// Body of `POST /v1/admin/keys`.
#[derive(Deserialize, Default)]
pub struct CreateKey {
    /// A label.
    name: Option<String>,
    /// Scopes (default: models:list, models:read).
    scopes: Option<Vec<String>>,
    /// The model uids the key may use (Xinference's `model_permissions`; default: all, or the
    /// creating key's own list).
    model_permissions: Option<Vec<String>>,
}

/// `POST /v1/admin/keys`: a new API key for the caller; the key is in the answer only.
pub async fn create_key(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    body: Option<Json<CreateKey>>,
) -> ApiResult<Json<Value>> {
    let auth = auth_of(&rt)?;
    let by = principal
        .map(|p| p.0)
        .ok_or_else(|| unauthorized("Not authenticated"))?;
    let body = body.map(|b| b.0).unwrap_or_default();
    let (info, key) = tokio::task::spawn_blocking(move || {
        auth.create_key(
            &by,
            body.name.as_deref(),
            body.scopes,
            body.model_permissions,
        )
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    let mut value = serde_json::to_value(info).map_err(|e| Error::internal(e.to_string()))?;
    value["key"] = Value::String(key);
    Ok(Json(value))
}

/// `GET /v1/admin/keys`: `{"data": [...]}`, every key for an admin, else the caller's own.
pub async fn list_keys(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> ApiResult<Json<Value>> {
    let auth = auth_of(&rt)?;
    let by = principal
        .map(|p| p.0)
        .ok_or_else(|| unauthorized("Not authenticated"))?;
    let keys = tokio::task::spawn_blocking(move || auth.list_keys(&by))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    Ok(Json(json!({"data": keys})))
}

/// `DELETE /v1/admin/keys/{key_id}`: revokes a key (the listing, now revoked).
pub async fn revoke_key(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(key_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let auth = auth_of(&rt)?;
    let by = principal
        .map(|p| p.0)
        .ok_or_else(|| unauthorized("Not authenticated"))?;
    let info = tokio::task::spawn_blocking(move || auth.revoke_key(&by, &key_id))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    Ok(Json(
        serde_json::to_value(info).map_err(|e| Error::internal(e.to_string()))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        assert_eq!(credential(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("xf-abc"));
        assert_eq!(credential(&h).as_deref(), Some("xf-abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer tok"),
        );
        assert_eq!(credential(&h).as_deref(), Some("tok"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert_eq!(credential(&h).as_deref(), Some("xf-abc"));
    }
}
