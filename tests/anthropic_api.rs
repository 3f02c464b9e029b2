//! The Anthropic Messages API end to end, on a real port: `/v1/messages` and
//! `/anthropic/v1/messages` with the real Qwen2.5-coder-0.5B GGUF through the official
//! `anthropic` Python SDK (plain, streamed, stop sequences, errors, models), the raw SSE
//! framing, and the Anthropic error shape of every rejection.

mod common;

use common::{launch_qwen, llm_in_process_and_over_http, run_python, sse_events, TestServer};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use xinference::protocol::anthropic::{MessagesRequest, StreamEvent};
use xinference::ErrorKind;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs `body` (raw bytes) to `path` with `headers`; the status and the JSON answer.
async fn post_raw(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut request = client()
        .post(format!("{}{path}", server.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]})
}

/// Asserts an Anthropic error answer: `status`, `type`, and a message containing `needle`.
fn assert_error(got: &(StatusCode, Value), status: u16, kind: &str, needle: &str) {
    let (s, v) = got;
    assert_eq!(s.as_u16(), status, "{v}");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "`{message}` lacks `{needle}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_requests_are_checked_and_errors_have_anthropics_shape() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let body = hello("no-such-model").to_string();

    // anthropic-version: required on /v1/messages, one version only.
    let got = post_raw(&server, "/v1/messages", &[], &body).await;
    assert_error(&got, 400, "invalid_request_error", "anthropic-version");
    let got = post_raw(
        &server,
        "/v1/messages",
        &[("anthropic-version", "2099-01-01")],
        &body,
    )
    .await;
    assert_error(&got, 400, "invalid_request_error", "2099-01-01");
    let got = post_raw(
        &server,
        "/anthropic/v1/messages",
        &[("anthropic-version", "2099-01-01")],
        &body,
    )
    .await;
    assert_error(&got, 400, "invalid_request_error", "2099-01-01");
    // anthropic 2.x sends 2026-10-21: accepted too.
    let got = post_raw(
        &server,
        "/v1/messages",
        &[("anthropic-version", "2026-10-21")],
        &body,
    )
    .await;
    assert_error(&got, 404, "not_found_error", "no-such-model");
    // The version is checked before the body.
    let got = post_raw(&server, "/v1/messages", &[], "{not json").await;
    assert_error(&got, 400, "invalid_request_error", "anthropic-version");

    // A model that is not running: 404 on both paths (no version needed on /anthropic).
    let got = post_raw(&server, "/v1/messages", &[VERSION], &body).await;
    assert_error(&got, 404, "not_found_error", "no-such-model");
    let got = post_raw(&server, "/anthropic/v1/messages", &[], &body).await;
    assert_error(&got, 404, "not_found_error", "no-such-model");

    // Malformed and incomplete bodies: 400, never FastAPI's {"detail"} or a 422.
    for (body, needle) in [
        ("{not json".to_owned(), "Malformed JSON"),
        ("[1, 2]".to_owned(), "JSON object"),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}).to_string(),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 8}).to_string(),
            "messages",
        ),
        (
            json!({"max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}).to_string(),
            "model",
        ),
        (
            json!({"model": "m", "max_tokens": "8", "messages": []}).to_string(),
            "invalid type",
        ),
        (
            json!({"model": "m", "max_tokens": 8, "messages": []}).to_string(),
            "messages",
        ),
        (
            json!({"model": "m", "max_tokens": 8, "temperature": 1.5,
                   "messages": [{"role": "user", "content": "x"}]})
            .to_string(),
            "temperature",
        ),
        (
            json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user",
                   "content": [{"type": "image", "source": {"type": "base64", "data": ""}}]}]})
            .to_string(),
            "text only",
        ),
        (
            json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user",
                   "content": [{"type": "video"}]}]})
            .to_string(),
            "video",
        ),
    ] {
        let got = post_raw(&server, "/v1/messages", &[VERSION], &body).await;
        assert_error(&got, 400, "invalid_request_error", needle);
    }

    // An oversized body: 413 request_too_large.
    let huge = format!(
        r#"{{"model": "m", "max_tokens": 8, "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "a".repeat(17 * 1024 * 1024)
    );
    let got = post_raw(&server, "/anthropic/v1/messages", &[], &huge).await;
    assert_error(&got, 413, "request_too_large", "");

    // Models: none running yet; an unknown id is a 404 in Anthropic's shape.
    let v: Value = client()
        .get(format!("{}/anthropic/v1/models", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
    );
    let r = client()
        .get(format!("{}/anthropic/v1/models/nope", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_messages_with_qwen() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = launch_qwen(&server).await;

    // The raw stream: `event:` names, Anthropic's order, the ping after the first block start.
    let r = client()
        .post(format!("{}/v1/messages", server.url))
        .header(VERSION.0, VERSION.1)
        .json(&json!({
            "model": uid, "max_tokens": 8, "temperature": 0, "stream": true,
            "messages": [{"role": "user", "content": "Say hello."}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = sse_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let n = names.len();
    assert!(n >= 8, "{names:?}");
    assert_eq!(
        names[..3],
        ["message_start", "content_block_start", "ping"],
        "{names:?}"
    );
    assert!(
        names[3..n - 3].iter().all(|e| *e == "content_block_delta"),
        "{names:?}"
    );
    assert_eq!(
        names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"],
        "{names:?}"
    );
    for (name, data) in &events {
        assert_eq!(data["type"], *name, "{data}");
    }
    let delta = &events[n - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens", "{delta}");
    assert_eq!(delta["usage"]["output_tokens"], 8, "{delta}");
    assert!(
        delta["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{delta}"
    );

    // The Rust Client, in process and over HTTP: the same greedy answer.
    let request: MessagesRequest = serde_json::from_value(json!({
        "model": "", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}],
    }))
    .unwrap();
    let (local, remote) = llm_in_process_and_over_http(&server, &uid).await;
    let a = local.messages(request.clone()).await.unwrap();
    let b = remote.messages(request.clone()).await.unwrap();
    assert!(a.id.starts_with("msg_") && a.model == uid, "{a:?}");
    assert_eq!(
        (&a.content, &a.stop_reason, &a.usage),
        (&b.content, &b.stop_reason, &b.usage)
    );
    let events: Vec<StreamEvent> = remote
        .messages_stream(request)
        .await
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.first().map(StreamEvent::name), Some("message_start"));
    assert_eq!(events.last(), Some(&StreamEvent::MessageStop));
    let mut bad: MessagesRequest = serde_json::from_value(json!({
        "model": "", "max_tokens": 8,
        "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
    }))
    .unwrap();
    bad.temperature = Some(0.0);
    let e = remote.messages(bad).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
    assert!(e.message().contains("text only"), "{e}");

    let out = run_python("anthropic_messages.py", &[&server.url, &uid]).await;
    assert!(out.contains("anthropic sdk: ok"), "{out}");
    server.stop().await;
}

/// Awaits the tool-call parser of the chat path (`<tool_call>` output into
/// `message.tool_calls`): until it lands, Qwen's tool call arrives as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_tool_use_with_qwen() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = launch_qwen(&server).await;
    let out = run_python("anthropic_tool_use.py", &[&server.url, &uid]).await;
    assert!(out.contains("anthropic tool_use: ok"), "{out}");
    server.stop().await;
}
