//! Tool calls, structured output and reasoning on the real Qwen2.5-coder-0.5B GGUF (whose
//! template supports tools): through the Rust API, and streamed over real HTTP.
//!
//! Constrained cases run 20 seeded samples each: the output must parse and validate every time.

mod common;

use common::{qwen_gguf, TestServer};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use xinference::{
    ChatCompletion, ChatCompletionRequest, Client, LaunchRequest, LlmModel, Runtime, RuntimeConfig,
};

fn weather_tool(strict: bool) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city", "unit"],
                "additionalProperties": false
            },
            "strict": strict
        }
    })
}

fn time_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Get the current time in a time zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
        }
    })
}

const WEATHER_PROMPT: &str = "What is the weather like in Paris today?";

async fn qwen() -> (tempfile::TempDir, LlmModel) {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(Arc::new(
        Runtime::new(RuntimeConfig::new(home.path())).unwrap(),
    ));
    let uid = client
        .launch_model(
            LaunchRequest::new("qwen2.5-coder-instruct")
                .model_engine("llama.cpp")
                .model_format("ggufv2")
                .model_size_in_billions("0_5")
                .quantization("q4_k_m")
                .model_path(qwen_gguf().display().to_string()),
        )
        .await
        .unwrap();
    let model = client.get_model(&uid).await.unwrap().into_llm().unwrap();
    (home, model)
}

fn request(prompt: &str, max_tokens: u64, seed: Option<u64>) -> ChatCompletionRequest {
    let mut r = ChatCompletionRequest::new(vec![json!({"role": "user", "content": prompt})]);
    r.generation.max_tokens = Some(max_tokens);
    match seed {
        Some(seed) => r.generation.seed = Some(seed),
        None => r.generation.temperature = Some(0.0),
    }
    r
}

fn extra(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// The single tool call of an answer: (name, parsed arguments).
fn only_call(answer: &ChatCompletion) -> (String, Value) {
    let choice = &answer.choices[0];
    assert_eq!(choice.finish_reason, "tool_calls", "{answer:?}");
    let calls = choice.message.tool_calls.as_ref().expect("tool_calls");
    assert!(!calls.is_empty(), "{answer:?}");
    let call = &calls[0];
    assert!(call.id.starts_with("call_"), "{call:?}");
    assert_eq!(call.kind, "function");
    let args: Value = serde_json::from_str(&call.function.arguments)
        .unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {call:?}"));
    (call.function.name.clone(), args)
}

/// The weather schema, checked by hand: exactly `city` (a non-empty string) and `unit` (one
/// of the enum).
fn assert_weather_arguments(args: &Value) {
    let obj = args
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {args}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["city", "unit"], "{args}");
    assert!(
        obj["city"].as_str().is_some_and(|c| !c.is_empty()),
        "{args}"
    );
    assert!(
        matches!(obj["unit"].as_str(), Some("celsius" | "fahrenheit")),
        "{args}"
    );
}

#[tokio::test]
async fn tool_calls_strict_output_and_reasoning_on_the_rust_api() {
    let (_home, model) = qwen().await;

    // A plain `auto` weather prompt: the model's own answer is read as a tool call.
    let mut r = request(WEATHER_PROMPT, 96, None);
    r.tools = Some(vec![weather_tool(false), time_tool()]);
    let answer = model.chat(r).await.unwrap();
    let (name, args) = only_call(&answer);
    assert_eq!(name, "get_weather", "{answer:?}");
    assert!(
        args["city"].as_str().is_some_and(|c| c.contains("Paris")),
        "{args}"
    );
    let content = answer.choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default();
    assert!(!content.contains("<tool_call>"), "markup leaked: {content}");

    // Without tools the same prompt is plain content.
    let answer = model.chat(request(WEATHER_PROMPT, 24, None)).await.unwrap();
    assert!(answer.choices[0].message.tool_calls.is_none());
    assert!(answer.choices[0]
        .message
        .content
        .as_deref()
        .is_some_and(|c| !c.is_empty()));

    // tool_choice "none": tools are not offered and no call is read.
    let mut r = request(WEATHER_PROMPT, 24, None);
    r.tools = Some(vec![weather_tool(false)]);
    r.tool_choice = Some(json!("none"));
    let answer = model.chat(r).await.unwrap();
    assert_ne!(answer.choices[0].finish_reason, "tool_calls");

    // Strict tools with a required call: schema-valid arguments on every seeded sample.
    for seed in 0..20 {
        let mut r = request(WEATHER_PROMPT, 80, Some(seed));
        r.tools = Some(vec![weather_tool(true)]);
        r.tool_choice = Some(json!("required"));
        // One call per answer keeps 20 samples quick; several calls are allowed by default.
        r.extra = extra(json!({"parallel_tool_calls": false}));
        let answer = model.chat(r).await.unwrap();
        let (name, args) = only_call(&answer);
        assert_eq!(name, "get_weather", "seed {seed}");
        assert_weather_arguments(&args);
    }

    // A named choice forces that function, with schema-valid arguments.
    for seed in 0..5 {
        let mut r = request("Hello there!", 80, Some(seed));
        r.tools = Some(vec![weather_tool(true), time_tool()]);
        r.tool_choice = Some(json!({"type": "function", "function": {"name": "get_weather"}}));
        r.extra = extra(json!({"parallel_tool_calls": false}));
        let answer = model.chat(r).await.unwrap();
        assert_eq!(
            answer.choices[0].message.tool_calls.as_ref().map(Vec::len),
            Some(1)
        );
        let (name, args) = only_call(&answer);
        assert_eq!(name, "get_weather", "seed {seed}");
        assert_weather_arguments(&args);
    }

    // response_format json_schema: the content parses and validates every time.
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "role": {"enum": ["admin", "user", "guest"]}
        },
        "required": ["name", "age", "role"],
        "additionalProperties": false
    });
    for seed in 0..20 {
        let mut r = request("Invent a user of a web shop, as JSON.", 64, Some(seed));
        r.extra = extra(
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "user", "schema": schema}}}),
        );
        let answer = model.chat(r).await.unwrap();
        let text = answer.choices[0].message.content.clone().unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("seed {seed}: not JSON ({e}): {text}"));
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 3, "seed {seed}: {text}");
        assert!(
            obj["name"]
                .as_str()
                .is_some_and(|n| n.chars().count() <= 24),
            "{text}"
        );
        assert!(obj["age"].as_u64().is_some_and(|a| a <= 120), "{text}");
        assert!(
            matches!(obj["role"].as_str(), Some("admin" | "user" | "guest")),
            "{text}"
        );
    }

    // json_object: any JSON object.
    let mut r = request("Describe Paris as JSON.", 64, Some(1));
    r.extra = extra(json!({"response_format": {"type": "json_object"}}));
    let answer = model.chat(r).await.unwrap();
    let text = answer.choices[0].message.content.clone().unwrap();
    if answer.choices[0].finish_reason == "stop" {
        assert!(
            serde_json::from_str::<Value>(&text).unwrap().is_object(),
            "{text}"
        );
    } else {
        assert!(text.trim_start().starts_with('{'), "{text}");
    }

    // guided_choice: always one of the choices.
    let choices = ["positive", "negative", "neutral"];
    for seed in 0..20 {
        let mut r = request(
            "Classify the sentiment of: 'I love this phone, the battery lasts forever.'",
            8,
            Some(seed),
        );
        r.extra = extra(json!({"guided_choice": choices}));
        let answer = model.chat(r).await.unwrap();
        let text = answer.choices[0].message.content.clone().unwrap();
        assert!(choices.contains(&text.as_str()), "seed {seed}: {text:?}");
        assert_eq!(answer.choices[0].finish_reason, "stop");
    }

    // guided_regex.
    let mut r = request("Give me a US phone number.", 24, Some(3));
    r.extra = extra(json!({"guided_regex": "\\(\\d{3}\\) \\d{3}-\\d{4}"}));
    let answer = model.chat(r).await.unwrap();
    let text = answer.choices[0].message.content.clone().unwrap();
    let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(digits.len(), 10, "{text}");
    assert!(
        text.starts_with('(') && text.chars().nth(4) == Some(')'),
        "{text}"
    );

    // Bad grammars and tool requests are 400s before any generation.
    for (what, mut r) in [
        ("bad regex", request("x", 4, None)),
        ("bad choice", request("x", 4, None)),
        ("unknown tool", request("x", 4, None)),
    ] {
        match what {
            "bad regex" => r.extra = extra(json!({"guided_regex": "(unclosed"})),
            "bad choice" => r.extra = extra(json!({"guided_choice": []})),
            _ => {
                r.tools = Some(vec![weather_tool(false)]);
                r.tool_choice = Some(json!({"type": "function", "function": {"name": "nope"}}));
            }
        }
        let err = model.chat(r).await.unwrap_err();
        assert_eq!(err.kind().http_status(), 400, "{what}: {err}");
    }
}

#[tokio::test]
async fn tool_history_round_trips_through_the_template() {
    let (_home, model) = qwen().await;
    // An assistant turn with tool_calls and content null, then the tool's result.
    let messages = vec![
        json!({"role": "user", "content": WEATHER_PROMPT}),
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}
        }]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"sky\": \"sunny\"}"}),
    ];
    let mut r = ChatCompletionRequest::new(messages);
    r.tools = Some(vec![weather_tool(false)]);
    r.generation.temperature = Some(0.0);
    r.generation.max_tokens = Some(40);
    let answer = model.chat(r).await.unwrap();
    let text = answer.choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default();
    assert_eq!(answer.choices[0].finish_reason, "stop", "{answer:?}");
    assert!(
        text.contains("21"),
        "the answer should use the tool result: {text}"
    );
}

/// Reads an SSE body into its JSON events (without the final `[DONE]`).
fn sse_events(body: &str) -> Vec<Value> {
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn streamed_tool_calls_and_reasoning_over_http() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.url))
            .json(&body)
            .send()
    };
    let launch = json!({
        "model_name": "qwen2.5-coder-instruct", "model_engine": "llama.cpp",
        "model_format": "ggufv2", "model_size_in_billions": "0_5", "quantization": "q4_k_m",
        "model_path": qwen_gguf(), "model_uid": "qwen",
    });
    let r = post("/v1/models", launch).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // A required call, streamed: OpenAI's delta shape, no markup as content.
    let body = json!({
        "model": "qwen", "stream": true, "max_tokens": 80, "seed": 7,
        "messages": [{"role": "user", "content": WEATHER_PROMPT}],
        "tools": [weather_tool(true)], "tool_choice": "required",
    });
    let r = post("/v1/chat/completions", body).await.unwrap();
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    let deltas: Vec<&Value> = events.iter().map(|e| &e["choices"][0]["delta"]).collect();
    assert_eq!(deltas[0]["role"], "assistant");
    let content: String = deltas
        .iter()
        .filter_map(|d| d["content"].as_str())
        .collect();
    assert!(!content.contains("tool_call"), "markup leaked: {content}");
    let fragments: Vec<&Value> = deltas
        .iter()
        .filter_map(|d| d["tool_calls"].as_array())
        .flatten()
        .collect();
    assert!(!fragments.is_empty(), "{events:?}");
    assert!(fragments.iter().all(|f| f["index"] == 0), "{fragments:?}");
    let ids: Vec<&str> = fragments.iter().filter_map(|f| f["id"].as_str()).collect();
    let names: Vec<&str> = fragments
        .iter()
        .filter_map(|f| f["function"]["name"].as_str())
        .collect();
    assert_eq!(names, ["get_weather"]);
    assert_eq!(ids.len(), 1);
    assert!(ids[0].starts_with("call_"));
    let arguments: String = fragments
        .iter()
        .filter_map(|f| f["function"]["arguments"].as_str())
        .collect();
    assert_weather_arguments(&serde_json::from_str(&arguments).unwrap());
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");

    // Reasoning: a custom model registered with <think> tags; the answer is made to think
    // first (a guided regex), and the reasoning is split off, whole and streamed.
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
    let r = post(
        "/v1/model_registrations/LLM",
        json!({"model": family.to_string(), "persist": false}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = post(
        "/v1/models",
        json!({"model_name": "qwen-thinker", "model_engine": "llama.cpp", "model_format": "ggufv2",
               "model_size_in_billions": "0_5", "quantization": "q4_k_m", "model_uid": "thinker",
               "model_path": qwen_gguf()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let ask = |stream: bool| {
        json!({
            "model": "thinker", "stream": stream, "max_tokens": 60, "temperature": 0,
            "messages": [{"role": "user", "content": "Is 17 a prime number?"}],
            "guided_regex": "<think>\\n[A-Za-z0-9 ,.]{1,80}\\n</think>\\n\\n[A-Za-z0-9 ,.]{1,60}",
        })
    };
    let r = post("/v1/chat/completions", ask(false)).await.unwrap();
    let whole: Value = r.json().await.unwrap();
    let message = &whole["choices"][0]["message"];
    let reasoning = message["reasoning_content"]
        .as_str()
        .unwrap_or_else(|| panic!("{whole}"));
    let answer = message["content"].as_str().unwrap();
    assert!(
        !reasoning.is_empty() && !reasoning.contains("think"),
        "{whole}"
    );
    assert!(!answer.is_empty() && !answer.contains("think"), "{whole}");

    let r = post("/v1/chat/completions", ask(true)).await.unwrap();
    let events = sse_events(&r.text().await.unwrap());
    let first = &events[0]["choices"][0]["delta"];
    assert_eq!(first["reasoning_content"], "", "{first}");
    let streamed_reasoning: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let streamed_answer: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed_reasoning.trim_end(), reasoning);
    assert_eq!(streamed_answer, answer);

    // enable_thinking must be a boolean; it reaches the template as a variable.
    let mut bad = ask(false);
    bad["enable_thinking"] = json!("maybe");
    let r = post("/v1/chat/completions", bad).await.unwrap();
    assert_eq!(r.status(), 400);
    let mut off = ask(false);
    off["chat_template_kwargs"] = json!({"enable_thinking": false});
    let r = post("/v1/chat/completions", off).await.unwrap();
    assert_eq!(r.status(), 200);

    // A stream of an unconstrained tools request never leaks markup either.
    let body = json!({
        "model": "qwen", "stream": true, "max_tokens": 96, "temperature": 0,
        "messages": [{"role": "user", "content": WEATHER_PROMPT}],
        "tools": [weather_tool(false), time_tool()],
    });
    let r = post("/v1/chat/completions", body).await.unwrap();
    let mut bytes = r.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = bytes.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let events = sse_events(&text);
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!content.contains("<tool_call>"), "{content}");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls",
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn openai_sdk_tool_calls_and_structured_output() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let launch = json!({
        "model_name": "qwen2.5-coder-instruct", "model_engine": "llama.cpp",
        "model_format": "ggufv2", "model_size_in_billions": "0_5", "quantization": "q4_k_m",
        "model_path": qwen_gguf(), "model_uid": "qwen",
    });
    let r = reqwest::Client::new()
        .post(format!("{}/v1/models", server.url))
        .json(&launch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let out = common::run_python("openai_tools.py", &[&server.url, "qwen"]).await;
    assert!(out.contains("openai tools: ok"), "{out}");
    server.stop().await;
}

/// Writes the GGUF `src` to `dst` with its `<think>`, `</think>`, `<tool_call>` and
/// `</tool_call>` tokens user-defined (text), as real Qwen3.5 GGUFs mark them
/// (`convert_hf_to_gguf.py` from Qwen's `tokenizer.json`, where they are not special); the tiny
/// fixture made them control tokens, which a grammar's text cannot match.
fn with_text_tags(src: &std::path::Path, dst: &std::path::Path) {
    use candle_core::quantized::gguf_file::{self, Content, Value as GgufValue};
    use candle_core::quantized::QTensor;
    const USER_DEFINED: i32 = 4;
    let mut file = std::fs::File::open(src).unwrap();
    let ct = Content::read(&mut file).unwrap();
    let tokens: Vec<String> = match &ct.metadata["tokenizer.ggml.tokens"] {
        GgufValue::Array(t) => t.iter().map(|v| v.to_string().unwrap().clone()).collect(),
        other => panic!("tokens: {other:?}"),
    };
    let mut metadata = ct.metadata.clone();
    let Some(GgufValue::Array(types)) = metadata.get_mut("tokenizer.ggml.token_type") else {
        panic!("no token types in {}", src.display());
    };
    let mut changed = 0;
    for (token, kind) in tokens.iter().zip(types.iter_mut()) {
        if ["<think>", "</think>", "<tool_call>", "</tool_call>"].contains(&token.as_str()) {
            *kind = GgufValue::I32(USER_DEFINED);
            changed += 1;
        }
    }
    assert_eq!(changed, 4, "the four tags are in the vocabulary");
    let tensors: Vec<(&str, QTensor)> = ct
        .tensor_infos
        .keys()
        .map(|n| {
            (
                n.as_str(),
                ct.tensor(&mut file, n, &candle_core::Device::Cpu).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let md: Vec<(&str, &GgufValue)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut out, &md, &refs).unwrap();
}

/// Qwen3.5's XML tool calls over real HTTP with the official client: the tiny qwen35 fixture
/// (its tags made text, as in real Qwen3.5 GGUFs) launched as `qwen3.5` (whose registry
/// template writes `<function=...>` calls), held to the format by a forced `tool_choice`; the
/// arguments come back typed by the tool's schema.
#[tokio::test]
async fn qwen35_xml_tool_calls_reach_the_openai_sdk_typed_by_the_schema() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let path = home.path().join("tiny-qwen35-Q8_0.gguf");
    with_text_tags(
        &common::logit_checks::tiny_gguf_dir().join("qwen35/tiny-Q8_0.gguf"),
        &path,
    );
    let launch = json!({
        "model_name": "qwen3.5", "model_engine": "llama.cpp", "model_format": "ggufv2",
        "model_size_in_billions": 9, "quantization": "Q8_0", "model_path": path,
        "model_uid": "tiny-qwen35",
    });
    let r = reqwest::Client::new()
        .post(format!("{}/v1/models", server.url))
        .json(&launch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let out = common::run_python("openai_qwen_xml_tools.py", &[&server.url, "tiny-qwen35"]).await;
    assert!(out.contains("openai qwen xml tools: ok"), "{out}");
    println!("{}", out.trim());
    server.stop().await;
}

/// Launches the tiny `fixture` GGUF under the registry `launch` fields and checks, with the
/// official client, that a forced call comes back in the family's own format (`markers`).
async fn family_tool_calls(launch: Value, fixture: &str, markers: &[&str]) {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let mut launch = launch;
    launch["model_path"] = json!(common::logit_checks::tiny_gguf_dir().join(fixture));
    launch["model_uid"] = json!("tiny-family");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/models", server.url))
        .json(&launch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut args = vec![server.url.as_str(), "tiny-family"];
    args.extend_from_slice(markers);
    let out = common::run_python("openai_family_tools.py", &args).await;
    assert!(out.contains("openai family tools: ok"), "{out}");
    println!("{}", out.trim());
    server.stop().await;
}

/// DeepSeek-R1's tool calls over real HTTP with the official client: the tiny qwen2 fixture
/// launched as `deepseek-r1-distill-qwen` (whose registry template writes
/// `<｜tool▁calls▁begin｜>` calls and names no parser, so the template decides the format), held
/// to the format by a forced `tool_choice`. The fixture's vocabulary lacks DeepSeek's marker
/// tokens, so the raw answer writes them byte by byte (logprobs tokens show the bytes), and
/// only their ASCII parts are looked for in it.
#[tokio::test]
async fn deepseek_r1_tool_calls_reach_the_openai_sdk() {
    let launch = json!({
        "model_name": "deepseek-r1-distill-qwen", "model_engine": "llama.cpp",
        "model_format": "ggufv2", "model_size_in_billions": "1_5", "quantization": "Q8_0",
    });
    family_tool_calls(launch, "qwen2/tiny-Q8_0.gguf", &["function", "```json\n{"]).await;
}

/// Gemma 4's tool calls over real HTTP with the official client: the tiny gemma4 fixture
/// launched as `gemma-4` (registry `tool_parser: "gemma"`), held to
/// `<|tool_call>call:NAME{...}<tool_call|>` by a forced `tool_choice`.
#[tokio::test]
async fn gemma4_tool_calls_reach_the_openai_sdk() {
    let launch = json!({
        "model_name": "gemma-4", "model_engine": "llama.cpp",
        "model_format": "ggufv2", "model_size_in_billions": 2, "quantization": "Q8_0",
    });
    family_tool_calls(
        launch,
        "gemma4/tiny-Q8_0.gguf",
        &["call:f{", "<|\"|>", "tool_call|>"],
    )
    .await;
}
