//! Limits answer with clear 4xx over real HTTP: a body over the server's limit is a 413, a
//! prompt longer than the context a 400, a negative max_tokens a 422, audio over four hours a
//! 413; with `max_concurrent_per_key`, a key past its concurrent requests gets a 429 with
//! `Retry-After` while other keys go on; and with auth on, `model_path` (and a registration's
//! `model_uri`) must lie under the allowed roots, refused alike whether or not a file exists
//! outside them.

mod common;

use common::{minilm_dir, smollm2_gguf, test_models_dir, whisper_dir, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use xinference::RuntimeConfig;

const ADMIN_KEY: &str = "sk-admin-limits-0123456789";
const KEY_A: &str = "sk-reader-a-0123456789";
const KEY_B: &str = "sk-reader-b-0123456789";

fn auth_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("auth.json");
    let config = json!({
        "auth_config": {"algorithm": "HS256", "secret_key": "limits-secret", "token_expire_in_minutes": 30},
        "user_config": [
            {"username": "admin", "password": "admin-pw", "permissions": ["admin"], "api_keys": [ADMIN_KEY]},
            {"username": "reader", "password": "reader-pw", "permissions": ["models:list", "models:read"],
             "api_keys": [KEY_A, KEY_B]}
        ]
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

async fn post(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .json(&body);
    if let Some(key) = key {
        r = r.bearer_auth(key);
    }
    r.send().await.unwrap()
}

fn smollm2_launch() -> Value {
    json!({"model_name": "smollm2-instruct", "model_uid": "llm", "model_engine": "llama.cpp",
        "model_format": "ggufv2", "model_size_in_billions": "0_135", "quantization": "Q4_1",
        "model_path": smollm2_gguf()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_concurrent_requests_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(dir.path().join("home"));
    config.auth_config = Some(auth_config(dir.path()));
    config.model_roots = vec![test_models_dir()];
    config.max_concurrent_per_key = Some(1);
    let server = TestServer::start_with(config).await;
    let r = post(&server, "/v1/models", Some(ADMIN_KEY), smollm2_launch()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Key A streams a long answer; while it streams, A's next request is refused at once.
    let long = post(
        &server,
        "/v1/chat/completions",
        Some(KEY_A),
        json!({"model": "llm", "stream": true, "max_tokens": 1500, "stop_token_ids": [],
            "messages": [{"role": "user", "content": "Tell me a long story."}]}),
    )
    .await;
    assert_eq!(long.status(), 200);
    let mut stream = long.bytes_stream();
    stream.next().await.expect("a first chunk").unwrap();
    let short =
        json!({"model": "llm", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]});
    let refused = post(&server, "/v1/chat/completions", Some(KEY_A), short.clone()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("concurrent requests"),
        "{body}"
    );
    // The Anthropic route answers in Anthropic's shape.
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.url))
        .header("x-api-key", KEY_A)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "llm", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // Another key is not affected; public routes are not limited.
    let other = post(&server, "/v1/chat/completions", Some(KEY_B), short.clone()).await;
    assert_eq!(other.status(), 200, "{}", other.text().await.unwrap());
    let health = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // The stream's client goes away: A's place is free again.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = post(&server, "/v1/chat/completions", Some(KEY_A), short.clone()).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(Instant::now() < deadline, "key A's place was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn model_path_stays_under_the_allowed_roots_when_auth_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("models");
    std::fs::create_dir_all(&roots).unwrap();
    // The test model, reached through a link inside the root (what an admin would set up)...
    let inside = roots.join("minilm");
    std::fs::create_dir_all(&inside).unwrap();
    for entry in std::fs::read_dir(minilm_dir()).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), inside.join(entry.file_name())).unwrap();
    }
    // ... and a link that leads out of it.
    std::os::unix::fs::symlink("/etc", roots.join("escape")).unwrap();
    let mut config = RuntimeConfig::new(dir.path().join("home"));
    config.auth_config = Some(auth_config(dir.path()));
    config.model_roots = vec![roots.clone()];
    let server = TestServer::start_with(config).await;
    let launch = |path: String, uid: &str| {
        json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "model_uid": uid,
            "model_path": path})
    };
    let r = post(
        &server,
        "/v1/models",
        Some(ADMIN_KEY),
        launch(inside.display().to_string(), "ok"),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Outside the roots: one answer, whether the file exists or not.
    let mut answers = Vec::new();
    for path in [
        "/etc/passwd".to_owned(),
        "/etc/no-such-file".to_owned(),
        format!("{}/../../../etc/passwd", roots.display()),
        format!("{}/escape/passwd", roots.display()),
        format!("{}/escape/no-such-file", roots.display()),
        minilm_dir().display().to_string(),
    ] {
        let r = post(
            &server,
            "/v1/models",
            Some(ADMIN_KEY),
            launch(path.clone(), "out"),
        )
        .await;
        assert_eq!(r.status(), 403, "{path}");
        answers.push(r.json::<Value>().await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert!(answers[0]["detail"]
        .as_str()
        .unwrap()
        .contains("--model-roots"));
    let r = post(
        &server,
        "/v1/models",
        Some(ADMIN_KEY),
        launch("relative/dir".into(), "rel"),
    )
    .await;
    assert_eq!(r.status(), 400);
    // A registration's local model_uri is held to the same roots.
    let family = json!({"version": 2, "model_name": "my-embed", "dimensions": 384, "max_tokens": 256,
        "language": ["en"], "model_specs": [{"model_format": "pytorch", "model_id": "x/y",
        "model_uri": "file:///etc", "quantization": "none"}]});
    let r = post(
        &server,
        "/v1/model_registrations/embedding",
        Some(ADMIN_KEY),
        json!({"model": family.to_string(), "persist": false}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = post(
        &server,
        "/v1/models",
        Some(ADMIN_KEY),
        json!({"model_name": "my-embed", "model_type": "embedding"}),
    )
    .await;
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
    // Nothing but the good launch is in the table.
    let instances: Value = reqwest::Client::new()
        .get(format!("{}/v1/models/instances", server.url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(instances.as_array().unwrap().len(), 1, "{instances}");
    server.stop().await;

    // Auth on and no roots: local paths are refused, with the fix in the answer.
    let mut config = RuntimeConfig::new(dir.path().join("home2"));
    config.auth_config = Some(auth_config(dir.path()));
    let server = TestServer::start_with(config).await;
    let r = post(
        &server,
        "/v1/models",
        Some(ADMIN_KEY),
        launch(inside.display().to_string(), "x"),
    )
    .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--model-roots DIR"),
        "{body}"
    );
    server.stop().await;
}

/// An 8-bit mono WAV file of `seconds` of silence at 1 kHz.
fn long_wav(seconds: usize) -> Vec<u8> {
    let rate = 1000u32;
    let samples = seconds * rate as usize;
    let mut out = Vec::with_capacity(44 + samples);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + samples as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes()); // bytes per second
    out.extend_from_slice(&1u16.to_le_bytes()); // block align
    out.extend_from_slice(&8u16.to_le_bytes()); // bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(samples as u32).to_le_bytes());
    out.resize(44 + samples, 128);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_clear_4xx() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let r = post(&server, "/v1/models", None, smollm2_launch()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let detail = |v: &Value| v["detail"].as_str().unwrap_or_default().to_owned();

    // A body over the server's 16 MiB.
    let huge = format!(
        r#"{{"model": "llm", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "a".repeat(17 << 20)
    );
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(!detail(&r.json().await.unwrap()).is_empty());

    // A prompt longer than the model's context.
    let context = reqwest::get(format!("{}/v1/models/llm", server.url))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["context_length"]
        .as_u64()
        .unwrap() as usize;
    // The engine may hold a context longer than the family says: go well past both.
    let long = "hello ".repeat(context.max(8192) * 2);
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "llm", "max_tokens": 2, "messages": [{"role": "user", "content": long}]}),
        ),
        (
            "/v1/completions",
            json!({"model": "llm", "max_tokens": 2, "prompt": long}),
        ),
    ] {
        let r = post(&server, path, None, body).await;
        assert_eq!(r.status(), 400, "{path}");
        let d = detail(&r.json().await.unwrap());
        assert!(d.contains("maximum context length"), "{path}: {d}");
    }
    // max_tokens and n out of range.
    for (body, status) in [
        (json!({"max_tokens": -1}), 422),
        (json!({"max_tokens": 0}), 400),
        (json!({"n": 0}), 400),
        (json!({"n": 129}), 400),
    ] {
        let mut request = json!({"model": "llm", "messages": [{"role": "user", "content": "Hi"}]});
        request
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let r = post(&server, "/v1/chat/completions", None, request).await;
        assert_eq!(r.status(), status, "{body}");
        assert!(!detail(&r.json().await.unwrap()).is_empty(), "{body}");
    }

    // Audio longer than four hours (under the 25 MiB upload limit).
    let r = post(
        &server,
        "/v1/models",
        None,
        json!({"model_name": "whisper-tiny.en", "model_type": "audio",
        "model_uid": "stt", "model_path": whisper_dir("whisper-tiny.en-ct2")}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(long_wav(4 * 3600 + 60)).file_name("long.wav"),
        )
        .text("model", "stt");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/audio/transcriptions", server.url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let d = detail(&r.json().await.unwrap());
    assert!(d.contains("longer than 14400 seconds"), "{d}");
    server.stop().await;
}
