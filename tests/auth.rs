//! Access control over real HTTP: with an auth config every route but the public ones is a 401
//! without a credential, a credential without the route's scope is a 403, JWTs from `POST
//! /token` and API keys (`Authorization: Bearer`, Anthropic's `x-api-key`) work, expired and
//! forged ones do not; without a config nothing changes. Sessions, per-model keys and user
//! management: tests/auth_sessions.rs.

mod common;

use common::auth_server::{
    bearer, call, forge, login, start_with_auth, ADMIN_KEY, LISTER_KEY, SECRET,
};
use common::{minilm_dir, TestServer};
use serde_json::json;
use xinference::auth::token::now_secs;
use xinference::Client;

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
