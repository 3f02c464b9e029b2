//! Safetensors LLMs (Xinference's `pytorch` format, engine `Transformers`) compute what Hugging
//! Face transformers computes: for tiny random Llama, Qwen2 and Qwen3 models in the real hub
//! layout (tests/fixtures/tiny-llms/, made with scripts/fixtures/make_tiny_llms.py, which also
//! recorded reference.json with transformers), the last-position logits agree within 1e-4 and
//! 16 greedy tokens are identical; prompts tokenize and chat templates render as transformers
//! does. The same folders also launch through the HTTP API and chat.

mod common;

use common::logit_checks::{floats, greedy, max_abs_diff};
use common::token_ids as ids;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xinference::llm::{argmax, GenerateOptions, LlmEngine, SamplingParams};
use xinference::ErrorKind;

/// Largest tolerated |logit - reference|.
const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llms")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn greedy_options(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(max_tokens),
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Every end-of-generation id the folder names (config.json and generation_config.json).
fn end_tokens(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for file in ["config.json", "generation_config.json"] {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        match &v["eos_token_id"] {
            Value::Array(_) => out.extend(ids(&v["eos_token_id"])),
            Value::Number(n) => out.push(n.as_u64().unwrap() as u32),
            _ => {}
        }
    }
    out
}

fn check_model(model: &Value) -> f32 {
    let folder = model["folder"].as_str().unwrap();
    let dir = fixtures().join(folder);
    let mut engine = LlmEngine::load_safetensors(&dir, None, &[], &[])
        .unwrap_or_else(|e| panic!("{folder}: {e}"));
    assert_eq!(engine.architecture(), model["model_type"].as_str().unwrap());
    assert_eq!(
        engine.context_length(),
        256,
        "{folder}: max_position_embeddings"
    );

    // Tokenization as transformers' `tokenizer(text)`: exactly one BOS for Llama, none for Qwen.
    for p in model["text_prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        assert_eq!(
            engine.tokenize(text).unwrap(),
            ids(&p["ids"]),
            "{folder}: tokens of {text:?}"
        );
    }
    // The chat template as transformers' `apply_chat_template` renders it, tokenized the same.
    let messages = model["chat_messages"].as_array().unwrap().clone();
    let prompt = engine
        .render_chat(&messages, None, &Default::default())
        .unwrap();
    assert_eq!(prompt, model["chat_prompt"].as_str().unwrap(), "{folder}");
    assert_eq!(
        engine.tokenize(&prompt).unwrap(),
        ids(&model["chat_prompt_ids"]),
        "{folder}: chat prompt tokens"
    );

    let mut worst = 0.0f32;
    // The cases run one after the other on one engine: position 0 must discard the cache.
    for case in model["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["greedy_ids"]);
        let (logits, tokens) = greedy(&mut engine, &prompt, expected.len());
        let diff = max_abs_diff(&logits[..16], &floats(&case["last_logits_head"]));
        println!(
            "{folder:6} {name:13} prompt {:2} tokens: max |logit diff| {diff:.2e}, greedy {} tokens identical: {}",
            prompt.len(),
            expected.len(),
            tokens == expected
        );
        worst = worst.max(diff);
        assert!(
            diff < LOGIT_TOLERANCE,
            "{folder} {name}: logits differ by {diff}"
        );
        assert_eq!(
            argmax(&logits),
            case["last_logits_argmax"].as_u64().unwrap() as u32,
            "{folder} {name}: argmax"
        );
        assert_eq!(tokens, expected, "{folder} {name}: greedy tokens");

        // A prompt fed in two pieces (the second at an offset, several tokens at once) gives
        // the same logits as in one piece.
        if prompt.len() >= 4 {
            let half = prompt.len() / 2;
            engine.forward_for_bench(&prompt[..half], 0);
            let split = engine.forward_for_bench(&prompt[half..], half);
            let d = max_abs_diff(&split, &logits);
            assert!(d < 1e-4, "{folder} {name}: chunked prefill differs by {d}");
        }

        // The engine's own loop: identical tokens, up to and including a stop token.
        let eos = end_tokens(&dir);
        let stop_at = expected
            .iter()
            .position(|t| eos.contains(t))
            .map_or(expected.len(), |i| i + 1);
        let generated = engine
            .generate(&prompt, &greedy_options(expected.len()), &mut |_| true)
            .unwrap();
        assert_eq!(
            generated.tokens,
            expected[..stop_at],
            "{folder} {name}: LlmEngine::generate"
        );
        // A fork shares the weights and decodes the same.
        let mut fork = engine.fork().expect("safetensors models fork");
        let forked = fork
            .generate(&prompt, &greedy_options(expected.len()), &mut |_| true)
            .unwrap();
        assert_eq!(forked.tokens, generated.tokens, "{folder} {name}: fork");
    }
    worst
}

#[test]
fn logits_and_greedy_tokens_match_transformers() {
    let reference = reference();
    let models = reference["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    let mut worst = 0.0f32;
    for model in models {
        worst = worst.max(check_model(model));
    }
    println!("worst max |logit diff| over all cases: {worst:.2e} (tolerance {LOGIT_TOLERANCE:e})");
}

/// A copy of a fixture folder that a test may break.
fn copy_fixture(folder: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join(folder)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    tmp
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

fn load_error(dir: &Path) -> xinference::Error {
    match LlmEngine::load_safetensors(dir, None, &[], &[]) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn broken_folders_are_clear_400s() {
    let check = |dir: &Path, expect: &str| {
        let e = load_error(dir);
        assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
        assert!(e.message().contains(expect), "{expect:?} not in {e}");
    };

    check(Path::new("/no/such/folder"), "is not a folder");
    let empty = tempfile::tempdir().unwrap();
    check(empty.path(), "no config.json");

    let t = copy_fixture("qwen2");
    edit_config(t.path(), |c| c["model_type"] = json!("gpt2"));
    check(t.path(), "model_type `gpt2` cannot be run");

    // Without model_type, `architectures` decides.
    let t = copy_fixture("qwen2");
    edit_config(t.path(), |c| {
        c.as_object_mut().unwrap().remove("model_type");
        c["architectures"] = json!(["MambaForCausalLM"]);
    });
    check(t.path(), "architecture `MambaForCausalLM`");
    let t = copy_fixture("qwen2");
    edit_config(t.path(), |c| {
        c.as_object_mut().unwrap().remove("model_type");
    });
    assert_eq!(
        LlmEngine::load_safetensors(t.path(), None, &[], &[])
            .unwrap()
            .architecture(),
        "qwen2"
    );

    let t = copy_fixture("qwen3");
    edit_config(t.path(), |c| c["hidden_size"] = json!("sixty-four"));
    check(t.path(), "`hidden_size` must be a non-negative integer");

    let t = copy_fixture("qwen3");
    std::fs::write(t.path().join("config.json"), "{not json").unwrap();
    check(t.path(), "is not valid JSON");

    let t = copy_fixture("qwen3");
    edit_config(t.path(), |c| c["dtype"] = json!("int8"));
    check(t.path(), "torch_dtype `int8`");

    let t = copy_fixture("qwen2");
    std::fs::remove_file(t.path().join("model.safetensors")).unwrap();
    check(t.path(), "no model.safetensors");

    let t = copy_fixture("llama");
    std::fs::remove_file(t.path().join("model-00002-of-00002.safetensors")).unwrap();
    check(t.path(), "model-00002-of-00002.safetensors is missing");

    // More layers than the weights hold: a 400 naming the tensor, not candle's panic.
    let t = copy_fixture("llama");
    edit_config(t.path(), |c| c["num_hidden_layers"] = json!(3));
    check(t.path(), "no tensor `model.layers.2.");

    // Weights of another shape than config.json says.
    let t = copy_fixture("llama");
    edit_config(t.path(), |c| c["intermediate_size"] = json!(96));
    check(t.path(), "do not match its config.json");
    let t = copy_fixture("qwen2");
    edit_config(t.path(), |c| c["intermediate_size"] = json!(96));
    check(t.path(), "do not match its config.json");

    let t = copy_fixture("llama");
    edit_config(t.path(), |c| {
        c["rope_parameters"] = json!({"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0})
    });
    check(t.path(), "RoPE scaling");

    let t = copy_fixture("qwen3");
    std::fs::remove_file(t.path().join("tokenizer.json")).unwrap();
    check(t.path(), "no tokenizer.json");
}

async fn post(url: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Chats with `uid` over HTTP; the reply must be what the engine generates in process.
async fn chat_matches_engine(server: &TestServer, uid: &str, model: &Value) {
    let folder = model["folder"].as_str().unwrap();
    let messages = model["chat_messages"].clone();
    let (s, v) = post(
        &format!("{}/v1/chat/completions", server.url),
        json!({"model": uid, "messages": messages, "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{uid}: {v}");
    let prompt_ids = ids(&model["chat_prompt_ids"]);
    let usage = &v["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_ids.len(), "{uid}: {v}");
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&completion), "{uid}: {v}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        prompt_ids.len() as u64 + completion
    );
    let mut engine = LlmEngine::load_safetensors(&fixtures().join(folder), None, &[], &[]).unwrap();
    let expected = engine
        .generate(&prompt_ids, &greedy_options(8), &mut |_| true)
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        expected.text,
        "{uid}"
    );
    assert_eq!(completion as usize, expected.completion_tokens);
}

#[tokio::test]
async fn launch_with_transformers_engine_and_chat_over_http() {
    let reference = reference();
    let model = |folder: &str| {
        reference["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["folder"] == folder)
            .unwrap()
            .clone()
    };
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let url = server.url.clone();

    // The built-in family, its pytorch spec, the files from model_path.
    let (s, v) = post(
        &format!("{url}/v1/models"),
        json!({
            "model_uid": "tiny-qwen2",
            "model_name": "qwen2.5-instruct",
            "model_engine": "Transformers",
            "model_format": "pytorch",
            "model_path": fixtures().join("qwen2"),
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    chat_matches_engine(&server, "tiny-qwen2", &model("qwen2")).await;

    // A custom registration whose model_uri is the (sharded) Llama folder.
    let custom = json!({
        "version": 2,
        "model_name": "tiny-llama-custom",
        "model_family": "qwen2.5-instruct",
        "model_ability": ["generate", "chat"],
        "context_length": 256,
        "model_lang": ["en"],
        "model_specs": [{
            "model_format": "pytorch",
            "model_size_in_billions": 1,
            "quantization": "none",
            "model_id": "test/tiny-llama",
            "model_uri": format!("file://{}", fixtures().join("llama").display()),
        }],
    });
    let (s, v) = post(
        &format!("{url}/v1/model_registrations/LLM"),
        json!({"model": custom.to_string(), "persist": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post(
        &format!("{url}/v1/models"),
        json!({
            "model_uid": "tiny-llama",
            "model_name": "tiny-llama-custom",
            "model_engine": "Transformers",
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    chat_matches_engine(&server, "tiny-llama", &model("llama")).await;

    // The Transformers engine is listed as runnable for the built-in's pytorch specs.
    let engines: Value = reqwest::get(format!("{url}/v1/engines/LLM/qwen2.5-instruct"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(engines["Transformers"].is_array(), "{engines}");
    server.stop().await;
}
