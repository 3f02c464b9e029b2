//! Launch, list, describe, instances, progress, embeddings and terminate over real HTTP on the
//! real MiniLM model, and every error path of those routes: the status codes and
//! `{"detail": ...}` bodies that Xinference's clients expect.

mod common;

use common::{cosine, minilm_dir, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(server: &TestServer) -> Self {
        Http {
            base: server.url.clone(),
            client: reqwest::Client::new(),
        }
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
    async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
}

fn launch_body(uid: &str) -> Value {
    json!({
        "model_name": "all-MiniLM-L6-v2",
        "model_type": "embedding",
        "model_uid": uid,
        "model_path": minilm_dir(),
    })
}

fn detail(v: &Value) -> &str {
    v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {v}"))
}

#[tokio::test]
async fn lifecycle_of_an_embedding_model() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);

    assert_eq!(
        http.get("/v1/cluster/auth").await,
        (StatusCode::OK, json!({"auth": false}))
    );
    let (s, status) = http.get("/status").await;
    assert_eq!(s, StatusCode::OK);
    assert!(status["uptime"].is_u64());
    assert_eq!(
        http.get("/v1/models").await,
        (StatusCode::OK, json!({"object": "list", "data": []}))
    );

    let (s, v) = http.post("/v1/models", launch_body("emb")).await;
    assert_eq!((s, &v), (StatusCode::OK, &json!({"model_uid": "emb"})));

    // Same uid again: 400.
    let (s, v) = http.post("/v1/models", launch_body("emb")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(detail(&v).contains("already"), "{v}");

    let (s, d) = http.get("/v1/models/emb").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["model_type"], "embedding");
    assert_eq!(d["model_name"], "all-MiniLM-L6-v2");
    assert_eq!(d["replica"], 1);
    assert_eq!(d["dimensions"], 384);
    assert_eq!(d["max_tokens"], 256);
    assert_eq!(d["model_ability"], json!(["embed"]));
    assert!(d["model_engine"].is_string());
    assert_eq!(d["language"], json!(["en"]));

    let (_, list) = http.get("/v1/models").await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], "emb");
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["owned_by"], "xinference");
    assert_eq!(data[0]["dimensions"], 384);

    let (_, instances) = http.get("/v1/models/instances?model_uid=emb").await;
    assert_eq!(instances[0]["status"], "READY");
    assert_eq!(instances[0]["model_name"], "all-MiniLM-L6-v2");
    let (_, none) = http.get("/v1/models/instances?model_name=nothing").await;
    assert_eq!(none, json!([]));
    let (_, progress) = http.get("/v1/models/emb/progress").await;
    assert_eq!(progress["progress"], 1.0);
    assert_eq!(progress["stage"], "ready");

    // Embeddings: a string, a list, token ids, base64, Matryoshka dimensions.
    let (s, e) = http
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": "A man is eating food."}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["object"], "list");
    assert_eq!(e["model"], "emb");
    assert_eq!(e["model_replica"], "emb-rep0");
    assert_eq!(e["data"][0]["object"], "embedding");
    assert_eq!(e["data"][0]["index"], 0);
    assert_eq!(e["usage"], json!({"prompt_tokens": 8, "total_tokens": 8}));
    let first: Vec<f32> = serde_json::from_value(e["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(first.len(), 384);

    let texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "x",
        "y",
    ];
    let (_, e) = http
        .post("/v1/embeddings", json!({"model": "emb", "input": texts}))
        .await;
    assert_eq!(e["data"].as_array().unwrap().len(), 4);
    let v: Vec<Vec<f32>> = (0..4)
        .map(|i| serde_json::from_value(e["data"][i]["embedding"].clone()).unwrap())
        .collect();
    assert!((cosine(&v[0], &v[1]) - 0.755).abs() < 1e-3);
    assert!((cosine(&v[0], &first) - 1.0).abs() < 1e-5);

    // The token ids of "A man is eating food." ([CLS] ... [SEP]) give the same vector.
    let ids = json!([101, 1037, 2158, 2003, 5983, 2833, 1012, 102]);
    let (s, e) = http
        .post("/v1/embeddings", json!({"model": "emb", "input": ids}))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let from_ids: Vec<f32> = serde_json::from_value(e["data"][0]["embedding"].clone()).unwrap();
    assert!(cosine(&from_ids, &first) > 0.99999);
    let (_, e) = http
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": [ids, ids]}),
        )
        .await;
    assert_eq!(e["data"].as_array().unwrap().len(), 2);

    let (_, e) = http
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": "A man is eating food.", "encoding_format": "base64"}),
        )
        .await;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(e["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, first);

    let (_, e) = http
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": "A man is eating food.", "dimensions": 64}),
        )
        .await;
    let short: Vec<f32> = serde_json::from_value(e["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(short.len(), 64);
    let norm: f32 = short.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    assert!(cosine(&short, &first[..64]) > 0.99999);

    // Error paths of the embeddings route.
    for (body, status, needle) in [
        (
            json!({"model": "nope", "input": "x"}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            json!({"input": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "model",
        ),
        (
            json!({"model": "emb"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "input",
        ),
        (
            json!({"model": "emb", "input": []}),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            json!({"model": "emb", "input": ""}),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            json!({"model": "emb", "input": {"a": 1}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "input",
        ),
        (
            json!({"model": "emb", "input": [999999]}),
            StatusCode::BAD_REQUEST,
            "vocabulary",
        ),
        (
            json!({"model": "emb", "input": "x", "dimensions": 0}),
            StatusCode::BAD_REQUEST,
            "dimensions",
        ),
        (
            json!({"model": "emb", "input": "x", "dimensions": 1000}),
            StatusCode::BAD_REQUEST,
            "dimensions",
        ),
        (
            json!({"model": "emb", "input": "x", "encoding_format": "int8"}),
            StatusCode::BAD_REQUEST,
            "encoding_format",
        ),
    ] {
        let (s, v) = http.post("/v1/embeddings", body.clone()).await;
        assert_eq!(s, status, "{body} -> {v}");
        assert!(detail(&v).contains(needle), "{body} -> {v}");
    }
    let (s, v) = http.post_raw("/v1/embeddings", b"{not json".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(detail(&v).contains("JSON"), "{v}");
    let huge = format!(
        "{{\"model\": \"emb\", \"input\": \"{}\"}}",
        "a".repeat(17 * 1024 * 1024)
    );
    let (s, v) = http.post_raw("/v1/embeddings", huge.into_bytes()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // An over-long input is truncated to the model's 256 tokens, not rejected.
    let long = "word ".repeat(2000);
    let (s, e) = http
        .post("/v1/embeddings", json!({"model": "emb", "input": long}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(e["usage"]["prompt_tokens"], 256);

    // The model is still serving after all of that.
    let (s, _) = http
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": "still here"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Terminate: null, then gone; a second terminate is a 400 as in Xinference.
    assert_eq!(
        http.delete("/v1/models/emb").await,
        (StatusCode::OK, Value::Null)
    );
    let (s, v) = http.delete("/v1/models/emb").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = http.get("/v1/models/emb").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = http
        .post("/v1/embeddings", json!({"model": "emb", "input": "x"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(http.get("/v1/models").await.1["data"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn launch_errors_are_clear_400s_and_nothing_is_lost() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    let (s, _) = http.post("/v1/models", launch_body("keep")).await;
    assert_eq!(s, StatusCode::OK);

    let bad_dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            json!({"model_name": "no-such-model-xyz", "model_type": "embedding"}),
            "Model not found, name: no-such-model-xyz",
        ),
        (
            json!({"model_name": "qwen2.5-instruct"}),
            "Invalid input. Please specify the `model_engine` field.",
        ),
        (
            json!({"model_name": "chatglm3", "model_engine": "Transformers"}),
            "cannot be run by this build yet",
        ),
        (
            json!({"model_name": "qwen2.5-instruct", "model_engine": "vLLM"}),
            "engine",
        ),
        (json!({"model_type": "embedding"}), "model name"),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "weird"}),
            "Unsupported model type",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "replica": 0}),
            "replica",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "replica": true}),
            "replica",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "replica": 1.5}),
            "replica",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "n_gpu": -1}),
            "n_gpu",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "request_limits": -3}),
            "request_limits",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "model_format": "ggufv2"}),
            "Model not found",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "model_uid": "a/b"}),
            "model_uid",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "model_path": "/does/not/exist"}),
            "does not exist",
        ),
        (
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "model_uid": "broken", "model_path": bad_dir.path()}),
            "config.json",
        ),
    ];
    for (body, needle) in cases {
        let (s, v) = http.post("/v1/models", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert!(detail(&v).contains(needle), "{body} -> {v}");
    }
    let (s, v) = http.post_raw("/v1/models", b"[1,2".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // The failed load is visible with its reason, is not listed as a model, and its uid can be reused.
    let (_, inst) = http.get("/v1/models/instances?model_uid=broken").await;
    assert_eq!(inst[0]["status"], "ERROR");
    assert!(inst[0]["error"].as_str().unwrap().contains("config.json"));
    let (_, list) = http.get("/v1/models").await;
    let uids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(uids, ["keep"]);
    let (s, v) = http.post("/v1/models", launch_body("broken")).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Unknown routes and methods answer in JSON.
    let (s, v) = http.get("/v1/nothing/here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v, json!({"detail": "Not Found"}));
    let r = reqwest::Client::new()
        .put(format!("{}/v1/models", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (s, v) = http.get("/v1/models/unknown-uid").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = http.get("/v1/models/unknown-uid/progress").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Nothing already running was lost.
    let (s, _) = http
        .post("/v1/embeddings", json!({"model": "keep", "input": "x"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, doc) = http.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/v1/embeddings"]["post"].is_object());
    server.stop().await;
}

#[tokio::test]
async fn replicas_and_request_limits() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    let mut body = launch_body("two");
    body["replica"] = json!(2);
    let (s, v) = http.post("/v1/models", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(http.get("/v1/models/two").await.1["replica"], 2);
    let mut replicas = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (_, e) = http
            .post("/v1/embeddings", json!({"model": "two", "input": "x"}))
            .await;
        replicas.insert(e["model_replica"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        replicas.into_iter().collect::<Vec<_>>(),
        ["two-rep0", "two-rep1"]
    );

    let mut body = launch_body("limited");
    body["request_limits"] = json!(0);
    let (s, _) = http.post("/v1/models", body).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = http
        .post("/v1/embeddings", json!({"model": "limited", "input": "x"}))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(detail(&v).contains("Rate limit reached"), "{v}");
    server.stop().await;
}

#[tokio::test]
async fn a_launch_in_progress_answers_503_with_retry_after() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    // Launch without waiting and ask at once, many times in a row, while it loads: every answer
    // is either 503 (not ready, with Retry-After) or 200 (ready), never anything else.
    let (s, _) = http
        .post("/v1/models?wait_ready=false", launch_body("slow"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut saw = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/embeddings", server.url))
            .json(&json!({"model": "slow", "input": "x"}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.headers()["retry-after"], "30");
        } else {
            assert_eq!(status, StatusCode::OK);
        }
        saw.insert(status.as_u16());
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(saw.contains(&200), "the model never became ready: {saw:?}");
    // Loading takes tens of milliseconds; a loopback request takes well under one.
    assert!(
        saw.contains(&503),
        "no request arrived while the model was loading: {saw:?}"
    );
    server.stop().await;
}

/// The text that makes an LLM's compute panic, through the `XINFERENCE_DEBUG_PANIC_ON` debugging
/// hook (ARCHITECTURE.md): only prompts that contain it panic, so other tests are not affected.
const PANIC_MARKER: &str = "zq-debug-panic-marker-7f3a";

#[tokio::test]
async fn a_model_whose_compute_panics_is_reported_as_error_and_the_server_lives() {
    std::env::set_var("XINFERENCE_DEBUG_PANIC_ON", PANIC_MARKER);
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    let llm = json!({"model_name": "smollm2-instruct", "model_uid": "boom",
        "model_engine": "llama.cpp", "model_format": "ggufv2", "model_size_in_billions": "0_135",
        "quantization": "Q4_1", "model_path": common::smollm2_gguf()});
    let (s, v) = http.post("/v1/models", llm.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = http.post("/v1/models", launch_body("emb")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let chat = |content: &str| {
        json!({"model": "boom", "max_tokens": 3,
            "messages": [{"role": "user", "content": content}]})
    };
    let (s, v) = http.post("/v1/chat/completions", chat("Hi")).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The request that hits the panic gets a 500 whose JSON says the model failed.
    let (s, v) = http
        .post("/v1/chat/completions", chat(&format!("say {PANIC_MARKER}")))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(detail(&v).contains("failed"), "{v}");
    assert!(detail(&v).contains("launch it again"), "{v}");

    // The model is reported as ERROR: in its description, in the instances, and it leaves
    // the ready list.
    let (s, d) = http.get("/v1/models/boom").await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["status"], "ERROR", "{d}");
    assert!(d["error"].as_str().unwrap().contains("panicked"), "{d}");
    let (_, rows) = http.get("/v1/models/instances?model_uid=boom").await;
    assert_eq!(rows[0]["status"], "ERROR", "{rows}");
    let (_, list) = http.get("/v1/models").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["emb"], "{list}");

    // Later requests, whole and streamed, are 503s that say what to do; no compute runs.
    let (s, v) = http.post("/v1/chat/completions", chat("Hi")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(detail(&v).contains("Terminate it"), "{v}");
    let mut streamed = chat("Hi");
    streamed["stream"] = json!(true);
    let (s, v) = http.post("/v1/chat/completions", streamed).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");

    // The server lives and the other model serves.
    let (s, v) = http
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": "still here"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(http.get("/health").await.0, StatusCode::OK);

    // Terminate works, and the model launched again under the same uid serves.
    let (s, v) = http.delete("/v1/models/boom").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = http.post("/v1/models", llm.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = http.post("/v1/chat/completions", chat("Hi")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(http.get("/v1/models/boom").await.1.get("status").is_none());

    // A failed model may also be launched again under its uid without a terminate first:
    // the failed instance is replaced (and its workers freed).
    let (s, _) = http.post("/v1/chat/completions", chat(PANIC_MARKER)).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (s, v) = http.post("/v1/models", llm).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = http.post("/v1/chat/completions", chat("Hi")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    server.stop().await;
}
