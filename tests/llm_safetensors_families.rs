//! Safetensors checkpoints of every family our decoder runs (Xinference's `pytorch` format,
//! engine `Transformers`) compute what Hugging Face transformers computes in f32: tiny random
//! models in each family's real hub layout (tests/fixtures/tiny-safetensors/, made and recorded
//! by scripts/fixtures/make_tiny_safetensors.py), stored in bf16 (most), f16 (mistral) and f32
//! (qwen2), gemma3 and qwen3moe in shards; the mixtures of experts (qwen3moe, glm4moe, gpt-oss)
//! with their routing and experts; Qwen3.5's hybrid Gated DeltaNet and gated attention blocks,
//! dense and with Qwen3.5 MoE's experts;
//! Gemma 4 in the layouts of E2B / E4B (per-layer embeddings, key/value sharing) and 26B-A4B
//! (experts beside the dense feed-forward), and as its vision-language checkpoints (text path;
//! `Gemma4ForConditionalGeneration` and the "unified" `Gemma4UnifiedForConditionalGeneration`).
//! For each: the last-position logits of three prompts
//! (one longer than the sliding windows) within `LOGIT_TOLERANCE` of transformers' (or twice
//! transformers' own f32 error, where the fixture records one that large), 8 greedy
//! tokens identical, a prompt fed in two pieces equal to the whole, and a fork that decodes the
//! same.

mod common;

use common::logit_checks::{first_generated, floats, greedy, max_abs_diff, top_two};
use common::tiny_families::launch_from_path;
use common::{run_python, token_ids as ids, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xinference::llm::LlmEngine;

/// Largest tolerated |logit - transformers' logit| (both in f32).
const LOGIT_TOLERANCE: f32 = 1e-4;

/// [`LOGIT_TOLERANCE`], or twice transformers' own f32 error on the case (its f32 logits
/// against the same weights in f64, recorded where the fixture script measured it) when a
/// prompt is sensitive enough for that to be larger (qwen35moe-vl's short prompt: 1.9e-4).
fn case_tolerance(case: &Value) -> f32 {
    let own_error = case["transformers_f32_error"].as_f64().unwrap_or(0.0) as f32;
    LOGIT_TOLERANCE.max(2.0 * own_error)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-safetensors")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Checks one family's folder; returns its worst logit difference.
fn check(model: &Value) -> f32 {
    let arch = model["arch"].as_str().unwrap();
    let dir = fixtures().join(model["folder"].as_str().unwrap());
    let mut engine =
        LlmEngine::load_safetensors(&dir, None, &[], &[]).unwrap_or_else(|e| panic!("{arch}: {e}"));
    assert_eq!(engine.architecture(), model["model_type"].as_str().unwrap());
    let mut worst = 0f32;
    for case in model["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["greedy_ids"]);
        let (logits, tokens) = greedy(&mut engine, &prompt, expected.len());
        let diff = max_abs_diff(&logits, &floats(&case["last_logits"]));
        println!(
            "{arch:9} {} {name:12} prompt {:2}: max |logit diff| {diff:.2e}, greedy identical: {}",
            model["dtype"].as_str().unwrap(),
            prompt.len(),
            tokens == expected
        );
        worst = worst.max(diff);
        let tolerance = case_tolerance(case);
        assert!(
            diff < tolerance,
            "{arch} {name}: logits differ by {diff} (tolerance {tolerance})"
        );
        assert_eq!(tokens, expected, "{arch} {name}: greedy tokens");
        if prompt.len() >= 4 {
            let half = prompt.len() / 2;
            engine.forward_for_bench(&prompt[..half], 0);
            let split = engine.forward_for_bench(&prompt[half..], half);
            let d = max_abs_diff(&split, &logits);
            assert!(d < 1e-5, "{arch} {name}: chunked prefill differs by {d}");
        }
        let mut fork = engine.fork().expect("safetensors models fork");
        let (forked, forked_tokens) = greedy(&mut fork, &prompt, expected.len());
        assert_eq!(forked, logits, "{arch} {name}: fork logits");
        assert_eq!(forked_tokens, tokens, "{arch} {name}: fork tokens");
    }
    worst
}

#[test]
fn every_family_matches_transformers_in_f32() {
    let reference = reference();
    let models = reference["models"].as_array().unwrap();
    let mut worst = 0f32;
    let mut failures = Vec::new();
    for model in models {
        let arch = model["arch"].as_str().unwrap().to_owned();
        match std::panic::catch_unwind(|| check(model)) {
            Ok(w) => worst = worst.max(w),
            Err(_) => failures.push(arch),
        }
    }
    println!(
        "worst max |logit diff| over all families: {worst:.2e} (tolerance {LOGIT_TOLERANCE:e}, \
         or twice transformers' own f32 error where recorded)"
    );
    assert!(failures.is_empty(), "families that differ: {failures:?}");
    let archs: Vec<&str> = models.iter().map(|m| m["arch"].as_str().unwrap()).collect();
    for want in [
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma3",
        "smollm3",
        "phi3",
        "glm4",
        "qwen3moe",
        "glm4moe",
        "gpt-oss",
        "qwen35",
        "qwen35-vl",
        "qwen35moe",
        "qwen35moe-vl",
        "gemma3-vl",
        "gemma4",
        "gemma4moe",
        "gemma4-vl",
        "gemma4-unified-vl",
    ] {
        assert!(archs.contains(&want), "no fixture for {want}");
    }
}

/// Checkpoints launch under the registry's pytorch specs with `model_path` (Gemma 4 in E2B's
/// layout, in 26B-A4B's and as its vision-language release; Qwen3.5 MoE as released) and chat
/// over HTTP with the official `openai` client.
#[tokio::test]
async fn checkpoints_launch_by_registry_name_and_chat_with_the_openai_client() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    for (folder, name, size) in [
        ("gemma4", "gemma-4", 2),
        ("gemma4moe", "gemma-4", 26),
        ("gemma4-vl", "gemma-4", 2),
        ("gemma4-unified-vl", "gemma-4", 12),
        ("qwen35moe-vl", "qwen3.5", 35),
    ] {
        let uid = format!("tiny-st-{folder}");
        let spec = json!({
            "model_uid": uid,
            "model_name": name,
            "model_engine": "Transformers",
            "model_format": "pytorch",
            "model_size_in_billions": size,
            "quantization": "none",
        });
        launch_from_path(&server.url, &fixtures().join(folder), spec).await;
        let out = run_python("openai_tiny_chat.py", &[&server.url, &uid]).await;
        assert!(out.contains("openai tiny chat: ok"), "{folder}: {out}");
        let r = reqwest::Client::new()
            .delete(format!("{}/v1/models/{uid}", server.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{folder}: terminate");
    }
    server.stop().await;
}

/// The model's `suppress_tokens` (generation_config.json; GGUF `tokenizer.ggml.suppress_tokens`)
/// are never generated, as llama.cpp's sampler and transformers' `generate` leave them out: with
/// the token greedy decoding picks first suppressed, the engine picks transformers' second
/// choice.
#[test]
fn suppressed_tokens_are_never_generated() {
    let reference = reference();
    let model = reference["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["arch"] == "gemma4-unified-vl")
        .unwrap();
    let case = &model["cases"][0];
    let prompt = ids(&case["prompt_ids"]);
    let (first, second) = top_two(&floats(&case["last_logits"]));
    assert_eq!(first, ids(&case["greedy_ids"])[0]);
    // The fixture folder with `suppress_tokens` naming the greedy choice.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join("gemma4-unified-vl")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let config_path = dir.path().join("generation_config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["suppress_tokens"] = json!([first]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut engine = LlmEngine::load_safetensors(dir.path(), None, &[], &[]).unwrap();
    let token = first_generated(&mut engine, &prompt);
    assert_eq!(token, second, "first choice {first} is suppressed");
}
