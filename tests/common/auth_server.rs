//! The auth tests' server and requests: a config with three users (admin, reader, lister) and
//! their keys, login, raw calls with any headers, and JWTs forged with any secret.

use super::TestServer;
use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use xinference::auth::token::{now_secs, Claims};
use xinference::RuntimeConfig;
/// The secret the config signs JWTs with.
pub const SECRET: &str = "auth-test-secret";
/// The admin's API key.
pub const ADMIN_KEY: &str = "sk-admin-key-0123456789";
/// The API key of `lister`, who may only list models.
pub const LISTER_KEY: &str = "sk-lister-key-0123456789";

/// Writes the auth config (three users, their scopes and keys) into `dir`.
pub fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("auth.json");
    let config = json!({
        "auth_config": {"algorithm": "HS256", "secret_key": SECRET, "token_expire_in_minutes": 30},
        "user_config": [
            {"username": "admin", "password": "admin-pw", "permissions": ["admin"], "api_keys": [ADMIN_KEY]},
            {"username": "reader", "password": "reader-pw",
             "permissions": ["models:list", "models:read", "keys:create", "keys:manage"]},
            {"username": "lister", "password": "lister-pw", "permissions": ["models:list"], "api_keys": [LISTER_KEY]}
        ]
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A server under `home` with the auth config on and the test models as the allowed roots.
pub async fn start_with_auth(home: &Path) -> TestServer {
    let mut config = RuntimeConfig::new(home.join("home"));
    config.auth_config = Some(write_config(home));
    // With auth on, local model paths must lie under the allowed roots.
    config.model_roots = vec![super::test_models_dir()];
    TestServer::start_with(config).await
}

/// Sends `method path` with `headers` and a small JSON body; (status, JSON body or Null).
pub async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

/// An `Authorization` value for `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Logs `user` in (`POST /token`) and returns the access token.
pub async fn login(server: &TestServer, user: &str, password: &str) -> String {
    let (status, body, _) = call(
        server,
        "post",
        "/token",
        &[],
        Some(json!({"username": user, "password": password})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A JWT for `user` with `scopes`, expiring at `exp`, signed with `secret`.
pub fn forge(secret: &str, user: &str, scopes: &[&str], exp: u64) -> String {
    let claims = Claims {
        sub: user.to_owned(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        exp,
        iat: now_secs() - 3600,
    };
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
