//! What one batched decode pass costs against single-sequence steps, in process, on real
//! GGUFs: for 1, 2, 4 and 8 sequences of ~150 positions, the milliseconds of one
//! `decode_batch` pass and the tokens/s it gives, beside the same sequences stepped one at a
//! time, and the process's CPU milliseconds per token in those passes (all threads: on a
//! loaded machine a steadier figure than the wall time). The ratio "4 rows / 1 row" is what continuous batching can gain at most.
//!
//!     CANDLE_NUM_THREADS=2 cargo bench --bench llm_batch
//!
//! `XINFERENCE_BENCH_LLM_FILES` (comma-separated file names in the test-models folder) picks
//! the models, by default SmolLM2 and Qwen2.5-coder; `XINFERENCE_BENCH_SEQUENCES` the batch
//! sizes (default `1,2,4,8`; the first is the reference), `XINFERENCE_BENCH_STEPS` the passes
//! timed per size (default 16). `XINFERENCE_BENCH_VARIANTS=a,b` times each pass once per
//! variant, alternating, with `XINFERENCE_EXP` set to the variant's name (for A/B of an
//! experimental switch in one run). Not a test: it asserts nothing.

#[path = "common/llm_setup.rs"]
mod setup;

use std::time::Instant;
use xinference::llm::{argmax, load_gguf, CausalLm, DecodeStep};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `n` sequences, each with its own ~`len`-token prompt fed, as decode steps.
fn sequences(model: &dyn CausalLm, n: usize, len: usize) -> Vec<DecodeStep> {
    (0..n)
        .map(|i| {
            let mut fork = model.fork().expect("fork");
            let prompt: Vec<u32> = (0..len as u32)
                .map(|t| 100 + (t * 13 + i as u32) % 5000)
                .collect();
            let logits = fork.forward(&prompt, 0).expect("prompt");
            DecodeStep {
                tokens: vec![argmax(&logits)],
                kv: fork.kv_state(len).expect("kv"),
            }
        })
        .collect()
}

fn main() {
    setup::configure_threads();
    let models = setup::models_dir();
    let files = setup::llm_files(&[
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ]);
    let steps: usize = std::env::var("XINFERENCE_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let counts: Vec<usize> = std::env::var("XINFERENCE_BENCH_SEQUENCES")
        .ok()
        .map(|l| l.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8]);
    println!("| model | sequences | ms per pass | tokens/s | x one sequence | CPU ms per token |");
    println!("|---|---|---|---|---|---|");
    for file in files {
        let parts = load_gguf(&models.join(&file)).expect("load");
        let model = parts.model;
        let mut single = 0.0;
        let variants: Vec<String> = std::env::var("XINFERENCE_BENCH_VARIANTS")
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_else(|_| vec![String::new()]);
        for &n in &counts {
            let mut batches: Vec<Vec<DecodeStep>> = variants
                .iter()
                .map(|_| sequences(&*model, n, 150))
                .collect();
            let mut times = vec![Vec::new(); variants.len()];
            let mut cpu = vec![0.0; variants.len()];
            for _ in 0..steps {
                for (v, variant) in variants.iter().enumerate() {
                    std::env::set_var("XINFERENCE_EXP", variant);
                    let batch = &mut batches[v];
                    let (t, c) = (Instant::now(), xinference::compute::process_cpu_seconds());
                    let logits = model.decode_batch(batch).expect("pass").expect("batches");
                    times[v].push(t.elapsed().as_secs_f64());
                    cpu[v] += xinference::compute::process_cpu_seconds() - c;
                    for (s, l) in batch.iter_mut().zip(&logits) {
                        s.tokens = vec![argmax(l)];
                    }
                }
            }
            for ((variant, times), cpu) in variants.iter().zip(times).zip(cpu) {
                let ms = median(times) * 1000.0;
                // CPU time per token (less sensitive to other processes than the wall time).
                let cpu_ms = cpu * 1000.0 / (steps * n) as f64;
                let tps = n as f64 / ms * 1000.0;
                if single == 0.0 {
                    single = tps / n as f64;
                }
                println!(
                    "| {file} {variant} | {n} | {ms:.1} | {tps:.1} | {:.2}x | {cpu_ms:.2} |",
                    tps / single
                );
            }
        }
    }
}
