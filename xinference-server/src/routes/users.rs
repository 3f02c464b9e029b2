//! User management on the wire, as Xinference's `/v1/admin/users` routes (scope
//! `users:manage`): create, list, read, update (enabled, permissions), change password,
//! delete. The rules (who may manage whom) are `xinference_core::auth`'s.

use super::AppState;
use crate::error::{ApiError, ApiJson, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use xinference_core::auth::{unauthorized, Auth, Principal, UserUpdate};
use xinference_core::{Error, ErrorKind};

/// The server's [`Auth`] and the caller (the middleware left it in the request).
fn caller(
    rt: &AppState,
    principal: Option<Extension<Principal>>,
) -> ApiResult<(Arc<Auth>, Principal)> {
    let auth = rt.auth().cloned().ok_or_else(|| {
        ApiError::from(Error::bad_request(
            "Auth is not enabled on this server (start it with --auth-config)",
        ))
    })?;
    let by = principal
        .map(|p| p.0)
        .ok_or_else(|| unauthorized("Not authenticated"))?;
    Ok((auth, by))
}

/// A user id of the path (an integer, as Xinference's); 422 otherwise.
fn user_id(text: &str) -> ApiResult<i64> {
    text.parse().map_err(|_| {
        ApiError::from(Error::new(
            ErrorKind::Unprocessable,
            format!("user_id must be an integer, not {text:?}"),
        ))
    })
}

/// Runs `f` (database and argon2 work) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> xinference_core::Result<T> + Send + 'static,
) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(e.to_string()))??)
}

/// Body of `POST /v1/admin/users`.
#[derive(Deserialize)]
pub struct CreateUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    permissions: Vec<String>,
}

/// `POST /v1/admin/users`: `{username, password, permissions}` -> 201 `{id, username}`; 400
/// without a name or password, 409 when the name is taken.
pub async fn create(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    ApiJson(body, _): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (auth, by) = caller(&rt, principal)?;
    if body.username.is_empty() || body.password.is_empty() {
        return Err(Error::bad_request("username and password required").into());
    }
    let info =
        blocking(move || auth.create_user(&by, &body.username, &body.password, &body.permissions))
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": info.id, "username": info.username})),
    ))
}

/// `GET /v1/admin/users`: every user, `[{id, username, source, enabled,
/// must_change_password, permissions, created_at}]`.
pub async fn list(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> ApiResult<Json<Value>> {
    let (auth, by) = caller(&rt, principal)?;
    let users = blocking(move || auth.list_users(&by)).await?;
    Ok(Json(json!(users)))
}

/// `GET /v1/admin/users/{user_id}`: one user; 404 when there is none.
pub async fn get_one(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (auth, by) = caller(&rt, principal)?;
    let id = user_id(&id)?;
    let user = blocking(move || auth.get_user(&by, id)).await?;
    Ok(Json(json!(user)))
}

/// Body of `PUT /v1/admin/users/{user_id}`: `enabled` as a boolean or 0/1.
#[derive(Deserialize)]
pub struct UpdateUser {
    enabled: Option<Value>,
    permissions: Option<Vec<String>>,
}

/// `PUT /v1/admin/users/{user_id}`: `{enabled?, permissions?}` -> `{"ok": true}`.
pub async fn update(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    ApiJson(body, _): ApiJson<UpdateUser>,
) -> ApiResult<Json<Value>> {
    let (auth, by) = caller(&rt, principal)?;
    let id = user_id(&id)?;
    let enabled = match body.enabled {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(Value::Number(n)) if n.as_i64().is_some() => Some(n.as_i64() != Some(0)),
        Some(other) => {
            return Err(Error::new(
                ErrorKind::Unprocessable,
                format!("enabled must be a boolean or 0/1, not {other}"),
            )
            .into())
        }
    };
    let update = UserUpdate {
        enabled,
        permissions: body.permissions,
    };
    blocking(move || auth.update_user(&by, id, update)).await?;
    Ok(Json(json!({"ok": true})))
}

/// `DELETE /v1/admin/users/{user_id}`: deletes the user and revokes its keys.
pub async fn delete(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (auth, by) = caller(&rt, principal)?;
    let id = user_id(&id)?;
    blocking(move || auth.delete_user(&by, id)).await?;
    Ok(Json(json!({"ok": true})))
}

/// Body of `PUT /v1/admin/users/{user_id}/password`.
#[derive(Deserialize)]
pub struct NewPassword {
    #[serde(default)]
    new_password: String,
}

/// `PUT /v1/admin/users/{user_id}/password`: `{new_password}` -> `{"ok": true}`; the user's
/// earlier tokens stop working.
pub async fn password(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    ApiJson(body, _): ApiJson<NewPassword>,
) -> ApiResult<Json<Value>> {
    let (auth, by) = caller(&rt, principal)?;
    let id = user_id(&id)?;
    if body.new_password.is_empty() {
        return Err(Error::bad_request("new_password required").into());
    }
    blocking(move || auth.set_password(&by, id, &body.new_password)).await?;
    Ok(Json(json!({"ok": true})))
}

/// `GET /v1/admin/users/{user_id}/permissions`: `{"permissions": [...]}`.
pub async fn permissions(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (auth, by) = caller(&rt, principal)?;
    let id = user_id(&id)?;
    let user = blocking(move || auth.get_user(&by, id)).await?;
    Ok(Json(json!({"permissions": user.permissions})))
}

/// Body of `PUT /v1/admin/users/{user_id}/permissions`.
#[derive(Deserialize)]
pub struct SetPermissions {
    #[serde(default)]
    permissions: Vec<String>,
}

/// `PUT /v1/admin/users/{user_id}/permissions`: `{permissions}` -> `{"ok": true}`.
pub async fn set_permissions(
    State(rt): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    ApiJson(body, _): ApiJson<SetPermissions>,
) -> ApiResult<Json<Value>> {
    let (auth, by) = caller(&rt, principal)?;
    let id = user_id(&id)?;
    let update = UserUpdate {
        enabled: None,
        permissions: Some(body.permissions),
    };
    blocking(move || auth.update_user(&by, id, update)).await?;
    Ok(Json(json!({"ok": true})))
}
