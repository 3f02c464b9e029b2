//! Helpers shared by the end-to-end tests: real test models, a real server on a real port,
//! and the Python interpreter that has the official client SDKs.
#![allow(dead_code)]

pub mod auth_server;
pub mod clips;
pub mod llama_logits;
pub mod logit_checks;
pub mod mock_hub;
pub mod tiny_families;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xinference::{Runtime, RuntimeConfig};

/// Folder of the cached test models (`scripts/fetch-test-models.py`).
pub fn test_models_dir() -> PathBuf {
    std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/xinference-rs/test-models")
        })
}

/// The all-MiniLM-L6-v2 folder. Fails loudly, with the fix, when it is missing.
pub fn minilm_dir() -> PathBuf {
    let dir = test_models_dir().join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "test model all-MiniLM-L6-v2 is missing from {}.\nFix: run `python3 scripts/fetch-test-models.py minilm` \
         (or `bash .ci/run`), or point XINFERENCE_TEST_MODELS at the folder that holds it.",
        dir.display()
    );
    dir
}

/// A GGUF file of the test models. Fails loudly, with the fix, when it is missing.
fn test_gguf(file: &str, fetch_name: &str) -> PathBuf {
    let path = test_models_dir().join(file);
    assert!(
        path.exists(),
        "test model {file} is missing from {}.\nFix: run `python3 scripts/fetch-test-models.py smollm2 qwen` \
         (this one is `{fetch_name}`; or `bash .ci/run`), or point XINFERENCE_TEST_MODELS at the folder that holds it.",
        test_models_dir().display()
    );
    path
}

/// SmolLM2-135M-Instruct Q4_1 (registry name `smollm2-instruct`, size `0_135`).
pub fn smollm2_gguf() -> PathBuf {
    test_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")
}

/// Qwen2.5-Coder-0.5B-Instruct q4_k_m (registry name `qwen2.5-coder-instruct`, size `0_5`).
pub fn qwen_gguf() -> PathBuf {
    test_gguf("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "qwen")
}

/// A server on 127.0.0.1 with an ephemeral port and its own XINFERENCE_HOME.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The runtime behind it.
    pub runtime: Arc<Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server whose home is `home`.
    pub async fn start(home: &Path) -> TestServer {
        Self::start_with(RuntimeConfig::new(home)).await
    }

    /// Starts a server with `config`.
    pub async fn start_with(config: RuntimeConfig) -> TestServer {
        let runtime = Arc::new(Runtime::new(config).expect("runtime starts"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = runtime.clone();
        let handle = tokio::spawn(async move {
            xinference_server::serve(rt, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            url: format!("http://{addr}"),
            addr,
            runtime,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server (terminating its models) and waits until it is down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
    }
}

/// The Python that has the official `openai`, `xinference-client` and `anthropic` packages.
/// Fails loudly, with the fix, when it is missing.
pub fn python() -> PathBuf {
    let python = std::env::var_os("XINFERENCE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/xinference-rs/venv/bin/python")
        });
    let ok = std::process::Command::new(&python)
        .args(["-c", "import openai, xinference_client, anthropic"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import openai, xinference_client and anthropic.\nFix: run `bash .ci/run` once, or \
         `python3 -m venv ~/.cache/xinference-rs/venv && ~/.cache/xinference-rs/venv/bin/pip install -r tests/python/requirements.txt`, \
         or point XINFERENCE_TEST_PYTHON at a Python that has them.",
        python.display()
    );
    python
}

/// Runs a Python script from `tests/python/` with `args`, returning stdout; panics with its output on failure.
pub async fn run_python(script: &str, args: &[&str]) -> String {
    let python = python();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let output = tokio::process::Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{script} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// The reference embeddings recorded with sentence-transformers.
pub fn minilm_fixture() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_embeddings.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture exists"))
        .expect("fixture is JSON")
}

/// A JSON array of token ids, as the reference fixtures store them.
pub fn token_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of token ids")
        .iter()
        .map(|x| x.as_u64().expect("a token id") as u32)
        .collect()
}

/// A tiny random cross-encoder fixture (`bert` or `xlmr`) and its recorded reference
/// (`scripts/fixtures/make_tiny_cross_encoders.py`).
pub fn tiny_reranker(kind: &str) -> (PathBuf, serde_json::Value) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-rerankers");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("reference.json")).expect("reference.json exists"),
    )
    .expect("reference.json is JSON");
    (root.join(kind), reference[kind].clone())
}

/// A CTranslate2 Whisper folder of the test models (`whisper-tiny.en-ct2` or
/// `whisper-base-ct2`). Fails loudly, with the fix, when it is missing.
pub fn whisper_dir(folder: &str) -> PathBuf {
    let dir = test_models_dir().join(folder);
    assert!(
        dir.join("model.bin").exists(),
        "test model {folder} is missing from {}.\nFix: run `python3 scripts/fetch-test-models.py whisper whisper-base` \
         (or `bash .ci/run`), or point XINFERENCE_TEST_MODELS at the folder that holds it.",
        test_models_dir().display()
    );
    dir
}

/// Launches the Qwen2.5-coder-0.5B GGUF ([`qwen_gguf`]) over HTTP; its model uid.
pub async fn launch_qwen(server: &TestServer) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/models", server.url))
        .json(&serde_json::json!({
            "model_name": "qwen2.5-coder-instruct",
            "model_engine": "llama.cpp",
            "model_format": "ggufv2",
            "model_size_in_billions": "0_5",
            "quantization": "q4_k_m",
            "model_path": qwen_gguf(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    v["model_uid"].as_str().unwrap().to_owned()
}

/// Splits a server-sent-events body into (event name, JSON data) pairs.
pub fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut name = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let data: serde_json::Value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("frame `{frame}` has no JSON data: {e}"));
            (name, data)
        })
        .collect()
}

/// The launched LLM `uid` of `server` twice: through the in-process client and over HTTP.
pub async fn llm_in_process_and_over_http(
    server: &TestServer,
    uid: &str,
) -> (xinference::LlmModel, xinference::LlmModel) {
    let local = xinference::Client::local(server.runtime.clone())
        .get_model(uid)
        .await
        .unwrap()
        .into_llm()
        .unwrap();
    let remote = xinference::Client::remote(&server.url, None)
        .unwrap()
        .get_model(uid)
        .await
        .unwrap()
        .into_llm()
        .unwrap();
    (local, remote)
}
