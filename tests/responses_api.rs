//! The OpenAI Responses API end to end, on a real port: `/v1/responses` with the real
//! Qwen2.5-coder-0.5B GGUF through the official `openai` Python SDK (plain, streamed, function
//! call round trip, json_schema, max_output_tokens, stored responses, bad input), the Rust
//! client in process and over HTTP, the raw SSE framing, OpenAI's error shape for every
//! rejection, and `previous_response_id` across a server restart (the SQLite store under
//! `$XINFERENCE_HOME`); a reasoning model's `reasoning` items and `reasoning_tokens`.

mod common;

use common::{
    launch_qwen, llm_in_process_and_over_http, qwen_gguf, run_python, sse_events, TestServer,
};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use xinference::protocol::responses::{
    ResponseEvent, ResponseStreamEvent, ResponseUsage, ResponsesRequest,
};
use xinference::ErrorKind;

/// A response's token counts, without the prefix cache's share (a repeated prompt reads it).
fn counts(usage: &ResponseUsage) -> (usize, usize, usize) {
    (usage.input_tokens, usage.output_tokens, usage.total_tokens)
}

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
        (a.output_text(), &a.status, &a.usage.as_ref().map(counts)),
        (b.output_text(), &b.status, &b.usage.as_ref().map(counts))
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

/// Launches the Qwen GGUF registered as a reasoning model (`<think>` tags), as `thinker`.
async fn launch_thinker(server: &TestServer) -> String {
    let family = json!({
        "version": 2, "model_name": "qwen-thinker", "model_family": "qwen2.5-instruct",
        "model_lang": ["en"], "model_ability": ["chat", "reasoning"], "context_length": 32768,
        "reasoning_start_tag": "<think>", "reasoning_end_tag": "</think>",
        "model_specs": [{
            "model_format": "ggufv2", "model_size_in_billions": "0_5", "quantization": "q4_k_m",
            "model_id": "local/qwen-thinker", "model_file_name_template": "qwen.gguf",
            "model_uri": format!("file://{}", qwen_gguf().display()),
        }],
    });
    let url = |path: &str| format!("{}{path}", server.url);
    let (status, body) = send(
        client()
            .post(url("/v1/model_registrations/LLM"))
            .json(&json!({"model": family.to_string(), "persist": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(client().post(url("/v1/models")).json(&json!({
        "model_name": "qwen-thinker", "model_engine": "llama.cpp", "model_format": "ggufv2",
        "model_size_in_billions": "0_5", "quantization": "q4_k_m", "model_uid": "thinker",
        "model_path": qwen_gguf(),
    })))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    "thinker".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_models_answer_with_reasoning_items_and_count_reasoning_tokens() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = launch_thinker(&server).await;
    // The answer is made to think first (a guided regex passed through as vLLM's field).
    let regex = "<think>\\n[A-Za-z0-9 ,.]{1,80}\\n</think>\\n\\n[A-Za-z0-9 ,.]{1,40}";
    let ask = |stream: bool| {
        json!({"model": uid, "input": "Is 17 a prime number?", "max_output_tokens": 60,
               "temperature": 0, "stream": stream, "guided_regex": regex})
    };
    let url = format!("{}/v1/responses", server.url);
    let (status, whole) = send(client().post(&url).json(&ask(false))).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let output = whole["output"].as_array().unwrap();
    let kinds: Vec<&str> = output.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reasoning", "message"], "{whole}");
    let summary = output[0]["summary"][0]["text"].as_str().unwrap();
    assert!(!summary.is_empty() && !summary.contains("think"), "{whole}");
    let usage = &whole["usage"];
    let reasoning_tokens = usage["output_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    let output_tokens = usage["output_tokens"].as_u64().unwrap();
    // `<think>`, the summary's words and `</think>` are reasoning; the answer after is not.
    assert!(
        reasoning_tokens > 3 && reasoning_tokens < output_tokens,
        "{usage}"
    );

    // Streamed: the summary arrives as reasoning_summary_text deltas; the same count at the end.
    let r = client().post(&url).json(&ask(true)).send().await.unwrap();
    let events = sse_events(&r.text().await.unwrap());
    let streamed: String = events
        .iter()
        .filter(|(name, _)| name == "response.reasoning_summary_text.delta")
        .map(|(_, data)| data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed.trim_end(), summary);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.completed", "{data}");
    // (Its prompt came from the prefix cache this time, so only the output counts compare.)
    let streamed_usage = &data["response"]["usage"];
    assert_eq!(streamed_usage["output_tokens"], output_tokens, "{data}");
    assert_eq!(
        streamed_usage["output_tokens_details"]["reasoning_tokens"], reasoning_tokens,
        "{data}"
    );
    let cached = streamed_usage["input_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached > 0,
        "the same prompt again is read from the prefix cache: {data}"
    );

    // The chat path counts the same tokens in OpenAI's `completion_tokens_details`.
    let chat = json!({"model": uid, "max_tokens": 60, "temperature": 0, "guided_regex": regex,
                      "messages": [{"role": "user", "content": "Is 17 a prime number?"}]});
    let (status, answer) = send(
        client()
            .post(format!("{}/v1/chat/completions", server.url))
            .json(&chat),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["usage"]["completion_tokens_details"]["reasoning_tokens"], reasoning_tokens,
        "{answer}"
    );
    server.stop().await;
}
