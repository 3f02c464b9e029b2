//! Our decoder against llama.cpp on the real SmolLM2-135M (Q4_1) and Qwen2.5-coder-0.5B (Q4_K_M)
//! GGUFs: the same rendered chat prompt and prompt token ids; teacher-forced over the prompt and
//! llama.cpp's greedy continuation, every logit of llama.cpp's top 8 at every position within a
//! per-model tolerance of llama.cpp's own; and our greedy tokens identical to llama.cpp's up to
//! the first step where llama.cpp's own top two logits are within [`NEAR_TIE`]. Fixtures:
//! tests/fixtures/llama_cpp_greedy.json (scripts/fixtures/record_llama_cpp_greedy.py) and
//! tests/fixtures/llama_cpp_logits.json (scripts/fixtures/record_llama_cpp_logits.py).

mod common;

use common::llama_logits;
use common::token_ids as ids;

use serde_json::Value;
use xinference::llm::{GenerateOptions, LlmEngine, SamplingParams};

fn check_model(model: &Value, tolerance: f32) {
    let logits = llama_logits::fixture();
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
    let mut failures = Vec::new();
    let (mut compared, mut agreed) = (0, 0);
    let mut worst_all = 0f32;
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
        let comparison =
            llama_logits::compare(&mut engine, llama_logits::case(&logits, file, &prompt_ids));
        let (worst, at) = comparison.worst();
        let decisive = comparison.decisive(NEAR_TIE);
        let same = generated
            .tokens
            .iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count();
        println!(
            "{file} {name}: logits within {worst:.4} of llama.cpp's (at position {at} of {}; {:.4} from the last prompt token on, prompt {}); {same}/{} tokens agree ({decisive} before the first near-tie; teacher-forced, our argmax is llama.cpp's for {}); ours {:?}",
            comparison.gaps.len(),
            comparison.worst_step(),
            prompt_ids.len(),
            expected.len(),
            comparison.forced_agree,
            generated.text
        );
        worst_all = worst_all.max(worst);
        failures.extend((worst > tolerance).then(|| {
            format!("{file} {name}: a logit is {worst} from llama.cpp's at position {at} (tolerance {tolerance})")
        }));
        failures.extend((same < decisive).then(|| {
            format!(
                "{file} {name}: greedy tokens differ at {same}, before llama.cpp's first near-tie at {decisive}\nours   {:?}\ntheirs {expected:?}",
                generated.tokens
            )
        }));
        compared += decisive;
        agreed += same;
    }
    println!("{file}: {agreed} tokens agree in all; {compared} had to; largest logit difference {worst_all:.4} (tolerance {tolerance})");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Logit gap under which llama.cpp's greedy choice is a near-tie.
const NEAR_TIE: f32 = 0.1;

/// Largest allowed |our logit - llama.cpp's| over llama.cpp's top 8 at any position,
/// teacher-forced: SmolLM2-135M Q4_1 (Q8_0 tied output). Measured 0.823 at worst (c_fibonacci,
/// position 58, after the prompt; 0.66, 0.60, 0.63 and 0.50 in the other cases), since the
/// attention's weighted sum, its softmax and SwiGLU round as llama.cpp's do (kernels::attention,
/// kernels::silu_mul_ggml): our prompt pass is now bit for bit llama.cpp's batched one, every
/// layer (1.403 on main, d_multi_turn position 26; 1.201 with only the norms and rotary as
/// llama.cpp's). What is left: teacher-forced, every position
/// here is a one-token step, and llama.cpp's one-token steps sum attention's two products in
/// another order (`ggml_vec_dot_f16`: four running sums of eight lanes) than its batched ones
/// (tinyBLAS, which ours follow for every row count, so that a prompt fed in parts keeps its
/// bits); SmolLM2's Q8_1 activation roundings amplify such last-bit differences.
/// Candle's `QMatMul` (`XINFERENCE_QUANT_KERNELS=0`): see the commit.
const TOLERANCE_Q4_1: f32 = 1.5;
/// As [`TOLERANCE_Q4_1`], for Qwen2.5-coder-0.5B Q4_K_M (Q5_0, Q4_K, Q6_K and Q8_0 tensors):
/// measured 0.341 at worst (d_multi_turn, position 79), 0.34 from the last prompt token on
/// (0.557 before the attention and SwiGLU rounded as llama.cpp's).
const TOLERANCE_Q4_K_M: f32 = 0.6;

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
    check_model(model, TOLERANCE_Q4_1);
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
    check_model(model, TOLERANCE_Q4_K_M);
}
