//! Rerank over real HTTP on a real port: `/v1/rerank` in Xinference's shape, `/rerank` and
//! `/v2/rerank` in Cohere's, the Rust remote client, concurrency, and the error statuses.

mod common;

use common::{tiny_reranker, TestServer};
use serde_json::{json, Value};
use xinference::protocol::rerank::RerankRequest;
use xinference::{Client, LaunchRequest, ModelType};

async fn launch_tiny(server: &TestServer, uid: &str) {
    let (dir, _) = tiny_reranker("xlmr");
    server
        .runtime
        .launch_model(
            LaunchRequest::new("bge-reranker-base")
                .model_type(ModelType::Rerank)
                .model_uid(uid)
                .model_path(dir.display().to_string()),
            true,
        )
        .await
        .unwrap();
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

#[tokio::test]
async fn v1_rerank_answers_in_xinference_shape() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    launch_tiny(&server, "rr").await;
    let (_, reference) = tiny_reranker("xlmr");
    let set = &reference["sets"][0];
    let url = format!("{}/v1/rerank", server.url);
    // As the Python client sends it: nulls for unset options and `kwargs` as a JSON string.
    let (status, body) = post(
        &url,
        json!({"model": "rr", "query": set["query"], "documents": set["documents"],
               "top_n": null, "max_chunks_per_doc": null, "return_documents": null,
               "return_len": null, "kwargs": "{}"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().len() >= 32);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for r in results {
        assert!(r["document"].is_null(), "{r}");
        let i = r["index"].as_u64().unwrap() as usize;
        let expected = set["scores"][i].as_f64().unwrap();
        assert!((r["relevance_score"].as_f64().unwrap() - expected).abs() < 1e-4);
    }
    assert_eq!(
        body["meta"],
        json!({"api_version": null, "billed_units": null, "tokens": null, "warnings": null})
    );

    let (status, body) = post(
        &url,
        json!({"model": "rr", "query": set["query"], "documents": set["documents"],
               "top_n": 2, "return_documents": true, "return_len": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let i = results[0]["index"].as_u64().unwrap() as usize;
    assert_eq!(results[0]["document"], json!({"text": set["documents"][i]}));
    let tokens = &body["meta"]["tokens"];
    assert_eq!(tokens["input_tokens"], set["tokens"]);
    assert_eq!(tokens["output_tokens"], set["tokens"]);

    // Documents as {"text"} objects are accepted too.
    let docs: Vec<Value> = set["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!({"text": d}))
        .collect();
    let (status, body) = post(
        &url,
        json!({"model": "rr", "query": set["query"], "documents": docs}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn cohere_routes_answer_in_cohere_shape() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    launch_tiny(&server, "rr").await;
    let (_, reference) = tiny_reranker("xlmr");
    let set = &reference["sets"][1];
    for (path, version) in [("/v2/rerank", "2"), ("/rerank", "1")] {
        let (status, body) = post(
            &format!("{}{path}", server.url),
            json!({"model": "rr", "query": set["query"], "documents": set["documents"], "top_n": 3}),
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(
            body["meta"],
            json!({"api_version": {"version": version}, "billed_units": {"search_units": 1}})
        );
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        for r in results {
            assert!(r.get("document").is_none(), "{path}: {r}");
            let i = r["index"].as_u64().unwrap() as usize;
            let expected = set["scores"][i].as_f64().unwrap();
            assert!((r["relevance_score"].as_f64().unwrap() - expected).abs() < 1e-4);
        }
    }
    // v1: {"text"} documents and return_documents.
    let docs: Vec<Value> = set["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!({"text": d}))
        .collect();
    let (status, body) = post(
        &format!("{}/rerank", server.url),
        json!({"model": "rr", "query": set["query"], "documents": docs, "return_documents": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let first = &body["results"][0];
    let i = first["index"].as_u64().unwrap() as usize;
    assert_eq!(first["document"]["text"], set["documents"][i]);
    // v2: max_tokens_per_doc cuts documents (a 1-token document scores differently).
    let (status, body) = post(
        &format!("{}/v2/rerank", server.url),
        json!({"model": "rr", "query": set["query"], "documents": set["documents"], "max_tokens_per_doc": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn rust_remote_client_reranks_and_concurrent_requests_agree() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    launch_tiny(&server, "rr").await;
    let (_, reference) = tiny_reranker("xlmr");
    let client = Client::remote(&server.url, None).unwrap();
    let model = client.get_model("rr").await.unwrap().into_rerank().unwrap();
    // Requests with different queries, documents and options arrive together; the model
    // batches whatever waits, and each request must still get its own scores.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let set = reference["sets"][i % 3].clone();
        let model = model.clone();
        tasks.push(tokio::spawn(async move {
            let docs: Vec<String> = set["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_owned())
                .collect();
            let mut request = RerankRequest::new(set["query"].as_str().unwrap(), docs);
            let chunked = i % 6 == 2;
            if chunked {
                request.max_chunks_per_doc = set["max_chunks_per_doc"].as_i64();
            }
            let response = model.rerank(request).await.unwrap();
            let key = if chunked { "chunked_scores" } else { "scores" };
            assert_eq!(response.results.len(), set[key].as_array().unwrap().len());
            for r in &response.results {
                let expected = set[key][r.index].as_f64().unwrap();
                assert!(
                    (r.relevance_score - expected).abs() < 1e-4,
                    "request {i} doc {}: {} vs {expected}",
                    r.index,
                    r.relevance_score
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_rerank_requests_get_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    launch_tiny(&server, "rr").await;
    let url = format!("{}/v1/rerank", server.url);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"model": "rr", "query": "q", "documents": []}),
            400,
            "documents must not be empty",
        ),
        (json!({"model": "rr", "documents": ["a"]}), 422, "query"),
        (json!({"model": "rr", "query": "q"}), 422, "documents"),
        (
            json!({"model": "rr", "query": "q", "documents": ["a"], "top_n": 0}),
            400,
            "top_n",
        ),
        (
            json!({"model": "rr", "query": "q", "documents": ["a"], "top_n": -1}),
            400,
            "top_n",
        ),
        (
            json!({"model": "rr", "query": "q", "documents": ["a"], "max_chunks_per_doc": 0}),
            400,
            "max_chunks_per_doc",
        ),
        (
            json!({"model": "rr", "query": "q", "documents": [3]}),
            422,
            "string",
        ),
        (
            json!({"model": "rr", "query": "q", "documents": ["a"], "kwargs": "[1]"}),
            400,
            "kwargs",
        ),
        (
            json!({"model": "nope", "query": "q", "documents": ["a"]}),
            404,
            "nope",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = post(&url, body.clone()).await;
        assert_eq!(got, status, "{body} -> {answer}");
        let detail = answer["detail"].to_string();
        assert!(detail.contains(needle), "{body} -> {detail}");
    }
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    for path in ["/rerank", "/v2/rerank"] {
        let (got, answer) = post(
            &format!("{}{path}", server.url),
            json!({"model": "rr", "query": "q", "documents": []}),
        )
        .await;
        assert_eq!(got, 400, "{path}: {answer}");
    }

    // An embedding model is not a rerank model.
    server
        .runtime
        .launch_model(
            LaunchRequest::new("all-MiniLM-L6-v2")
                .model_type(ModelType::Embedding)
                .model_uid("emb")
                .model_path(common::minilm_dir().display().to_string()),
            true,
        )
        .await
        .unwrap();
    let (got, answer) = post(
        &url,
        json!({"model": "emb", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(got, 400, "{answer}");
    assert!(answer["detail"]
        .as_str()
        .unwrap()
        .contains("not a rerank model"));

    // request_limits=0 refuses at once with 429.
    let (dir, _) = tiny_reranker("bert");
    server
        .runtime
        .launch_model(
            LaunchRequest::new("ms-marco-MiniLM-L-6-v2")
                .model_type(ModelType::Rerank)
                .model_uid("limited")
                .request_limits(0)
                .model_path(dir.display().to_string()),
            true,
        )
        .await
        .unwrap();
    let (got, answer) = post(
        &url,
        json!({"model": "limited", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(got, 429, "{answer}");
    assert!(answer["detail"]
        .as_str()
        .unwrap()
        .contains("Rate limit reached"));
    server.stop().await;
}

#[tokio::test]
async fn rerank_launch_errors_are_400() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    // A folder that is not a cross-encoder (a sentence embedder's BertModel has no head).
    let (status, body) = post(
        &format!("{}/v1/models", server.url),
        json!({"model_name": "ms-marco-MiniLM-L-6-v2", "model_type": "rerank", "model_uid": "bad",
               "model_path": common::minilm_dir()}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("bad"), "{body}");
    server.stop().await;
}
