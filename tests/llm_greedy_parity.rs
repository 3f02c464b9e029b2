//! Greedy decoding of the real SmolLM2-135M and Qwen2.5-coder-0.5B GGUFs matches llama.cpp:
//! the same rendered chat prompt, the same prompt token ids, and the same first 32 generated
//! tokens. Fixture: tests/fixtures/llama_cpp_greedy.json, recorded with llama-cpp-python by
//! scripts/fixtures/record_llama_cpp_greedy.py.

mod common;

use common::token_ids as ids;

use serde_json::Value;
use xinference::llm::{GenerateOptions, LlmEngine, SamplingParams};

fn check_model(model: &Value) {
    let file = model["file"].as_str().unwrap();
    let path = common::test_models_dir().join(file);
    assert!(
        path.exists(),
        "{} is missing. Fix: run `python3 scripts/fetch-test-models.py smollm2 qwen`",
        path.display()
    );
    let mut engine = LlmEngine::load_gguf(&path, None, &[], &[]).unwrap();
    assert_eq!(
        engine.architecture(),
        model["architecture"].as_str().unwrap()
    );
    let mut report = Vec::new();
    let (mut compared, mut agreed) = (0, 0);
    for case in model["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let messages: Vec<Value> = case["messages"].as_array().unwrap().clone();
        let prompt = engine
            .render_chat(&messages, None, &Default::default())
            .unwrap();
        assert_eq!(
            prompt,
            case["prompt"].as_str().unwrap(),
            "{file} {name}: rendered prompt differs"
        );
        let prompt_ids = engine.tokenize(&prompt).unwrap();
        assert_eq!(
            prompt_ids,
            ids(&case["prompt_ids"]),
            "{file} {name}: prompt tokens differ"
        );
        let options = GenerateOptions {
            max_tokens: Some(32),
            sampling: SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let generated = engine
            .generate(&prompt_ids, &options, &mut |_| true)
            .unwrap();
        let expected = ids(&case["generated_ids"]);
        // Where llama.cpp's top two logits are within NEAR_TIE of each other, the choice depends
        // on rounding (llama.cpp quantizes activations to 8 bits in its dot products; candle
        // does not), and the continuations may legitimately part. Up to the first such step the
        // tokens must be identical.
        let margins: Vec<f64> = case["logit_margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        let decisive = margins
            .iter()
            .position(|&m| m < NEAR_TIE)
            .map_or(expected.len(), |i| i + 1);
        let same = generated
            .tokens
            .iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count();
        report.push(format!(
            "{file} {name}: {same}/{} tokens agree ({decisive} before the first near-tie); ours {:?}",
            expected.len(),
            generated.text
        ));
        assert!(
            same >= decisive.min(expected.len()),
            "{file} {name}: greedy tokens differ at {same}, before llama.cpp's first near-tie at {decisive}\nours   {:?}\ntheirs {expected:?}",
            generated.tokens
        );
        compared += decisive.min(expected.len());
        agreed += same;
    }
    println!("{}", report.join("\n"));
    println!("{file}: {agreed} tokens agree in all; {compared} had to");
}

/// Logit gap under which llama.cpp's greedy choice is a near-tie.
const NEAR_TIE: f64 = 0.1;

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama_cpp_greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    let f = fixture();
    let model = f["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["architecture"] == "llama")
        .unwrap();
    check_model(model);
}

#[test]
fn qwen25_coder_greedy_matches_llama_cpp() {
    let f = fixture();
    let model = f["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["architecture"] == "qwen2")
        .unwrap();
    check_model(model);
}
