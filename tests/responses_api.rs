//! The OpenAI Responses API end to end, on a real port: `/v1/responses` with the real
//! Qwen2.5-coder-0.5B GGUF through the official `openai` Python SDK (plain, streamed, function
//! call round trip, json_schema, max_output_tokens, stored responses, bad input), the Rust
//! client in process and over HTTP, the raw SSE framing, OpenAI's error shape for every
//! rejection, and `previous_response_id` across a server restart (the SQLite store under
//! `$XINFERENCE_HOME`).

mod common;

use common::{launch_qwen, llm_in_process_and_over_http, run_python, sse_events, TestServer};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use xinference::protocol::responses::{ResponseEvent, ResponseStreamEvent, ResponsesRequest};
use xinference::ErrorKind;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = request.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn post_raw(server: &TestServer, body: &str) -> (StatusCode, Value) {
    send(
        client()
            .post(format!("{}/v1/responses", server.url))
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

/// Asserts an OpenAI error answer: `status`, `{"error": {message, type, param, code}}`, and a
/// message containing `needle`.
fn assert_error(got: &(StatusCode, Value), status: u16, needle: &str) {
    let (s, v) = got;
    assert_eq!(s.as_u16(), status, "{v}");
    let e = &v["error"];
    let keys: Vec<&str> = e
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "{v}");
    for key in ["message", "type", "param", "code"] {
        assert!(keys.contains(&key), "{v} lacks {key}");
    }
    assert!(e["type"].is_string(), "{v}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "`{message}` lacks `{needle}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_requests_are_checked_and_errors_have_openais_shape() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;

    // A model that is not running.
    let got = post_raw(
        &server,
        &json!({"model": "no-such-model", "input": "hi"}).to_string(),
    )
    .await;
    assert_error(&got, 404, "no-such-model");
    assert_eq!(got.1["error"]["type"], "invalid_request_error");

    for (body, needle) in [
        ("{not json".to_owned(), "Malformed JSON"),
        ("[1, 2]".to_owned(), "JSON object"),
        (json!({"input": "x"}).to_string(), "model"),
        (json!({"model": "m"}).to_string(), "input"),
        (
            json!({"model": "m", "input": [{"type": "unknown_item"}]}).to_string(),
            "input[0]",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}})
                .to_string(),
            "schema",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}).to_string(),
            "yaml",
        ),
        (
            json!({"model": "m", "input": "x", "temperature": 3}).to_string(),
            "temperature",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]})
                .to_string(),
            "text only",
        ),
    ] {
        let got = post_raw(&server, &body).await;
        assert_error(&got, 400, needle);
    }

    // Unknown ids: 404 everywhere, before any model is looked up.
    let got = post_raw(
        &server,
        &json!({"model": "m", "input": "x", "previous_response_id": "resp_nope"}).to_string(),
    )
    .await;
    assert_error(&got, 404, "resp_nope");
    let url = format!("{}/v1/responses/resp_nope", server.url);
    assert_error(&send(client().get(&url)).await, 404, "resp_nope");
    assert_error(&send(client().delete(&url)).await, 404, "resp_nope");
    assert_error(
        &send(client().get(format!("{url}/input_items"))).await,
        404,
        "resp_nope",
    );
    // The store is a real SQLite file under XINFERENCE_HOME.
    assert!(home.path().join("responses.sqlite3").exists());

    // An oversized body: 413.
    let huge = format!(
        r#"{{"model": "m", "input": "{}"}}"#,
        "a".repeat(17 * 1024 * 1024)
    );
    assert_error(&post_raw(&server, &huge).await, 413, "");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_responses_with_qwen() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = launch_qwen(&server).await;

    // The raw stream: `event:` names equal each data's type, numbered from 0, no [DONE].
    let r = client()
        .post(format!("{}/v1/responses", server.url))
        .json(
            &json!({"model": uid, "input": "Say hello.", "max_output_tokens": 6,
                      "temperature": 0, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let body = r.text().await.unwrap();
    assert!(!body.contains("[DONE]"), "{body}");
    let events = sse_events(&body);
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], *name, "{data}");
        assert_eq!(data["sequence_number"], i as u64, "{data}");
    }
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.incomplete", "{data}");
    assert_eq!(data["response"]["usage"]["output_tokens"], 6, "{data}");

    // The Rust client, in process and over HTTP: the same greedy answer.
    let request: ResponsesRequest = serde_json::from_value(json!({
        "model": "", "input": "Say hello.", "max_output_tokens": 8, "temperature": 0,
    }))
    .unwrap();
    let (local, remote) = llm_in_process_and_over_http(&server, &uid).await;
    let a = local.responses(request.clone()).await.unwrap();
    let b = remote.responses(request.clone()).await.unwrap();
    assert!(a.id.starts_with("resp_") && a.model == uid, "{a:?}");
    assert!(!a.output_text().is_empty());
    assert_eq!(
        (a.output_text(), &a.status, &a.usage),
        (b.output_text(), &b.status, &b.usage)
    );
    // Stored in process, read over HTTP: one store per home.
    let stored = remote.responses(ResponsesRequest {
        previous_response_id: Some(a.id.clone()),
        input: Some(xinference::protocol::responses::ResponseInput::Text(
            "And again.".into(),
        )),
        ..request.clone()
    });
    assert_eq!(
        stored.await.unwrap().previous_response_id,
        Some(a.id.clone())
    );
    let events: Vec<ResponseStreamEvent> = remote
        .responses_stream(request.clone())
        .await
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.first().map(|e| e.name()), Some("response.created"));
    let (ResponseEvent::Completed { response } | ResponseEvent::Incomplete { response }) =
        &events.last().unwrap().event
    else {
        panic!("{:?}", events.last());
    };
    assert_eq!(response.status, a.status);
    assert_eq!(response.output_text(), a.output_text());
    let bad = ResponsesRequest {
        tools: Some(vec![
            serde_json::from_value(json!({"type": "web_search"})).unwrap()
        ]),
        ..request
    };
    let e = remote.responses(bad).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
    assert!(e.message().contains("web_search"), "{e}");

    let out = run_python("openai_responses.py", &[&server.url, &uid]).await;
    assert!(out.contains("openai responses: ok"), "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_response_id_survives_a_server_restart() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = launch_qwen(&server).await;
    let first = run_python(
        "openai_responses_restart.py",
        &[&server.url, &uid, "create"],
    )
    .await;
    let id = first
        .lines()
        .find_map(|l| l.strip_prefix("stored: "))
        .unwrap_or_else(|| panic!("no stored id in {first}"))
        .trim()
        .to_owned();
    server.stop().await;

    // A new server on the same home: a new port, the model launched again.
    let server = TestServer::start(home.path()).await;
    let uid = launch_qwen(&server).await;
    let out = run_python(
        "openai_responses_restart.py",
        &[&server.url, &uid, "continue", &id],
    )
    .await;
    assert!(out.contains("restart: ok"), "{out}");
    server.stop().await;
}
