//! Limits answer with clear 4xx over real HTTP: a body over the server's limit is a 413, a
//! prompt longer than the context a 400, a negative max_tokens a 422, audio over four hours a
//! 413; a max_tokens that does not fit the context after the prompt a 400 with OpenAI's message;
//! with `max_concurrent_per_key`, a key past its concurrent requests gets a 429 with
//! `Retry-After` while other keys go on (without auth: per client address); a flooded model's
//! queue answers 429 with `Retry-After`, never 500; and with auth on, `model_path` (and a registration's
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_limit_applies_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(dir.path().join("home"));
    config.max_concurrent_per_key = Some(1);
    let server = TestServer::start_with(config).await;
    let r = post(&server, "/v1/models", None, smollm2_launch()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Two clients on two loopback addresses.
    let client = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (a, b) = (client([127, 0, 0, 1]), client([127, 0, 0, 2]));
    let chat = |client: &reqwest::Client, body: Value| {
        client
            .post(format!("{}/v1/chat/completions", server.url))
            .json(&body)
            .send()
    };
    let long = chat(
        &a,
        json!({"model": "llm", "stream": true, "max_tokens": 1500, "stop_token_ids": [],
            "messages": [{"role": "user", "content": "Tell me a long story."}]}),
    )
    .await
    .unwrap();
    assert_eq!(long.status(), 200);
    let mut stream = long.bytes_stream();
    stream.next().await.expect("a first chunk").unwrap();
    // While A streams, A's next request is refused at once; B's is served; public routes
    // are not limited.
    let short =
        json!({"model": "llm", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]});
    let refused = chat(&a, short.clone()).await.unwrap();
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
    let other = chat(&b, short.clone()).await.unwrap();
    assert_eq!(other.status(), 200, "{}", other.text().await.unwrap());
    for path in ["/health", "/metrics"] {
        let r = a.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // A's stream ends (its client goes away): A's place is free again.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = chat(&a, short.clone()).await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(Instant::now() < deadline, "A's place was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_model_answers_429_with_retry_after_never_500() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(dir.path().join("home"));
    config.queue_capacity = 1;
    let server = TestServer::start_with(config).await;
    let mut launch = smollm2_launch();
    launch["n_parallel"] = json!(1);
    let r = post(&server, "/v1/models", None, launch).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // One slot, one place in its queue: of eight requests at once, one runs, one waits and
    // the others are refused at once with 429 + Retry-After, in each route's shape.
    let flood = |path: &'static str, body: Value| {
        let url = format!("{}{path}", server.url);
        futures::future::join_all((0..8).map(move |_| {
            let request = reqwest::Client::new()
                .post(url.clone())
                .header("anthropic-version", "2023-06-01")
                .json(&body);
            async move {
                let r = request.send().await.unwrap();
                let retry_after = r.headers().get("retry-after").cloned();
                let status = r.status().as_u16();
                (status, retry_after, r.json::<Value>().await.unwrap())
            }
        }))
    };
    let chat = json!({"model": "llm", "max_tokens": 24,
        "messages": [{"role": "user", "content": "Tell me a long story."}]});
    for (path, body) in [
        ("/v1/chat/completions", chat.clone()),
        ("/v1/messages", chat.clone()),
        (
            "/v1/completions",
            json!({"model": "llm", "max_tokens": 24, "prompt": "Once upon a time"}),
        ),
    ] {
        let answers = flood(path, body).await;
        let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
        for (status, _, body) in &answers {
            assert!(matches!(status, 200 | 429), "{path}: {status} {body}");
        }
        assert!(!refused.is_empty(), "{path}: nothing was refused");
        for (_, retry_after, body) in refused {
            assert_eq!(retry_after.as_ref().unwrap(), "1", "{path}: {body}");
            let message = body["detail"]
                .as_str()
                .or(body["error"]["message"].as_str())
                .unwrap();
            assert!(message.contains("queue"), "{path}: {body}");
        }
    }

    // Other capabilities' 429s (here a reached request_limits) carry Retry-After too.
    let r = post(
        &server,
        "/v1/models",
        None,
        json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding",
            "model_uid": "emb", "model_path": minilm_dir(), "request_limits": 0}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(
        &server,
        "/v1/embeddings",
        None,
        json!({"model": "emb", "input": "x"}),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
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

/// The tiny random llama GGUF fixture (context 512 tokens, vocabulary 512).
fn tiny_llama_launch() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gguf/llama/tiny-Q8_0.gguf");
    json!({"model_name": "llama-3.2-instruct", "model_uid": "tiny", "model_engine": "llama.cpp",
        "model_format": "ggufv2", "model_size_in_billions": 1, "quantization": "Q8_0",
        "model_path": path})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_past_the_context_is_openais_400_and_absent_runs_to_the_end() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let r = post(&server, "/v1/models", None, tiny_llama_launch()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let detail = |v: &Value| v["detail"].as_str().unwrap_or_default().to_owned();
    let context = 512;
    // A prompt that fits, with a max_tokens that does not: OpenAI's (vLLM's) 400, on every
    // route that takes max_tokens, instead of an answer silently cut at the context's end.
    let ids = vec![28u32; context - 3];
    let r = post(
        &server,
        "/v1/completions",
        None,
        json!({"model": "tiny", "max_tokens": 4, "prompt": ids}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let d = detail(&r.json().await.unwrap());
    let expected = format!(
        "This model's maximum context length is {context} tokens. However, you requested {} \
         tokens ({} in the messages, 4 in the completion).",
        context + 1,
        context - 3
    );
    assert!(d.starts_with(&expected), "{d}");
    let chat = json!({"model": "tiny", "max_completion_tokens": 1_000_000,
        "messages": [{"role": "user", "content": "Hi"}]});
    let r = post(&server, "/v1/chat/completions", None, chat).await;
    assert_eq!(r.status(), 400);
    let d = detail(&r.json().await.unwrap());
    assert!(d.contains("1000000 in the completion"), "{d}");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.url))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "tiny", "max_tokens": 1_000_000,
            "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("maximum context length"), "{body}");
    let r = post(
        &server,
        "/v1/responses",
        None,
        json!({"model": "tiny", "max_output_tokens": 1_000_000, "input": "Hi"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("maximum context length"), "{body}");
    // Exactly filling the context is served; without max_tokens the same prompt is answered
    // up to the end of the context.
    for body in [
        json!({"model": "tiny", "prompt": ids, "max_tokens": 3, "temperature": 0}),
        json!({"model": "tiny", "prompt": ids, "temperature": 0}),
    ] {
        let r = post(&server, "/v1/completions", None, body.clone()).await;
        assert_eq!(r.status(), 200, "{body}");
        let answer: Value = r.json().await.unwrap();
        let used = answer["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(used <= 3, "{answer}");
    }
    server.stop().await;
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
