//! Access control over real HTTP, continued from tests/auth.rs: refresh tokens renew access and
//! logout ends them, a key limited to some models may use only those, users are managed over
//! HTTP as Xinference does, and the official Python client logs in and uses keys.

mod common;

use common::auth_server::{bearer, call, forge, login, start_with_auth, ADMIN_KEY, LISTER_KEY};
use common::{minilm_dir, run_python};
use serde_json::{json, Value};
use xinference::auth::token::now_secs;

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
