//! Qwen3.5's hybrid GGUFs (`qwen35`, `qwen35moe`: Gated DeltaNet linear-attention blocks beside
//! gated full attention; the MoE one with a gated shared expert) compute what llama.cpp
//! computes: tiny random transformers models (tests/fixtures/tiny-gguf/qwen35{,moe}/, two blocks:
//! DeltaNet then full attention, four value heads over two key heads) converted with llama.cpp's
//! own convert_hf_to_gguf.py and quantized with llama-quantize by
//! scripts/fixtures/make_tiny_ggufs.py, which recorded llama.cpp's logits and greedy tokens and
//! transformers' own f32 logits of the same prompts into reference.json:
//! - the last-position logits of each prompt are within [`tolerance`] of llama.cpp's, in every
//!   quantization, and greedy tokens identical up to the first near-tie;
//! - the F16 file's logits are within [`TRANSFORMERS_F16`] of transformers' f32 ones (a check of
//!   the reference graph itself);
//! - each fixture launches by the registry names it serves (`qwen3.5`, `qwen3.6`, `qwen3.8`)
//!   with `model_path` and chats over HTTP with the official `openai` client.
//!
//! These random hybrid models amplify rounding more than the other tiny fixtures: their logits
//! span about ±50, and llama.cpp's own Q8_0 logits stand 3.3 from its F16 ones (Q4_0: 21), where
//! the other families' stand under 1 (5). The tolerances are set over what was measured.

mod common;

use common::logit_checks::{
    floats, max_abs_diff, tiny_gguf_dir as fixtures, tiny_gguf_reference as reference,
};
use common::tiny_families::{check_cases, decisive_steps, launch_and_chat};
use common::{token_ids as ids, TestServer};
use serde_json::{json, Value};
use xinference::llm::LlmEngine;

/// The hybrid architectures with fixtures.
const ARCHITECTURES: &[&str] = &["qwen35", "qwen35moe"];

/// Largest tolerated |logit - llama.cpp's| per weight type. Most files and prompts agree to
/// 1e-5 to 5e-5 (the DeltaNet recurrence included); measured worst: F16 0.0263 (qwen35moe chat;
/// 9.5e-6 on qwen35's 6-token prompt), Q8_0 0.347 (qwen35 text), Q4_0 0.758 (qwen35moe text),
/// Q4_K_M 0.454 (qwen35 chat), Q6_K 3e-5. Both sides round every product's activations (f16
/// for F16 weights, 8 bits for the others): on these models one such rounding landing on the
/// other side moves the logits by tenths.
fn tolerance(file: &str) -> f32 {
    match file {
        f if f.contains("F16") => 3e-2,
        f if f.contains("Q8_0") => 0.5,
        _ => 1.0,
    }
}

/// Greedy steps whose top-2 gap (in llama.cpp) is below this may go either way: 0.05 for F16,
/// half the logit tolerance for the quantized files.
fn near_tie(tolerance: f32) -> f32 {
    0.05f32.max(tolerance / 2.0)
}

/// Largest tolerated |logit - transformers' f32 logit| of the F16 file (f16 weights, f16
/// activations for their products, an f16 KV cache). Measured worst 0.111 (llama.cpp's own:
/// 0.122).
const TRANSFORMERS_F16: f32 = 0.2;

/// Checks one GGUF file against llama.cpp's record (and the F16 file against transformers');
/// returns the worst logit difference.
fn check_file(arch: &str, record: &Value, transformers: &[Value]) -> f32 {
    let file = record["file"].as_str().unwrap();
    let path = fixtures().join(arch).join(file);
    let mut engine = LlmEngine::load_gguf(&path, None, &[], &[])
        .unwrap_or_else(|e| panic!("{arch}/{file}: {e}"));
    assert_eq!(engine.architecture(), arch);
    let tol = tolerance(file);
    let steps = |m: &[f32]| decisive_steps(m, near_tie(tol), false);
    check_cases(&mut engine, arch, record, tol, steps, |checked| {
        if !file.contains("F16") {
            return;
        }
        let name = checked.name;
        let hf = transformers
            .iter()
            .find(|t| t["name"] == checked.case["name"])
            .unwrap_or_else(|| panic!("{arch}: no transformers record of {name}"));
        assert_eq!(ids(&hf["prompt_ids"]), checked.prompt, "{arch} {name}");
        let theirs = floats(&hf["last_logits"]);
        let ours = max_abs_diff(&checked.logits, &theirs);
        let llama = max_abs_diff(&floats(&checked.case["last_logits"]), &theirs);
        println!(
            "{arch:9} {file:16} {name:12} vs transformers f32: ours {ours:.3}, \
             llama.cpp's {llama:.3} (tolerance {TRANSFORMERS_F16})"
        );
        assert!(
            ours < TRANSFORMERS_F16,
            "{arch} {name}: logits differ from transformers' by {ours}"
        );
    })
}

/// Every quantization of both hybrid fixtures against llama.cpp (and F16 against transformers).
#[test]
fn hybrid_logits_and_greedy_tokens_match_llama_cpp_in_every_quantization() {
    for arch in ARCHITECTURES {
        let reference = reference(arch);
        let files = reference["files"].as_array().unwrap();
        let names: Vec<&str> = files.iter().filter_map(|f| f["file"].as_str()).collect();
        for quant in ["F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K"] {
            assert!(
                names.contains(&format!("tiny-{quant}.gguf").as_str()),
                "{arch}: no {quant} record in {names:?} (rerun scripts/fixtures/make_tiny_ggufs.py \
                 {arch} after scripts/fixtures/build_llama_cpp.sh)"
            );
        }
        let transformers = reference["transformers_f32"]
            .as_array()
            .unwrap_or_else(|| panic!("{arch}: no transformers_f32 record"))
            .clone();
        for record in files {
            let worst = check_file(arch, record, &transformers);
            println!(
                "{arch} {}: worst max |logit diff| {worst:.2e}",
                record["file"]
            );
        }
    }
}

/// A chat's prompt, fed after a shorter stored prompt of the same chat, continues exactly as
/// the whole prompt fed at once: the engine's prefix cache restores the recurrent state only
/// where it was computed (for a prompt that extends it), and gives nothing for a prompt that
/// shares only a part of it (a recurrent state cannot be cut back).
#[test]
fn prefix_cache_reuses_recurrent_state_only_where_it_was_computed() {
    let path = fixtures().join("qwen35").join("tiny-Q8_0.gguf");
    let case = &reference("qwen35")["files"][0]["cases"][1];
    assert_eq!(case["name"], "chat");
    let prompt = ids(&case["prompt_ids"]);
    let mut whole = LlmEngine::load_gguf(&path, None, &[], &[]).unwrap();
    let expected = whole.forward_for_bench(&prompt, 0);
    let engine = LlmEngine::load_gguf(&path, None, &[], &[]).unwrap();
    let cache = engine
        .prefix_cache()
        .expect("our decoder has a prefix cache");
    engine.fork().unwrap().share_prompt(&prompt[..20]).unwrap();
    let hit = cache
        .lookup(&prompt)
        .expect("the stored prompt is a prefix");
    assert_eq!(hit.len, 20);
    let mut other = prompt[..12].to_vec();
    other.extend([5, 6, 7, 8, 9, 10, 11, 12]);
    assert!(
        cache.lookup(&other).is_none(),
        "a state cut back to 12 tokens was offered"
    );
    // The whole prompt resumes after the stored 20 tokens; its logits are the whole prompt's.
    engine.fork().unwrap().share_prompt(&prompt).unwrap();
    assert_eq!(engine.prefix_cache_stats().reused_tokens, 20);
    let again = cache.lookup(&prompt).expect("the whole prompt is stored");
    assert_eq!(again.len, prompt.len());
    assert_eq!(*again.logits.expect("with its logits"), expected);
}

/// The registry families each fixture serves, with a spec size that has a GGUF of it and one of
/// that spec's quantizations (`model_path` names the file; the spec only has to exist).
fn families(arch: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match arch {
        "qwen35" => &[
            ("qwen3.5", "9", "Q8_0"),
            ("qwen3.5", "0_8", "Q4_K_M"),
            ("qwen3.8", "27", "Q8_0"),
        ],
        "qwen35moe" => &[("qwen3.5", "35", "Q8_0"), ("qwen3.6", "35", "Q8_0")],
        other => panic!("no registry family for the fixture {other}"),
    }
}

#[tokio::test]
async fn each_hybrid_family_launches_by_name_and_chats_with_the_openai_client() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    for arch in ARCHITECTURES {
        for (name, size, quantization) in families(arch) {
            let uid = format!("tiny-{arch}-{}", name.replace('.', "-"));
            let size: Value = size.parse::<u32>().map_or(json!(size), |n| json!(n));
            let path = fixtures().join(arch).join("tiny-Q8_0.gguf");
            launch_and_chat(&server.url, &uid, name, size, quantization, &path).await;
        }
    }
    server.stop().await;
}
