//! What the tiny-fixture family tests share (`llm_gguf_families`, `llm_gguf_moe`,
//! `llm_gguf_hybrid`, `llm_gemma4_chat`): checking a GGUF file's recorded prompts against
//! llama.cpp's logits and greedy tokens, and launching a fixture by a registry name to chat with
//! the official `openai` client over HTTP.

use super::logit_checks::{floats, greedy, max_abs_diff};
use super::{run_python, token_ids};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use xinference::llm::LlmEngine;

/// How many greedy steps to compare, of `margins.len()`: those before the first step whose
/// top-2 logit gap (in llama.cpp) is under `tie`, and that step too when `with_tie` (a near-tie
/// may go either way; the step after it continues from another token).
pub fn decisive_steps(margins: &[f32], tie: f32, with_tie: bool) -> usize {
    margins
        .iter()
        .position(|&m| m < tie)
        .map_or(margins.len(), |i| if with_tie { i + 1 } else { i })
}

/// One recorded prompt, as [`check_cases`] ran it.
pub struct CheckedCase<'a> {
    /// llama.cpp's record of the prompt.
    pub case: &'a Value,
    /// Its name.
    pub name: &'a str,
    /// Its token ids.
    pub prompt: Vec<u32>,
    /// Our logits after the prompt.
    pub logits: Vec<f32>,
}

/// Checks every prompt of llama.cpp's `record` of one file (`file`, `cases[]` with
/// `prompt_ids`, `greedy_ids`, `greedy_margins`, `last_logits`) on `engine`: the prompt's last
/// logits within `tol` of llama.cpp's, and the greedy tokens identical over the first
/// `steps(margins)`. Prints a line per prompt; `each` sees every prompt after its checks (for
/// comparisons of its own). Returns the worst logit difference.
pub fn check_cases(
    engine: &mut LlmEngine,
    arch: &str,
    record: &Value,
    tol: f32,
    steps: impl Fn(&[f32]) -> usize,
    mut each: impl FnMut(&CheckedCase<'_>),
) -> f32 {
    let file = record["file"].as_str().unwrap();
    let mut worst = 0.0f32;
    for case in record["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = token_ids(&case["prompt_ids"]);
        let expected = token_ids(&case["greedy_ids"]);
        let (logits, tokens) = greedy(engine, &prompt, expected.len());
        let diff = max_abs_diff(&logits, &floats(&case["last_logits"]));
        let upto = steps(&floats(&case["greedy_margins"])).min(expected.len());
        println!(
            "{arch:9} {file:18} {name:12} ({:3} tokens) max |logit diff| {diff:.2e} \
             (tolerance {tol:.2}); greedy {upto}/{} compared, identical: {}",
            prompt.len(),
            expected.len(),
            tokens[..upto] == expected[..upto]
        );
        worst = worst.max(diff);
        assert!(
            diff < tol,
            "{arch}/{file} {name}: logits differ from llama.cpp's by {diff}"
        );
        assert_eq!(
            tokens[..upto],
            expected[..upto],
            "{arch}/{file} {name}: greedy tokens differ from llama.cpp's"
        );
        each(&CheckedCase {
            case,
            name,
            prompt,
            logits,
        });
    }
    worst
}

/// Launches the GGUF at `path` over HTTP as the registry family `name` (a spec of `size`
/// billions with `quantization`: `model_path` names the file, the spec only has to exist),
/// chats with it through the official `openai` client (tests/python/openai_tiny_chat.py), and
/// terminates it.
pub async fn launch_and_chat(
    url: &str,
    uid: &str,
    name: &str,
    size: Value,
    quantization: &str,
    path: &Path,
) {
    let spec = json!({
        "model_uid": uid,
        "model_name": name,
        "model_size_in_billions": size,
        "quantization": quantization,
    });
    launch_from_path(url, path, spec).await;
    let client = reqwest::Client::new();
    let out = run_python("openai_tiny_chat.py", &[url, uid]).await;
    assert!(
        out.contains("openai tiny chat: ok"),
        "{uid} as {name}: {out}"
    );
    println!("{uid} as {name} {size}: {}", out.trim());
    let r = client
        .delete(format!("{url}/v1/models/{uid}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{uid} as {name}: terminate");
}

/// Launches the model at `path` on the server at `url` as Xinference's `llama.cpp` engine
/// (`ggufv2`) with `spec`'s fields (`model_name`, `model_size_in_billions`, `quantization`,
/// `model_uid` when given; `model_engine` / `model_format` too: `Transformers` / `pytorch` for a
/// safetensors folder); asserts a 200 and returns the answer (it names the `model_uid`).
pub async fn launch_from_path(url: &str, path: &Path, spec: Value) -> Value {
    let mut body = json!({
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_path": path,
    });
    for (key, value) in spec.as_object().expect("a spec is an object") {
        body[key] = value.clone();
    }
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/models"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "launch {body}: {v}");
    v
}
