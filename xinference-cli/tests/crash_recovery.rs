//! The server binary killed with `kill -9` (no handler runs, nothing is cleaned up) during a
//! download, a launch and a generation, then started again over the same `XINFERENCE_HOME`:
//! the cache holds no half file that is trusted, custom registrations are intact, and the
//! next launch works (a download resumes the partial file from where it stopped).

mod common;

#[path = "../../tests/common/mock_hub.rs"]
#[allow(dead_code)]
mod mock_hub;

use common::{launch_smollm2, minilm_dir, smollm2_gguf, Sandbox, Server};
use futures::StreamExt;
use mock_hub::{MockHub, Throttle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
const MANIFEST: &str = ".xinference-cache.json";

/// A custom embedding model downloaded from the (mock) hub: no `model_uri`.
fn custom_embedding(name: &str, uri: Option<&Path>) -> Value {
    let mut spec = json!({
        "model_format": "pytorch",
        "model_id": REPO,
        "quantization": "none"
    });
    if let Some(uri) = uri {
        spec["model_uri"] = json!(format!("file://{}", uri.display()));
    }
    json!({
        "version": 2,
        "model_name": name,
        "dimensions": 384,
        "max_tokens": 256,
        "language": ["en"],
        "model_specs": [spec]
    })
}

#[test]
fn kill_9_during_a_download_then_the_next_launch_resumes_and_verifies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt.block_on(MockHub::start(&minilm_dir(), REPO, &[]));
    // About 10 MB/s: the 90 MB weights take several seconds.
    hub.set_throttle(Some(Throttle {
        chunk: 256 << 10,
        delay: Duration::from_millis(25),
    }));
    let sandbox = Sandbox::new().with_hub(&hub.url);
    let home = sandbox.home();
    let mut server = Server::start(&sandbox);
    let http = reqwest::Client::new();
    rt.block_on(async {
        register(&http, &server.url, &custom_embedding("crash-minilm", None)).await;
        let (status, body) = launch(&http, &server.url, &embedding("crash-minilm"), false).await;
        assert_eq!(status, 200, "{body}");
        wait_for_bytes(&http, &server.url, "crash-minilm", WEIGHTS, 8 << 20).await;
    });
    server.kill_9();

    // Nothing trusted: no manifest, no blob under the file's hash; a partial file to resume.
    let files = files_under(&home);
    assert!(
        !files.iter().any(|p| p.ends_with(MANIFEST)),
        "a manifest after a killed download: {files:#?}"
    );
    assert!(
        !files
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == WEIGHTS_SHA256)),
        "an unverified blob is in place: {files:#?}"
    );
    let part = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "part"))
        .unwrap_or_else(|| panic!("no partial file: {files:#?}"));
    let part_size = std::fs::metadata(part).unwrap().len();
    let size = std::fs::metadata(minilm_dir().join(WEIGHTS)).unwrap().len();
    assert!(part_size >= 8 << 20 && part_size < size, "{part_size}");

    hub.set_throttle(None);
    hub.clear_requests();
    let server = Server::start(&sandbox);
    rt.block_on(async {
        let (status, family) = get(
            &http,
            &format!(
                "{}/v1/model_registrations/embedding/crash-minilm",
                server.url
            ),
        )
        .await;
        assert_eq!(status, 200, "the registration survived: {family}");
        assert_eq!(family["model_name"], "crash-minilm");
        let (status, body) = launch(&http, &server.url, &embedding("crash-minilm"), true).await;
        assert_eq!(status, 200, "{body}");
        check_embedding(&http, &server.url, "crash-minilm").await;
    });
    let weights: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.is_body_of(WEIGHTS))
        .collect();
    assert_eq!(weights.len(), 1, "{weights:#?}");
    assert_eq!(
        weights[0].range,
        Some(format!("bytes={part_size}-")),
        "resumed where the killed download stopped"
    );
    let cached = std::fs::read(home.join("cache/crash-minilm").join(WEIGHTS)).unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&cached)), WEIGHTS_SHA256);
    assert!(!files_under(&home)
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "part")));
    drop(server);
    rt.block_on(hub.shutdown());
}

#[test]
fn kill_9_during_a_launch_and_a_generation_then_restart() {
    let sandbox = Sandbox::new();
    let mut server = Server::start(&sandbox);
    let http = reqwest::Client::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let registered = custom_embedding("kept-minilm", Some(&minilm_dir()));
    let smollm2 = json!({
        "model_name": "smollm2-instruct",
        "model_type": "LLM",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": "0_135",
        "quantization": "Q4_1",
        "model_path": smollm2_gguf().display().to_string(),
    });
    rt.block_on(async {
        register(&http, &server.url, &registered).await;
        let (status, body) = launch(&http, &server.url, &smollm2, false).await;
        assert_eq!(status, 200, "{body}");
    });
    // Killed while the launch is under way (the loader thread reads the GGUF).
    server.kill_9();

    let mut server = Server::start(&sandbox);
    rt.block_on(async {
        check_registration(&http, &server.url, &registered).await;
        let (_, instances) = get(&http, &format!("{}/v1/models/instances", server.url)).await;
        assert_eq!(instances, json!([]), "nothing launched after a restart");
    });
    launch_smollm2(&sandbox, &server);
    let streamed = rt.block_on(async {
        let response = http
            .post(format!("{}/v1/chat/completions", server.url))
            .json(&json!({
                "model": "smollm2-instruct",
                "messages": [{"role": "user", "content": "Write a long story about a fox."}],
                "max_tokens": 400,
                "stream": true
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut text = String::new();
        while !text.contains("\"content\":\"") {
            let chunk = stream.next().await.expect("a chunk").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    });
    assert!(streamed.starts_with("data:"), "{streamed}");
    // Killed mid-generation.
    server.kill_9();

    let server = Server::start(&sandbox);
    rt.block_on(async {
        check_registration(&http, &server.url, &registered).await;
    });
    launch_smollm2(&sandbox, &server);
    rt.block_on(async {
        let response = http
            .post(format!("{}/v1/chat/completions", server.url))
            .json(&json!({
                "model": "smollm2-instruct",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let content = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(!content.is_empty(), "{body}");
        let (status, body) = launch(&http, &server.url, &embedding("kept-minilm"), true).await;
        assert_eq!(status, 200, "the registered model launches: {body}");
        check_embedding(&http, &server.url, "kept-minilm").await;
    });
}

fn embedding(name: &str) -> Value {
    json!({"model_name": name, "model_type": "embedding"})
}

async fn register(http: &reqwest::Client, url: &str, family: &Value) {
    let response = http
        .post(format!("{url}/v1/model_registrations/embedding"))
        .json(&json!({"model": family.to_string(), "persist": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

async fn check_registration(http: &reqwest::Client, url: &str, family: &Value) {
    let name = family["model_name"].as_str().unwrap();
    let (status, got) = get(
        http,
        &format!("{url}/v1/model_registrations/embedding/{name}"),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(&got, family, "the registration is intact");
}

async fn launch(http: &reqwest::Client, url: &str, body: &Value, wait: bool) -> (u16, Value) {
    let response = http
        .post(format!("{url}/v1/models?wait_ready={wait}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls the launch's progress until `file` has at least `bytes` on disk.
async fn wait_for_bytes(http: &reqwest::Client, url: &str, uid: &str, file: &str, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, progress) = get(http, &format!("{url}/v1/models/{uid}/progress")).await;
        let done = progress["download_files"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["file_name"] == file)
            .and_then(|f| f["downloaded_bytes"].as_u64())
            .unwrap_or(0);
        if done >= bytes {
            return;
        }
        assert!(Instant::now() < deadline, "download stalled: {progress}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check_embedding(http: &reqwest::Client, url: &str, uid: &str) {
    let response = http
        .post(format!("{url}/v1/embeddings"))
        .json(&json!({"model": uid, "input": "a fox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}
