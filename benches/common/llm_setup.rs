//! What the LLM benches (`llm`, `llm_batch`, `llm_context`) set up alike: the compute threads,
//! the test-models folder and the GGUF files to run. Included with `#[path]` by each bench.

use std::path::{Path, PathBuf};

/// Threads every LLM bench runs with (the peer gets the same).
pub const THREADS: usize = 2;

/// Sizes the compute threads as the server does at start (`RAYON_NUM_THREADS`, which candle
/// 0.11 reads, included), `THREADS` unless the environment says otherwise.
pub fn configure_threads() {
    xinference::compute::configure_threads(Some(THREADS));
}

/// The test-models folder: `XINFERENCE_TEST_MODELS`, else `~/.cache/xinference-rs/test-models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/xinference-rs/test-models")
        })
}

/// The GGUF files to run: `XINFERENCE_BENCH_LLM_FILES` (comma-separated names in the
/// test-models folder), else `defaults`.
pub fn llm_files(defaults: &[&str]) -> Vec<String> {
    match std::env::var("XINFERENCE_BENCH_LLM_FILES") {
        Ok(list) => list.split(',').map(|f| f.trim().to_string()).collect(),
        Err(_) => defaults.iter().map(|f| f.to_string()).collect(),
    }
}

/// llama.cpp's figures for the GGUF at `path`: `scripts/bench_llama_cpp.py` run with `args`
/// (after `--threads THREADS`) by the Python `XINFERENCE_BENCH_PEER_PYTHON` names, its JSON
/// line; `None` without that variable or when the script fails (its error is printed).
#[allow(dead_code)] // `llm_batch` runs no peer
pub fn peer(path: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let python = std::env::var_os("XINFERENCE_BENCH_PEER_PYTHON")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_llama_cpp.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(path)
        .args(["--threads", &THREADS.to_string()])
        .args(args)
        .output()
        .expect("peer runs");
    if !out.status.success() {
        eprintln!(
            "llama.cpp peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
