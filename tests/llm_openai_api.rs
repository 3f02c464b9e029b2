//! The OpenAI-compatible LLM routes (`/v1/chat/completions`, `/v1/completions`) over real HTTP
//! on real GGUF models: the official `openai` SDK, the exact SSE framing, stop strings, seeds,
//! `max_tokens`, error statuses, responsiveness while generating, abandoned requests and
//! concurrent requests.
//!
//! The machines that run these have few cores, so generations are kept short.

mod common;

use common::{minilm_dir, qwen_gguf, run_python, smollm2_gguf, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.send(path, body).await;
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A streamed request read to the end: its raw body text.
    async fn post_text(&self, path: &str, body: Value) -> (StatusCode, String, String) {
        let r = self.send(path, body).await;
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, content_type, r.text().await.unwrap())
    }

    /// Launches a GGUF LLM (with `extra` launch fields) and waits until it serves; returns its
    /// uid.
    async fn launch_llm(
        &self,
        name: &str,
        size: &str,
        quantization: &str,
        path: PathBuf,
        extra: Value,
    ) -> String {
        let mut body = json!({
            "model_name": name,
            "model_engine": "llama.cpp",
            "model_format": "ggufv2",
            "model_size_in_billions": size,
            "quantization": quantization,
            "model_path": path,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = self.post("/v1/models", body).await;
        assert_eq!(s, StatusCode::OK, "launch of {name}: {v}");
        v["model_uid"].as_str().unwrap().to_owned()
    }

    async fn launch_smollm2(&self, extra: Value) -> String {
        self.launch_llm("smollm2-instruct", "0_135", "Q4_1", smollm2_gguf(), extra)
            .await
    }

    async fn launch_qwen(&self) -> String {
        self.launch_llm(
            "qwen2.5-coder-instruct",
            "0_5",
            "q4_k_m",
            qwen_gguf(),
            json!({}),
        )
        .await
    }

    /// A whole chat answer that must succeed.
    async fn chat(&self, body: Value) -> Value {
        let (s, v) = self.post("/v1/chat/completions", body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}

fn user(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
}

fn detail(v: &Value) -> &str {
    v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {v}"))
}

/// Splits a raw SSE body into the payloads of its `data: ` events, checking the framing: events
/// are separated by blank lines and every line of an event is a `data: ` line.
fn sse_payloads(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "the stream must end with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let lines: Vec<&str> = event.lines().collect();
            assert_eq!(lines.len(), 1, "one data line per event: {event:?}");
            lines[0]
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("an event line that is not `data: `: {event:?}"))
                .to_owned()
        })
        .collect()
}

/// Parses a streamed chat body: its chunks (JSON), checking that it ends with `[DONE]`.
fn chat_chunks(body: &str) -> Vec<Value> {
    let payloads = sse_payloads(body);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "{body}"
    );
    payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p}")))
        .collect()
}

/// The concatenated delta contents of chat chunks.
fn streamed_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_chats_with_smollm2() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    let uid = http.launch_smollm2(json!({})).await;
    let out = run_python("openai_chat.py", &[&server.url, &uid]).await;
    assert!(out.contains("openai chat: ok"), "{out}");

    // Seeds: the same seed gives the same sample; different seeds give different ones.
    let sampled = |seed: u64| {
        json!({
            "model": uid,
            "messages": user("Tell me a short story."),
            "temperature": 1.0,
            "seed": seed,
            "max_tokens": 8,
        })
    };
    let first = content(&http.chat(sampled(42)).await).to_owned();
    let again = content(&http.chat(sampled(42)).await).to_owned();
    assert_eq!(first, again, "seed 42 twice");
    let mut others = Vec::new();
    for seed in [1, 2, 3] {
        others.push(content(&http.chat(sampled(seed)).await).to_owned());
    }
    assert!(
        others.iter().any(|o| *o != first),
        "different seeds all gave {first:?}: {others:?}"
    );

    // logit_bias: +100 on one token makes greedy decoding pick it every step; -100 on the
    // greedy choice makes it pick another.
    let local = xinference::llm::LlmEngine::load_gguf(&smollm2_gguf(), None, &[], &[]).unwrap();
    let tokenizer = local.tokenizer();
    let banana = tokenizer.encode(" banana", false).unwrap()[0];
    let completion = |bias: Value| {
        json!({
            "model": uid,
            "prompt": "The capital of France is",
            "temperature": 0,
            "max_tokens": 3,
            "logit_bias": bias,
        })
    };
    let (s, v) = http
        .post(
            "/v1/completions",
            completion(json!({banana.to_string(): 100})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let forced = tokenizer.decode(&[banana; 3], true).unwrap();
    assert_eq!(v["choices"][0]["text"], forced, "{v}");
    let (_, plain) = http.post("/v1/completions", completion(json!({}))).await;
    let plain = plain["choices"][0]["text"].as_str().unwrap().to_owned();
    let first = tokenizer.encode(&plain, false).unwrap()[0];
    let (s, v) = http
        .post(
            "/v1/completions",
            completion(json!({first.to_string(): -100})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let banned = v["choices"][0]["text"].as_str().unwrap();
    assert_ne!(
        tokenizer.encode(banned, false).unwrap()[0],
        first,
        "{plain:?} then {banned:?}"
    );

    // max_tokens ends generation with finish_reason "length" after exactly that many tokens.
    let v = http
        .chat(json!({
            "model": uid,
            "messages": user("Write a long story about a dragon."),
            "temperature": 0,
            "max_tokens": 5,
        }))
        .await;
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 5, "{v}");

    // Concurrent requests (on the model's parallel sequence slots) all succeed, each with the
    // answer it gets alone: the slots do not share state.
    let body = |i: usize| {
        json!({
            "model": uid,
            "messages": user(&format!("Say a word about the number {i}.")),
            "temperature": 0,
            "max_tokens": 16,
        })
    };
    let requests = (0..4).map(|i| {
        let client = http.client.clone();
        let url = format!("{}/v1/chat/completions", http.base);
        let body = body(i);
        tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    });
    let answers = futures::future::join_all(requests).await;
    for (i, answer) in answers.into_iter().enumerate() {
        let (s, v) = answer.unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
        let tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
        assert!((1..=16).contains(&tokens), "{v}");
        assert!(!content(&v).is_empty(), "{v}");
        let alone = http.chat(body(i)).await;
        assert_eq!(content(&v), content(&alone), "request {i}: {v} vs {alone}");
        // The same counts (the repeat reads its prompt from the prefix cache, which its
        // `prompt_tokens_details` says).
        for count in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            assert_eq!(v["usage"][count], alone["usage"][count], "request {i}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_chats_with_qwen_and_stop_strings_and_sse_framing() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    let uid = http.launch_qwen().await;
    let out = run_python("openai_chat.py", &[&server.url, &uid]).await;
    assert!(out.contains("openai chat: ok"), "{out}");

    // The exact SSE framing of a streamed chat with usage.
    let (s, content_type, body) = http
        .post_text(
            "/v1/chat/completions",
            json!({
                "model": uid,
                "messages": user("What is the capital of France?"),
                "temperature": 0,
                "max_tokens": 12,
                "stream": true,
                "stream_options": {"include_usage": true},
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let chunks = chat_chunks(&body);
    assert!(chunks.len() >= 4, "{body}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"), "{id}");
    for c in &chunks {
        assert_eq!(c["id"], id, "{body}");
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["model"], uid, "{c}");
        assert!(c["created"].is_u64(), "{c}");
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        "{body}"
    );
    let n = chunks.len();
    let (usage_chunk, final_chunk, deltas) = (&chunks[n - 1], &chunks[n - 2], &chunks[1..n - 2]);
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    let usage = &usage_chunk["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
    assert_eq!(
        final_chunk["choices"],
        json!([{"index": 0, "delta": {"content": ""}, "logprobs": null, "finish_reason": "stop"}]),
        "{body}"
    );
    assert!(final_chunk.get("usage").is_none(), "{final_chunk}");
    for d in deltas {
        let choice = &d["choices"][0];
        assert!(choice["finish_reason"].is_null(), "{d}");
        assert!(choice["delta"].get("role").is_none(), "{d}");
        assert!(choice["delta"]["content"].is_string(), "{d}");
        assert!(d.get("usage").is_none(), "{d}");
    }
    assert!(streamed_content(&chunks).contains("Paris"), "{body}");

    // Without include_usage there is no usage chunk: the finish chunk comes right before [DONE].
    let (_, _, body) = http
        .post_text(
            "/v1/chat/completions",
            json!({
                "model": uid, "messages": user("What is the capital of France?"),
                "temperature": 0, "max_tokens": 3, "stream": true,
            }),
        )
        .await;
    let chunks = chat_chunks(&body);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{body}");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{body}");

    // Stop strings end generation and are never emitted, whole or streamed. Greedy Qwen counts
    // "1, 2, 3, 4, 5, ...".
    let count = |stop: Value, stream: bool| {
        json!({
            "model": uid,
            "messages": user("Count from 1 to 10, separated by commas."),
            "temperature": 0,
            "max_tokens": 20,
            "stop": stop,
            "stream": stream,
        })
    };
    let free = http.chat(count(Value::Null, false)).await;
    assert!(content(&free).starts_with("1, 2, 3, 4, 5, 6"), "{free}");

    let v = http.chat(count(json!(["4"]), false)).await;
    let text = content(&v);
    assert!(!text.contains('4'), "{v}");
    assert!(text.starts_with("1, 2, 3"), "{v}");
    assert_eq!(text.trim_end(), "1, 2, 3,", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let (_, _, body) = http
        .post_text("/v1/chat/completions", count(json!(["4"]), true))
        .await;
    let chunks = chat_chunks(&body);
    assert_eq!(streamed_content(&chunks), text, "{body}");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")], "{body}");

    // A stop string spanning several tokens (", 5"): the text up to it is released, the stop
    // string is not, even when its first token was already generated.
    let v = http.chat(count(json!(", 5"), false)).await;
    assert_eq!(content(&v), "1, 2, 3, 4", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let (_, _, body) = http
        .post_text("/v1/chat/completions", count(json!([", 5", "nine"]), true))
        .await;
    assert_eq!(
        streamed_content(&chat_chunks(&body)),
        "1, 2, 3, 4",
        "{body}"
    );

    // Legacy completions honour stop strings too.
    let (s, v) = http
        .post(
            "/v1/completions",
            json!({"model": uid, "prompt": "1, 2, 3, 4, 5,", "temperature": 0, "max_tokens": 12, "stop": ["9"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with(" 6, 7, 8"), "{v}");
    assert!(!text.contains('9'), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_llm_requests_get_the_right_status() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    let uid = http.launch_smollm2(json!({})).await;
    let (s, v) = http
        .post(
            "/v1/models",
            json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "model_uid": "emb", "model_path": minilm_dir()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let ok_messages = user("Hi");
    let with = |extra: Value| {
        let mut body = json!({"model": uid, "messages": ok_messages, "max_tokens": 2});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(&str, &str, Value, StatusCode)> = vec![
        (
            "missing messages",
            "/v1/chat/completions",
            json!({"model": uid}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "missing model",
            "/v1/chat/completions",
            json!({"messages": ok_messages}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty messages",
            "/v1/chat/completions",
            with(json!({"messages": []})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "user message without content",
            "/v1/chat/completions",
            with(json!({"messages": [{"role": "user"}]})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown role",
            "/v1/chat/completions",
            with(json!({"messages": [{"role": "wizard", "content": "x"}]})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "temperature 5",
            "/v1/chat/completions",
            with(json!({"temperature": 5})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "top_p 0",
            "/v1/chat/completions",
            with(json!({"top_p": 0})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "max_tokens 0",
            "/v1/chat/completions",
            with(json!({"max_tokens": 0})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "n 129",
            "/v1/chat/completions",
            with(json!({"n": 129})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "logit_bias not an object",
            "/v1/chat/completions",
            with(json!({"logit_bias": [1, 5]})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "logit_bias key not a token id",
            "/v1/chat/completions",
            with(json!({"logit_bias": {"hello": 5}})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "logit_bias over 100",
            "/v1/completions",
            json!({"model": uid, "prompt": "Hi", "logit_bias": {"1": 101}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "logit_bias past the vocabulary",
            "/v1/chat/completions",
            with(json!({"logit_bias": {"999999999": 5}})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "logit_bias past the vocabulary, streamed",
            "/v1/chat/completions",
            with(json!({"logit_bias": {"999999999": 5}, "stream": true})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown model",
            "/v1/chat/completions",
            with(json!({"model": "no-such-model"})),
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown model, streamed",
            "/v1/chat/completions",
            with(json!({"model": "no-such-model", "stream": true})),
            StatusCode::NOT_FOUND,
        ),
        (
            "chat on an embedding model",
            "/v1/chat/completions",
            with(json!({"model": "emb"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "streamed chat on an embedding model",
            "/v1/chat/completions",
            with(json!({"model": "emb", "stream": true})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty prompt",
            "/v1/completions",
            json!({"model": uid, "prompt": "", "max_tokens": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "token id outside the vocabulary",
            "/v1/completions",
            json!({"model": uid, "prompt": [1, 99999999], "max_tokens": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "completion on an embedding model",
            "/v1/completions",
            json!({"model": "emb", "prompt": "x", "max_tokens": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "embeddings on the LLM",
            "/v1/embeddings",
            json!({"model": uid, "input": "x"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, path, body, expected) in cases {
        let (s, v) = http.post(path, body).await;
        assert_eq!(s, expected, "{what}: {v}");
        assert!(!detail(&v).is_empty(), "{what}: {v}");
    }

    // A streamed request whose prompt is too long fails before the stream starts: a plain 400.
    let long = "hello ".repeat(10_000);
    let (s, v) = http
        .post(
            "/v1/chat/completions",
            with(json!({"messages": user(&long), "stream": true})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(detail(&v).contains("8192"), "{v}");

    // The model still serves after all of that.
    let v = http.chat(with(json!({"temperature": 0}))).await;
    assert_eq!(v["usage"]["completion_tokens"], 2, "{v}");
    server.stop().await;
}

/// Reads an SSE response until it has seen `events` `data:` events (or the stream ended).
async fn read_events(response: &mut reqwest::Response, events: usize) -> String {
    let mut text = String::new();
    while text.matches("\n\n").count() < events {
        match response.chunk().await.unwrap() {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            None => break,
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_keeps_the_server_responsive_and_abandoned_requests_free_the_model() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = Http::new(&server);
    // One sequence slot, so that an abandoned generation that went on would hold up the
    // requests after it (with the default slots they would just run beside it).
    let uid = http.launch_smollm2(json!({"n_parallel": 1})).await;

    // The server answers other requests while the model generates.
    let mut long = http
        .send(
            "/v1/chat/completions",
            json!({
                "model": uid,
                "messages": user("Write a long story about a dragon."),
                "temperature": 0,
                "max_tokens": 200,
                "stream": true,
            }),
        )
        .await;
    assert_eq!(long.status(), StatusCode::OK);
    let seen = read_events(&mut long, 3).await;
    assert!(!seen.contains("[DONE]"), "{seen}");
    for _ in 0..5 {
        let started = Instant::now();
        let r = http
            .client
            .get(format!("{}/status", http.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "GET /status took {took:?}");
        let more = read_events(&mut long, 1).await;
        assert!(
            !more.contains("[DONE]"),
            "the generation ended too soon: {more}"
        );
    }
    drop(long);

    // A client that goes away mid-stream frees the model: the abandoned generation (up to
    // 2000 tokens, minutes on these machines) does not hold up the next request.
    let baseline_body = json!({
        "model": uid, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 4,
    });
    let started = Instant::now();
    let (s, v) = http.post("/v1/completions", baseline_body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let baseline = started.elapsed();

    let mut abandoned = http
        .send(
            "/v1/completions",
            json!({
                "model": uid,
                "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
                "temperature": 0,
                "max_tokens": 2000,
                "stream": true,
            }),
        )
        .await;
    assert_eq!(abandoned.status(), StatusCode::OK);
    let first = read_events(&mut abandoned, 2).await;
    assert!(first.starts_with("data: {"), "{first}");
    let per_token = {
        // Time a few more tokens to know how long the whole generation would take.
        let t = Instant::now();
        read_events(&mut abandoned, 4).await;
        t.elapsed() / 4
    };
    drop(abandoned);
    let started = Instant::now();
    let (s, v) = http.post("/v1/completions", baseline_body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let after = started.elapsed();
    // Scaled by this machine's current speed: the 4-token request costs a few tokens' time, the
    // rest of the abandoned generation (~1990 tokens) 10 times the limit or more.
    let limit = Duration::from_secs(5) + per_token * 200;
    assert!(
        after < limit,
        "the request after an abandoned stream took {after:?} (alone: {baseline:?}, \
         {per_token:?} a token of the abandoned one)"
    );

    // The same for a whole (non-streamed) answer whose client gave up waiting.
    let client = http.client.clone();
    let url = format!("{}/v1/completions", http.base);
    let body = json!({
        "model": uid,
        "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
        "temperature": 0,
        "max_tokens": 2000,
    });
    let waiting = tokio::spawn(async move { client.post(url).json(&body).send().await });
    tokio::time::sleep(baseline + Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "the 2000-token generation ended already"
    );
    waiting.abort();
    let _ = waiting.await;
    let started = Instant::now();
    let (s, v) = http.post("/v1/completions", baseline_body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let after = started.elapsed();
    assert!(
        after < limit,
        "the request after an abandoned whole answer took {after:?} (alone: {baseline:?})"
    );

    server.stop().await;
}
