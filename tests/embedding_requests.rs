//! Embedding requests over real HTTP on the real MiniLM model: concurrent requests are batched
//! together and each still gets sentence-transformers' vectors, and over-long inputs are cut
//! (`truncate_prompt_tokens`, the model's limit) or refused (`truncate: false`).

mod common;

use common::{minilm_dir, minilm_fixture, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn launch(server: &TestServer) -> String {
    server
        .runtime
        .launch_model(
            xinference::LaunchRequest::new("all-MiniLM-L6-v2")
                .model_type(xinference::ModelType::Embedding)
                .model_path(minilm_dir().display().to_string()),
            true,
        )
        .await
        .unwrap()
}

async fn post(url: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

fn vector(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).expect("a float vector")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_each_get_sentence_transformers_vectors() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = launch(&server).await;
    let fixture = minilm_fixture();
    let items = fixture["items"].as_array().unwrap().clone();
    // Every fixture sentence as its own request, all at once, plus two requests holding several
    // sentences: the batcher mixes them in shared, length-sorted passes.
    let mut requests = Vec::new();
    for (i, item) in items.iter().enumerate() {
        requests.push((vec![i], json!({"model": uid, "input": item["text"]})));
    }
    requests.push((
        (0..items.len()).collect(),
        json!({"model": uid, "input": items.iter().map(|i| i["text"].clone()).collect::<Vec<_>>()}),
    ));
    requests.push((
        vec![3, 8, 0],
        json!({"model": uid, "input": [items[3]["text"], items[8]["text"], items[0]["text"]]}),
    ));
    let url = server.url.clone();
    let handles: Vec<_> = requests
        .into_iter()
        .map(|(which, body)| {
            let url = url.clone();
            tokio::spawn(async move { (which, post(&url, body).await) })
        })
        .collect();
    for handle in handles {
        let (which, (status, response)) = handle.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{response}");
        let data = response["data"].as_array().unwrap();
        assert_eq!(data.len(), which.len());
        let mut tokens = 0;
        for (k, (&i, d)) in which.iter().zip(data).enumerate() {
            assert_eq!(d["index"], k);
            let expected = vector(&items[i]["embedding"]);
            let diff = max_abs_diff(&vector(&d["embedding"]), &expected);
            assert!(diff < 1e-4, "{:?}: max abs diff {diff}", items[i]["text"]);
            tokens += items[i]["tokens"].as_u64().unwrap();
        }
        assert_eq!(response["usage"]["prompt_tokens"].as_u64(), Some(tokens));
        assert_eq!(response["usage"]["total_tokens"].as_u64(), Some(tokens));
    }
    server.stop().await;
}

#[tokio::test]
async fn long_inputs_are_cut_to_the_limit_or_refused_when_asked() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = launch(&server).await;
    let url = &server.url;
    let long = "word ".repeat(400);
    let detail = |v: &Value| v["detail"].as_str().unwrap_or_default().to_owned();

    // By default an input is cut to the model's 256 tokens, as sentence-transformers does.
    let (s, v) = post(url, json!({"model": uid, "input": long})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 256);
    let cut = vector(&v["data"][0]["embedding"]);
    // A negative truncate_prompt_tokens means the model's own limit.
    let (_, v) = post(
        url,
        json!({"model": uid, "input": long, "truncate_prompt_tokens": -1}),
    )
    .await;
    assert_eq!(v["usage"]["prompt_tokens"], 256);
    assert!(max_abs_diff(&vector(&v["data"][0]["embedding"]), &cut) < 1e-6);

    // truncate_prompt_tokens keeps the first N tokens, special tokens included: the vector of
    // "A man is eating food." cut to 5 is that of [CLS] a man is [SEP].
    let (s, v) = post(
        url,
        json!({"model": uid, "input": "A man is eating food.", "truncate_prompt_tokens": 5}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    let (_, by_ids) = post(
        url,
        json!({"model": uid, "input": [101, 1037, 2158, 2003, 102]}),
    )
    .await;
    let d = max_abs_diff(
        &vector(&v["data"][0]["embedding"]),
        &vector(&by_ids["data"][0]["embedding"]),
    );
    assert!(d < 1e-6, "truncated text vs its token ids: {d}");
    // Token-id inputs are cut the same way.
    let ids: Vec<u32> = (0..300).map(|i| 2000 + i).collect();
    let (_, v) = post(
        url,
        json!({"model": uid, "input": [ids.clone(), [101, 102]], "truncate_prompt_tokens": 100}),
    )
    .await;
    assert_eq!(v["usage"]["prompt_tokens"], 102);

    // With truncation off, an over-long input is a 400 that says why; short ones still work.
    let (s, v) = post(url, json!({"model": uid, "input": long, "truncate": false})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(detail(&v).contains("truncat"), "{v}");
    let (s, v) = post(url, json!({"model": uid, "input": ids, "truncate": false})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = post(
        url,
        json!({"model": uid, "input": ["short", long], "truncate": false, "truncate_prompt_tokens": 300}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = post(
        url,
        json!({"model": uid, "input": "A man is eating food.", "truncate": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    let (s, v) = post(
        url,
        json!({"model": uid, "input": "A man is eating food.", "truncate_prompt_tokens": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(detail(&v).contains("truncate_prompt_tokens"), "{v}");
    server.stop().await;
}
