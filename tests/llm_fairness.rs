//! Concurrent requests to one LLM are served fairly: a short request sent while a long
//! generation streams is answered before the long one ends (sequence slots interleave token by
//! token on the shared compute budget), rather than queueing behind it.

mod common;

use common::{smollm2_gguf, TestServer};
use futures::StreamExt;
use serde_json::json;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_request_overtakes_a_long_generation() {
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

    // A long generation (a story: SmolLM2 writes past 120 tokens before it ends one).
    let long = http
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&json!({"model": "smollm2-instruct", "stream": true, "max_tokens": 120, "temperature": 0,
            "messages": [{"role": "user", "content": "Tell me a long story about a dragon."}]}))
        .send()
        .await
        .unwrap();
    assert!(long.status().is_success());
    // Read the long stream as it arrives, noting when each event came.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut stream = long.bytes_stream();
        let mut arrivals = Vec::new();
        let mut text = String::new();
        let mut first_tx = Some(first_tx);
        while let Some(chunk) = stream.next().await {
            let chunk = String::from_utf8_lossy(&chunk.unwrap()).into_owned();
            for _ in 0..chunk.matches("\"content\":\"").count() {
                arrivals.push(Instant::now());
            }
            text.push_str(&chunk);
            if arrivals.len() >= 3 {
                if let Some(tx) = first_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        (arrivals, text)
    });
    first_rx.await.expect("the long generation produces tokens");

    let started = Instant::now();
    let short: serde_json::Value = http
        .post(format!("{}/v1/chat/completions", server.url))
        .json(
            &json!({"model": "smollm2-instruct", "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let short_done = Instant::now();
    let short_took = short_done - started;
    assert_eq!(short["usage"]["completion_tokens"], 4, "{short}");

    // Most of the long generation must come after the short answer: the short request was
    // served beside it, not after it.
    let (arrivals, text) = reader.await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let after = arrivals.iter().filter(|t| **t > short_done).count();
    assert!(
        after > 20,
        "only {after} of {} chunks of the long generation came after the short answer ({short_took:?}): it waited for the long one",
        arrivals.len()
    );
    server.stop().await;
}
