//! `n` > 1 through the official `openai` SDK on a real model over real HTTP: three seeded
//! choices, reproducible, whole and streamed, in chat and completions; the extra choices
//! start from the first one's prompt computation (the prefix cache's counters show it).

mod common;

use common::{run_python, smollm2_gguf, TestServer};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_gets_n_choices() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/models", server.url))
        .json(&json!({"model_name": "smollm2-instruct", "model_engine": "llama.cpp", "model_format": "ggufv2",
            "model_size_in_billions": "0_135", "quantization": "Q4_1", "model_path": smollm2_gguf()}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let out = run_python("openai_choices.py", &[&server.url, "smollm2-instruct"]).await;
    assert!(out.contains("openai choices: ok"), "{out}");

    // Each n > 1 request computed its prompt once: its other choices reused all of it but
    // the last token, so the cache has at least as many hits as extra choices.
    let description: Value = http
        .get(format!("{}/v1/models/smollm2-instruct", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cache = &description["prefix_cache"];
    // 3 chat requests with 2 extra choices each, 2 completion requests with 1 each.
    assert!(cache["hits"].as_u64().unwrap() >= 8, "{cache}");
    let batching = &description["batching"];
    assert!(
        batching["largest_batch"].as_u64().unwrap() >= 2,
        "the choices decoded together: {batching}"
    );
    server.stop().await;
}
