//! Decode speed by context length, in process: tokens/s of 64 greedy decode steps after a
//! prompt of 16 tokens and after one of 1,000 tokens, where attention over the KV cache is a
//! visible share of a step. Two threads, like `benches/llm.rs`; beside llama.cpp
//! (`scripts/bench_llama_cpp.py --contexts`, timed alike) when `XINFERENCE_BENCH_PEER_PYTHON`
//! names a Python that has `llama_cpp` installed.
//!
//!     CANDLE_NUM_THREADS=2 XINFERENCE_BENCH_PEER_PYTHON=/path/to/python \
//!     cargo bench --workspace --bench llm_context
//!
//! `XINFERENCE_BENCH_LLM_FILES` (comma-separated file names in the test-models folder) picks
//! the models; by default SmolLM2 and Qwen2.5-coder. `XINFERENCE_BENCH_ROUNDS` repeats each
//! measure (the median is printed; default 3).
//!
//! Not a test: it asserts nothing about speed.

#[path = "common/llm_setup.rs"]
mod setup;

use std::time::Instant;
use xinference::llm::{argmax, LlmEngine};

const STEPS: usize = 64;
/// Prompt lengths decode is timed after.
const CONTEXTS: [usize; 2] = [16, 1000];

/// Decode tokens/s of [`STEPS`] steps after a prompt of `context` tokens.
fn decode_tps(engine: &mut LlmEngine, context: usize) -> f64 {
    let text = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills. "
        .repeat(context);
    let mut ids = engine.tokenize(&text).expect("tokenize");
    ids.truncate(context);
    let mut logits = engine.forward_for_bench(&ids, 0);
    let t = Instant::now();
    for i in 0..STEPS {
        let next = argmax(&logits);
        logits = engine.forward_for_bench(&[next], ids.len() + i);
    }
    STEPS as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    setup::configure_threads();
    let models = setup::models_dir();
    let files = setup::llm_files(&[
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ]);
    let rounds: usize = std::env::var("XINFERENCE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!(
        "| model | context tokens | decode tok/s (median of {rounds}) | llama.cpp tok/s | ratio |"
    );
    println!("|---|---|---|---|---|");
    for file in &files {
        let path = models.join(file);
        assert!(
            path.exists(),
            "{} is missing. Fix: run `python3 scripts/fetch-test-models.py`",
            path.display()
        );
        let contexts: Vec<String> = CONTEXTS.iter().map(|c| c.to_string()).collect();
        let (gen, reps) = (STEPS.to_string(), rounds.to_string());
        let args = [
            "--gen",
            &gen,
            "--reps",
            &reps,
            "--contexts",
            &contexts.join(","),
        ];
        let theirs = setup::peer(&path, &args);
        let mut engine = LlmEngine::load_gguf(&path, None, &[], &[]).expect("load");
        decode_tps(&mut engine, CONTEXTS[0]); // untimed warm-up, as the peer's
        for context in CONTEXTS {
            let mut runs: Vec<f64> = (0..rounds)
                .map(|_| decode_tps(&mut engine, context))
                .collect();
            runs.sort_by(f64::total_cmp);
            let ours = runs[runs.len() / 2];
            let peer = theirs
                .as_ref()
                .and_then(|t| t["decode_after_tps"][context.to_string()].as_f64());
            println!(
                "| {file} | {context} | {ours:.1} | {} | {} |",
                peer.map_or("-".into(), |p| format!("{p:.1}")),
                peer.map_or("-".into(), |p| format!("{:.2}x", ours / p)),
            );
        }
    }
}
