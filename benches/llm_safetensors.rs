//! Our safetensors path (the `Transformers` engine: Hugging Face folders, computed in f32)
//! beside transformers on the same folders, the same threads, in the same run: prefill
//! tokens/s for 128- and 512-token prompts, time to first token, decode tokens/s over 128
//! greedy tokens, timed as `benches/llm.rs` times the GGUF path (an untimed warm-up, then
//! medians of three).
//!
//! The folders have the configurations of SmolLM2-135M-Instruct (llama) and
//! Qwen2.5-0.5B-Instruct (qwen2), random weights stored in bf16 as the released checkpoints
//! are (the hubs are unreachable here; speed does not depend on the values), written once
//! under `~/.cache/xinference-rs/bench-models/` by `scripts/bench_transformers_llm.py make`,
//! which also times transformers (`time`: the folder loaded in f32, as our path computes).
//! `XINFERENCE_BENCH_PEER_PYTHON` names a Python with torch and transformers (the refvenv of
//! scripts/fixtures/make_tiny_safetensors.py); without it (once the folders exist) only our
//! side runs, for A/B runs of one's own change.
//!
//!     CANDLE_NUM_THREADS=2 XINFERENCE_BENCH_PEER_PYTHON=~/.cache/xinference-rs/refvenv/bin/python \
//!         cargo bench --bench llm_safetensors
//!
//! `XINFERENCE_BENCH_SAFETENSORS_SHAPES` (comma-separated: `smollm2-135m`, `qwen2.5-0.5b`)
//! picks the shapes. Not a test: it asserts nothing about speed.

#[path = "common/llm_timing.rs"]
mod timing;

use std::path::{Path, PathBuf};
use std::process::Command;
use xinference::llm::LlmEngine;

const SHAPES: [&str; 2] = ["smollm2-135m", "qwen2.5-0.5b"];
/// Threads of both sides.
const THREADS: usize = 2;

/// The prompt of `n` ids the peer script feeds too (`prompt_ids` there).
fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| (7 + (i * 7919) % (vocab - 7)) as u32)
        .collect()
}

fn peer_python() -> Option<PathBuf> {
    std::env::var_os("XINFERENCE_BENCH_PEER_PYTHON").map(PathBuf::from)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_transformers_llm.py")
}

/// The folder of `shape`, written by the peer script the first time.
fn folder(shape: &str) -> PathBuf {
    let dir = PathBuf::from(std::env::var("HOME").expect("HOME"))
        .join(".cache/xinference-rs/bench-models")
        .join(shape);
    if !dir.join("model.safetensors").is_file() {
        let python = peer_python().expect(
            "XINFERENCE_BENCH_PEER_PYTHON must name a Python with torch and transformers \
             (python3 -m venv refvenv && refvenv/bin/pip install torch transformers==5.24.0 \
             safetensors tokenizers) to write the model folders",
        );
        let status = Command::new(python)
            .arg(script())
            .args(["make", shape])
            .arg(&dir)
            .status()
            .expect("the peer script runs");
        assert!(status.success(), "making the {shape} folder failed");
    }
    dir
}

/// Prefill 128 and 512 tokens/s, time to first token (s), decode tokens/s.
fn ours(dir: &Path, vocab: usize) -> [f64; 4] {
    let mut engine = LlmEngine::load_safetensors(dir, None, &[], &[]).expect("loads");
    let (p128, p512) = (prompt_ids(128, vocab), prompt_ids(512, vocab));
    timing::time_engine(&mut engine, &p128, &p512)
}

/// transformers' figures for the folder, in [`ours`]' order (`None` without a peer Python:
/// ours alone, for A/B runs of one's own change).
fn theirs(dir: &Path) -> Option<[f64; 4]> {
    let out = Command::new(peer_python()?)
        .arg(script())
        .arg("time")
        .arg(dir)
        .args(["--threads", &THREADS.to_string()])
        .output()
        .expect("the peer script runs");
    assert!(
        out.status.success(),
        "transformers peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peer JSON");
    eprintln!("peer: {v}");
    Some(
        [
            "prefill_128_tps",
            "prefill_512_tps",
            "ttft_128_s",
            "decode_tps",
        ]
        .map(|k| v[k].as_f64().expect("peer figure")),
    )
}

fn main() {
    // As the server does at start.
    xinference::compute::configure_threads(Some(THREADS));
    println!("| model (random weights, bf16 file) | measure | xinference-rs | transformers f32 | ratio |");
    println!("|---|---|---|---|---|");
    let picked = std::env::var("XINFERENCE_BENCH_SAFETENSORS_SHAPES").ok();
    for shape in SHAPES {
        if picked
            .as_deref()
            .is_some_and(|p| !p.split(',').any(|s| s.trim() == shape))
        {
            continue;
        }
        let dir = folder(shape);
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).expect("config.json"),
        )
        .expect("config JSON");
        let vocab = config["vocab_size"].as_u64().expect("vocab_size") as usize;
        let ours = ours(&dir, vocab);
        let theirs = theirs(&dir);
        let names = [
            "prefill 128 tok/s",
            "prefill 512 tok/s",
            "time to first token (128) ms",
            "decode tok/s",
        ];
        for (i, name) in names.iter().enumerate() {
            // Time to first token: lower is better, so the ratio is theirs / ours.
            let scale = if i == 2 { 1e3 } else { 1.0 };
            let (peer, ratio) = match theirs {
                Some(t) if i == 2 => (format!("{:.1}", t[i] * scale), t[i] / ours[i]),
                Some(t) => (format!("{:.1}", t[i]), ours[i] / t[i]),
                None => ("-".into(), f64::NAN),
            };
            println!(
                "| {shape} | {name} | {:.1} | {peer} | {ratio:.2}x |",
                ours[i] * scale
            );
        }
    }
}
