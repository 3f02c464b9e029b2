//! What the parity tests against recorded reference logits share: reading the recorded numbers,
//! comparing them, greedy decoding through the engine, and the tiny GGUF fixtures' folder.

use serde_json::Value;
use std::path::{Path, PathBuf};
use xinference::llm::{argmax, GenerateOptions, LlmEngine, SamplingParams};

/// tests/fixtures/tiny-gguf: one folder per architecture (scripts/fixtures/make_tiny_ggufs.py).
pub fn tiny_gguf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gguf")
}

/// llama.cpp's record for the tiny GGUFs of `arch` (`reference.json` in its folder).
pub fn tiny_gguf_reference(arch: &str) -> Value {
    let path = tiny_gguf_dir().join(arch).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (make it with scripts/fixtures/make_tiny_ggufs.py {arch})",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// A recorded JSON array of numbers as f32.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The largest |a - b| over two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The ids of the highest and the second highest of `logits`.
pub fn top_two(logits: &[f32]) -> (u32, u32) {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    (order[0] as u32, order[1] as u32)
}

/// The token the engine's own generation loop picks first for `prompt`, greedily (sampler,
/// suppressed tokens and all).
pub fn first_generated(engine: &mut LlmEngine, prompt: &[u32]) -> u32 {
    let options = GenerateOptions {
        max_tokens: Some(1),
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let out = engine.generate(prompt, &options, &mut |_| true).unwrap();
    out.tokens[0]
}

/// Greedy decoding with the KV cache: the prompt in one pass, then one token a step. Returns
/// the prompt's last logits and the `n` greedy tokens.
pub fn greedy(engine: &mut LlmEngine, prompt: &[u32], n: usize) -> (Vec<f32>, Vec<u32>) {
    let first = engine.forward_for_bench(prompt, 0);
    let mut logits = first.clone();
    let mut out = Vec::new();
    for step in 0..n {
        let next = argmax(&logits);
        out.push(next);
        if step + 1 < n {
            logits = engine.forward_for_bench(&[next], prompt.len() + step);
        }
    }
    (first, out)
}
