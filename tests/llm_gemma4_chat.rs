//! The tiny Gemma 4 GGUF (tests/fixtures/tiny-gguf/gemma4/, scripts/fixtures/make_tiny_gemma4.py)
//! chats as llama.cpp would: its chat template renders the fixture's recorded prompt, our
//! `gemma4` tokenizer (built from the GGUF's tokens and merges) reads that prompt into the very
//! ids llama.cpp's tokenizer gave, `<turn|>` ends generation, and a greedy chat completion over
//! real HTTP answers llama.cpp's greedy tokens for that prompt (up to the first near-tie).

mod common;

use common::logit_checks::{floats, tiny_gguf_dir, tiny_gguf_reference};
use common::tiny_families::{decisive_steps, launch_from_path};
use common::{token_ids as ids, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use xinference::llm::LlmEngine;

/// Greedy steps whose top-2 logit gap (in llama.cpp) is below this may go either way.
const NEAR_TIE: f32 = 0.05;

/// The F16 file's record of the prompt `name`.
fn case(reference: &Value, name: &str) -> Value {
    reference["files"][0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} case in gemma4's reference.json"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_gemma4_chats_greedily_as_llama_cpp_does() {
    let reference = tiny_gguf_reference("gemma4");
    assert_eq!(reference["files"][0]["file"], "tiny-F16.gguf");
    let gguf = tiny_gguf_dir().join("gemma4/tiny-F16.gguf");
    let parts = xinference::llm::load_gguf(&gguf).unwrap();
    assert_eq!(parts.architecture, "gemma4");
    let turn_end = parts.tokenizer.token_to_id("<turn|>").unwrap();
    assert!(
        parts.eos_token_ids.contains(&turn_end),
        "<turn|> must end generation: {:?}",
        parts.eos_token_ids
    );
    let engine = LlmEngine::new(parts, None, &[], &[]).unwrap();
    let messages: Vec<Value> = reference["chat_messages"].as_array().unwrap().clone();
    let prompt = engine
        .render_chat(&messages, None, &Default::default())
        .unwrap();
    assert_eq!(prompt, reference["chat_prompt"].as_str().unwrap());
    let chat = case(&reference, "chat");
    let prompt_ids = engine.tokenize(&prompt).unwrap();
    assert_eq!(
        prompt_ids,
        ids(&chat["prompt_ids"]),
        "our tokens of the chat prompt differ from llama.cpp's"
    );
    // Plain text: `<bos>` parsed as the control token, spaces as `▁`, no space prefix.
    assert_eq!(
        engine.tokenize("The capital of France is").unwrap(),
        ids(&case(&reference, "text-0")["prompt_ids"]),
        "our tokens of plain text differ from llama.cpp's"
    );
    // llama.cpp's greedy answer, up to and including its first near-tie and before any end
    // token.
    let greedy = ids(&chat["greedy_ids"]);
    let margins = floats(&chat["greedy_margins"]);
    let upto = decisive_steps(&margins, NEAR_TIE, true).min(greedy.len());
    let upto = greedy[..upto]
        .iter()
        .position(|t| *t == turn_end)
        .unwrap_or(upto);
    assert!(
        upto >= 4,
        "too few decisive greedy steps to compare: {upto}"
    );
    // Released as the server releases text (whole characters only: the tiny model's byte
    // tokens need not form UTF-8).
    let mut detokenizer = xinference::llm::Detokenizer::new();
    let mut expected = String::new();
    for &token in &greedy[..upto] {
        expected.push_str(&detokenizer.push(engine.tokenizer(), token).unwrap());
    }
    drop(engine);

    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let spec = json!({
        "model_uid": "tiny-gemma4",
        "model_name": "gemma-4",
        "model_size_in_billions": 2,
        "quantization": "Q8_0",
    });
    launch_from_path(&server.url, &gguf, spec).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&json!({
            "model": "tiny-gemma4",
            "messages": messages,
            "temperature": 0.0,
            "max_tokens": upto,
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "chat: {v}");
    assert_eq!(v["usage"]["prompt_tokens"], json!(prompt_ids.len()), "{v}");
    let answer = v["choices"][0]["message"]["content"].as_str().unwrap();
    println!("gemma4 greedy chat: {answer:?} (llama.cpp: {expected:?}, {upto} tokens)");
    assert_eq!(answer, expected, "greedy answer differs from llama.cpp's");
    server.stop().await;
}

/// Gemma 4's reasoning channel over real HTTP with the official `openai` client
/// (tests/python/openai_gemma4_reasoning.py): `enable_thinking` reaches the fixture's template
/// (its `<|think|>` line), and what the model writes between `<|channel>thought\n` and
/// `<channel|>` (single tokens, user-defined in the GGUF as llama.cpp's converter writes them)
/// goes to `reasoning_content`, whole and streamed, never to `content`, with the reasoning
/// tokens counted in `usage`. The random model is made to think by a grammar over the two tag
/// tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_gemma4_reasoning_goes_to_reasoning_content() {
    let reference = tiny_gguf_reference("gemma4");
    let gguf = tiny_gguf_dir().join("gemma4/tiny-F16.gguf");
    let parts = xinference::llm::load_gguf(&gguf).unwrap();
    let id = |t: &str| {
        parts
            .tokenizer
            .token_to_id(t)
            .unwrap_or_else(|| panic!("{t} is not in the fixture's vocabulary"))
    };
    let (open, close) = (id("<|channel>"), id("<channel|>"));
    let engine = LlmEngine::new(parts, None, &[], &[]).unwrap();
    let messages: Vec<Value> = reference["chat_messages"].as_array().unwrap().clone();
    let count = |thinking: bool| {
        let mut kwargs = serde_json::Map::new();
        kwargs.insert("enable_thinking".into(), json!(thinking));
        let text = engine.render_chat(&messages, None, &kwargs).unwrap();
        assert_eq!(text.contains("<|think|>"), thinking, "{text}");
        engine.tokenize(&text).unwrap().len()
    };
    let (off, on) = (count(false), count(true));
    assert!(on > off);
    drop(engine);
    let grammar = format!(
        "start: <[{open}]> \"thought\\n\" /[a-z][a-z ]{{2,30}}/ <[{close}]> /[A-Z][A-Za-z ]{{2,20}}/"
    );

    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let spec = json!({
        "model_uid": "tiny-gemma4-thinking",
        "model_name": "gemma-4",
        "model_size_in_billions": 2,
        "quantization": "Q8_0",
    });
    launch_from_path(&server.url, &gguf, spec).await;
    let out = common::run_python(
        "openai_gemma4_reasoning.py",
        &[
            &server.url,
            "tiny-gemma4-thinking",
            &off.to_string(),
            &on.to_string(),
            &grammar,
        ],
    )
    .await;
    println!("{}", out.trim());
    assert!(out.contains("openai gemma4 reasoning: ok"), "{out}");
    server.stop().await;
}
