//! Access control over real HTTP: with an auth config every route but the public ones is a 401
//! without a credential, a credential without the route's scope is a 403, JWTs from `POST
//! /token` and API keys (`Authorization: Bearer`, Anthropic's `x-api-key`) work, expired,
//! forged and revoked ones do not; without a config nothing changes. The official Python
//! client logs in and uses keys.

mod common;

use common::{minilm_dir, run_python, TestServer};
use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use xinference::auth::token::{now_secs, Claims};
use xinference::{Client, RuntimeConfig};

const SECRET: &str = "auth-test-secret";
const ADMIN_KEY: &str = "sk-admin-key-0123456789";
const LISTER_KEY: &str = "sk-lister-key-0123456789";

fn write_config(dir: &Path) -> std::path::PathBuf {
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

async fn start_with_auth(home: &Path) -> TestServer {
    let mut config = RuntimeConfig::new(home.join("home"));
    config.auth_config = Some(write_config(home));
    // With auth on, local model paths must lie under the allowed roots.
    config.model_roots = vec![common::test_models_dir()];
    TestServer::start_with(config).await
}

/// Sends `method path` with `headers` and a small JSON body; (status, JSON body or Null).
async fn call(
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

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn login(server: &TestServer, user: &str, password: &str) -> String {
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

fn forge(secret: &str, user: &str, scopes: &[&str], exp: u64) -> String {
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

const PUBLIC: &[&str] = &[
    "/health",
    "/status",
    "/metrics",
    "/v1/cluster/auth",
    "/token",
    "/v1/auth/refresh",
    "/v1/auth/logout",
];

#[tokio::test]
async fn every_route_needs_a_credential_when_auth_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_auth(dir.path()).await;
    let (status, body, _) = call(&server, "get", "/v1/cluster/auth", &[], None).await;
    assert_eq!((status, body), (200, json!({"auth": true})));

    let expired = forge(SECRET, "admin", &["admin"], now_secs() - 60);
    let foreign = forge("another-secret", "admin", &["admin"], now_secs() + 600);
    let bad_credentials = [
        None,
        Some(("authorization", bearer("xf-not-a-key-of-ours"))),
        Some(("authorization", bearer(&expired))),
        Some(("authorization", bearer(&foreign))),
        Some(("authorization", "Basic YWRtaW46YWRtaW4tcHc=".to_owned())),
        Some(("x-api-key", "wrong".to_owned())),
    ];
    for served in xinference_server::ROUTES {
        let (method, route) = (served.method, served.path);
        let path = route
            .split('/')
            .map(|part| if part.starts_with('{') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for credential in &bad_credentials {
            let headers: Vec<(&str, &str)> =
                credential.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body, response_headers) =
                call(&server, method, &path, &headers, Some(json!({}))).await;
            if PUBLIC.contains(&route) {
                assert!(
                    ![401, 403].contains(&status),
                    "{method} {path}: {status} {body}"
                );
                continue;
            }
            assert_eq!(status, 401, "{method} {path} with {credential:?}: {body}");
            assert_eq!(response_headers["www-authenticate"], "Bearer");
            if path.starts_with("/v1/messages") || path.starts_with("/anthropic/") {
                assert_eq!(body["error"]["type"], "authentication_error", "{body}");
            } else if path.starts_with("/v1/responses") {
                assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
            } else {
                assert!(body["detail"].is_string(), "{method} {path}: {body}");
            }
        }
    }
    // Unknown routes too (no hint of what exists).
    let (status, _, _) = call(&server, "get", "/v1/secret-admin", &[], None).await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn scopes_tokens_and_keys_decide_what_a_caller_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_auth(dir.path()).await;

    // The Rust client with the admin's key launches MiniLM; without a key it gets a 401.
    let anonymous = Client::remote(&server.url, None).unwrap();
    let err = anonymous.list_models().await.unwrap_err();
    assert_eq!(err.kind(), xinference::ErrorKind::Unauthorized, "{err}");
    let admin = Client::remote(&server.url, Some(ADMIN_KEY.to_owned())).unwrap();
    let uid = admin
        .launch_model(
            xinference::LaunchRequest::new("all-MiniLM-L6-v2")
                .model_type(xinference::ModelType::Embedding)
                .model_uid("mini")
                .model_path(minilm_dir().display().to_string()),
        )
        .await
        .unwrap();
    assert_eq!(uid, "mini");
    let embed = json!({"model": "mini", "input": "hello"});

    // lister (models:list): may list, may neither infer nor launch.
    let lister = bearer(LISTER_KEY);
    let (status, body, _) = call(
        &server,
        "get",
        "/v1/models",
        &[("authorization", &lister)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["id"], "mini");
    for (method, path, body) in [
        ("post", "/v1/embeddings", Some(embed.clone())),
        (
            "post",
            "/v1/models",
            Some(json!({"model_name": "x", "model_type": "embedding"})),
        ),
        ("delete", "/v1/models/mini", None),
        ("get", "/v1/cache/models", None),
        ("post", "/v1/admin/keys", Some(json!({}))),
    ] {
        let (status, answer, _) =
            call(&server, method, path, &[("authorization", &lister)], body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains("scope"),
            "{answer}"
        );
    }
    // Anthropic's shape for its routes.
    let (status, answer, _) = call(
        &server,
        "post",
        "/v1/messages",
        &[
            ("x-api-key", LISTER_KEY),
            ("anthropic-version", "2023-06-01"),
        ],
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (403, Some("permission_error"))
    );

    // reader logs in (JSON, and the OAuth2 form) and embeds with the JWT.
    let jwt = login(&server, "reader", "reader-pw").await;
    let form = reqwest::Client::new()
        .post(format!("{}/token", server.url))
        .form(&[("username", "reader"), ("password", "reader-pw")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let (status, _, _) = call(
        &server,
        "post",
        "/token",
        &[],
        Some(json!({"username": "reader", "password": "nope"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/embeddings",
        &[("authorization", &bearer(&jwt))],
        Some(embed.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    let (status, _, _) = call(
        &server,
        "delete",
        "/v1/models/mini",
        &[("authorization", &bearer(&jwt))],
        None,
    )
    .await;
    assert_eq!(status, 403);

    // reader creates a key (default scopes: models:list, models:read) and may not grant more.
    let (status, answer, _) = call(
        &server,
        "post",
        "/v1/admin/keys",
        &[("authorization", &bearer(&jwt))],
        Some(json!({"name": "ci", "scopes": ["models:write"]})),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, created, _) = call(
        &server,
        "post",
        "/v1/admin/keys",
        &[("authorization", &bearer(&jwt))],
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("xf-") && key.len() == 51, "{key}");
    assert_eq!(created["scopes"], json!(["models:list", "models:read"]));
    for header in ["authorization", "x-api-key"] {
        let value = if header == "x-api-key" {
            key.clone()
        } else {
            bearer(&key)
        };
        let (status, body, _) = call(
            &server,
            "post",
            "/v1/embeddings",
            &[(header, &value)],
            Some(embed.clone()),
        )
        .await;
        assert_eq!(status, 200, "{header}: {body}");
    }
    // The listing never shows the key; reader sees only their own, the admin all.
    let (_, listed, _) = call(
        &server,
        "get",
        "/v1/admin/keys",
        &[("authorization", &bearer(&jwt))],
        None,
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert!(!listed.to_string().contains(&key));
    let (_, all, _) = call(
        &server,
        "get",
        "/v1/admin/keys",
        &[("authorization", &bearer(ADMIN_KEY))],
        None,
    )
    .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");
    // Revoked: 401 from then on.
    let id = created["id"].as_str().unwrap();
    let (status, revoked, _) = call(
        &server,
        "delete",
        &format!("/v1/admin/keys/{id}"),
        &[("authorization", &bearer(&jwt))],
        None,
    )
    .await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)));
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/embeddings",
        &[("authorization", &bearer(&key))],
        Some(embed.clone()),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("revoked"));

    // Nothing secret is stored in clear.
    let db = std::fs::read(dir.path().join("home/auth/auth.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    for secret in ["admin-pw", "reader-pw", ADMIN_KEY, key.as_str()] {
        assert!(!db.contains(secret), "{secret} is stored in clear");
    }
    server.stop().await;
}

#[tokio::test]
async fn auth_off_keeps_todays_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let (status, body, _) = call(&server, "get", "/v1/cluster/auth", &[], None).await;
    assert_eq!((status, body), (200, json!({"auth": false})));
    let (status, _, _) = call(&server, "get", "/v1/models", &[], None).await;
    assert_eq!(status, 200);
    // A stray credential changes nothing.
    let (status, _, _) = call(
        &server,
        "get",
        "/v1/models",
        &[("authorization", "Bearer whatever")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body, _) = call(
        &server,
        "post",
        "/token",
        &[],
        Some(json!({"username": "a", "password": "b"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn refresh_tokens_renew_access_and_logout_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_auth(dir.path()).await;
    let (status, login, _) = call(
        &server,
        "post",
        "/token",
        &[],
        Some(json!({"username": "reader", "password": "reader-pw"})),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["token_type"], "bearer");
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    // A refresh token is no access token.
    let (status, _, _) = call(
        &server,
        "get",
        "/v1/models",
        &[("authorization", &bearer(&refresh))],
        None,
    )
    .await;
    assert_eq!(status, 401);
    // It gets a new pair whose access token works, and is used up.
    let (status, renewed, _) = call(
        &server,
        "post",
        "/v1/auth/refresh",
        &[],
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let access = renewed["access_token"].as_str().unwrap();
    let (status, body, _) = call(
        &server,
        "get",
        "/v1/models",
        &[("authorization", &bearer(access))],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(
        &server,
        "post",
        "/v1/auth/refresh",
        &[],
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, 401);
    // Logged out, the new one is refused too; forged and missing ones are 401 and 400.
    let next = renewed["refresh_token"].as_str().unwrap();
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/auth/logout",
        &[],
        Some(json!({"refresh_token": next})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let (status, _, _) = call(
        &server,
        "post",
        "/v1/auth/refresh",
        &[],
        Some(json!({"refresh_token": next})),
    )
    .await;
    assert_eq!(status, 401);
    let forged = forge("another-secret", "reader", &[], now_secs() + 600);
    let (status, _, _) = call(
        &server,
        "post",
        "/v1/auth/refresh",
        &[],
        Some(json!({"refresh_token": forged})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = call(&server, "post", "/v1/auth/refresh", &[], Some(json!({}))).await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn a_key_limited_to_some_models_may_use_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_auth(dir.path()).await;
    let admin = bearer(ADMIN_KEY);
    let admin = [("authorization", admin.as_str())];
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/models",
        &admin,
        Some(
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding",
            "model_uid": "allowed", "model_path": minilm_dir()}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/models",
        &admin,
        Some(
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding",
            "model_uid": "other", "model_path": minilm_dir()}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, created, _) = call(
        &server,
        "post",
        "/v1/admin/keys",
        &admin,
        Some(json!({"name": "one-model", "model_permissions": ["allowed"]})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["model_permissions"], json!(["allowed"]));
    let key = bearer(created["key"].as_str().unwrap());
    let key = [("authorization", key.as_str())];
    // The key's listings show only its models; the admin's show both.
    let uids = |list: &Value, field: &str| -> Vec<String> {
        let rows = list.get("data").unwrap_or(list).as_array().unwrap().clone();
        rows.iter()
            .map(|m| m[field].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, list, _) = call(&server, "get", "/v1/models", &key, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(uids(&list, "id"), ["allowed"], "{list}");
    let (_, list, _) = call(&server, "get", "/v1/models/instances", &key, None).await;
    assert_eq!(uids(&list, "model_uid"), ["allowed"], "{list}");
    let (_, list, _) = call(&server, "get", "/v1/models", &admin, None).await;
    assert_eq!(uids(&list, "id"), ["allowed", "other"], "{list}");
    let (_, list, _) = call(&server, "get", "/v1/models/instances", &admin, None).await;
    assert_eq!(uids(&list, "model_uid"), ["allowed", "other"], "{list}");
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/embeddings",
        &key,
        Some(json!({"model": "allowed", "input": "hi"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/embeddings",
        &key,
        Some(json!({"model": "other", "input": "hi"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("other"), "{body}");
    let (status, _, _) = call(&server, "get", "/v1/models/allowed", &key, None).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&server, "get", "/v1/models/other", &key, None).await;
    assert_eq!(status, 403);
    // A multipart form names its model in a field.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![1u8; 64]).file_name("a.wav"),
        )
        .text("model", "other");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/audio/transcriptions", server.url))
        .header("authorization", key[0].1)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Unlimited keys are not affected.
    let (status, _, _) = call(
        &server,
        "post",
        "/v1/embeddings",
        &admin,
        Some(json!({"model": "allowed", "input": "hi"})),
    )
    .await;
    assert_eq!(status, 200);
    // /v1/cluster/info counts only the models a limited (admin) key may see.
    let (status, created, _) = call(
        &server,
        "post",
        "/v1/admin/keys",
        &admin,
        Some(json!({"scopes": ["admin"], "model_permissions": ["allowed"]})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let limited_admin = bearer(created["key"].as_str().unwrap());
    let (status, info, _) = call(
        &server,
        "get",
        "/v1/cluster/info",
        &[("authorization", &limited_admin)],
        None,
    )
    .await;
    assert_eq!((status, &info[0]["models"]), (200, &json!(1)), "{info}");
    let (_, info, _) = call(&server, "get", "/v1/cluster/info", &admin, None).await;
    assert_eq!(info[0]["models"], 2, "{info}");
    server.stop().await;
}

#[tokio::test]
async fn python_client_logs_in_and_uses_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_auth(dir.path()).await;
    let minilm = minilm_dir().display().to_string();
    let out = run_python(
        "xinference_client_auth.py",
        &[&server.url, &minilm, ADMIN_KEY, LISTER_KEY],
    )
    .await;
    assert!(out.trim_end().ends_with("ok"), "{out}");
    assert!(out.contains("Not authenticated"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn users_are_managed_over_http_as_xinference_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_auth(dir.path()).await;
    let admin = bearer(ADMIN_KEY);
    let admin = [("authorization", admin.as_str())];
    let reader = bearer(&login(&server, "reader", "reader-pw").await);
    let reader = [("authorization", reader.as_str())];
    let carol = json!({"username": "carol", "password": "carol-pw-1",
        "permissions": ["models:list", "models:read"]});

    // users:manage is needed; a short password, a missing field, a taken name are refused.
    let (status, body, _) = call(
        &server,
        "post",
        "/v1/admin/users",
        &reader,
        Some(carol.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    for (bad, want) in [
        (json!({"username": "carol", "password": "short"}), 400),
        (json!({"username": "carol"}), 400),
        (
            json!({"username": "../carol", "password": "carol-pw-1"}),
            400,
        ),
        (json!({"username": "reader", "password": "carol-pw-1"}), 409),
        (
            json!({"username": "carol", "password": "carol-pw-1", "permissions": ["root"]}),
            400,
        ),
    ] {
        let (status, body, _) = call(
            &server,
            "post",
            "/v1/admin/users",
            &admin,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, want, "{bad}: {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    let (status, created, _) = call(&server, "post", "/v1/admin/users", &admin, Some(carol)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["username"], "carol");
    let id = created["id"].as_i64().unwrap();
    let (status, users, _) = call(&server, "get", "/v1/admin/users", &admin, None).await;
    assert_eq!(status, 200, "{users}");
    let listed: Vec<(String, String)> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["username"].as_str().unwrap().to_owned(),
                u["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("admin", "config"),
            ("reader", "config"),
            ("lister", "config"),
            ("carol", "api")
        ]
        .map(|(u, s)| (u.to_owned(), s.to_owned()))
    );
    assert!(!users.to_string().contains("carol-pw-1") && !users.to_string().contains("argon2"));
    let user_path = format!("/v1/admin/users/{id}");
    let (status, one, _) = call(&server, "get", &user_path, &admin, None).await;
    assert_eq!(
        (status, &one["enabled"], &one["permissions"]),
        (200, &json!(true), &json!(["models:list", "models:read"])),
        "{one}"
    );

    // The new user logs in with the official client.
    let out = run_python(
        "xinference_client_login.py",
        &[&server.url, "carol", "carol-pw-1"],
    )
    .await;
    assert!(out.trim_end().ends_with("ok"), "{out}");
    let carol_jwt = bearer(&login(&server, "carol", "carol-pw-1").await);
    let carol = [("authorization", carol_jwt.as_str())];
    let (status, _, _) = call(&server, "get", "/v1/models", &carol, None).await;
    assert_eq!(status, 200);

    // Disabled: the token and the login are refused; enabled again, they work.
    let (status, body, _) = call(
        &server,
        "put",
        &user_path,
        &admin,
        Some(json!({"enabled": 0})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let (status, _, _) = call(&server, "get", "/v1/models", &carol, None).await;
    assert_eq!(status, 401);
    let out = run_python(
        "xinference_client_login.py",
        &[&server.url, "carol", "carol-pw-1"],
    )
    .await;
    assert!(out.contains("refused") && out.contains("disabled"), "{out}");
    let (status, _, _) = call(
        &server,
        "put",
        &user_path,
        &admin,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&server, "get", "/v1/models", &carol, None).await;
    assert_eq!(status, 200);

    // Permissions: taken away at once, even from tokens issued before.
    let perms = format!("{user_path}/permissions");
    let (status, _, _) = call(
        &server,
        "put",
        &perms,
        &admin,
        Some(json!({"permissions": ["models:read"]})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body, _) = call(&server, "get", &perms, &admin, None).await;
    assert_eq!(
        (status, body),
        (200, json!({"permissions": ["models:read"]}))
    );
    let (status, body, _) = call(&server, "get", "/v1/models", &carol, None).await;
    assert_eq!(status, 403, "{body}");

    // A new password ends the earlier tokens (issue times are whole seconds: wait for the next).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body, _) = call(
        &server,
        "put",
        &format!("{user_path}/password"),
        &admin,
        Some(json!({"new_password": "carol-pw-2"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(&server, "get", "/v1/models/x/progress", &carol, None).await;
    assert_eq!(status, 401);
    let out = run_python(
        "xinference_client_login.py",
        &[&server.url, "carol", "carol-pw-1"],
    )
    .await;
    assert!(out.contains("refused"), "{out}");
    login(&server, "carol", "carol-pw-2").await;

    // The config file's users are read-only here; bad ids are 422, unknown ones 404.
    let reader_id = users[1]["id"].as_i64().unwrap();
    let (status, body, _) = call(
        &server,
        "delete",
        &format!("/v1/admin/users/{reader_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _, _) = call(&server, "get", "/v1/admin/users/abc", &admin, None).await;
    assert_eq!(status, 422);
    let (status, _, _) = call(&server, "get", "/v1/admin/users/999", &admin, None).await;
    assert_eq!(status, 404);

    // Deleted: gone, and so are its tokens.
    let carol_jwt = bearer(&login(&server, "carol", "carol-pw-2").await);
    let (status, body, _) = call(&server, "delete", &user_path, &admin, None).await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let (status, _, _) = call(&server, "get", &user_path, &admin, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(
        &server,
        "get",
        "/v1/models/x/progress",
        &[("authorization", &carol_jwt)],
        None,
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}
