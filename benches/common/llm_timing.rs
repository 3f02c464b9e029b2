//! How the LLM benches time an engine, as `scripts/bench_llama_cpp.py` times llama.cpp and
//! `scripts/bench_transformers_llm.py` times transformers: an untimed warm-up (a 512-token
//! prefill and a few decode steps), then medians of three. Included with `#[path]`.

use std::time::Instant;
use xinference::llm::{argmax, LlmEngine};

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prefill tokens/s of `p128` and of `p512`, time to first token of `p128` (prefill and the
/// greedy pick, seconds), and decode tokens/s over 128 greedy steps after `p128`.
pub fn time_engine(engine: &mut LlmEngine, p128: &[u32], p512: &[u32]) -> [f64; 4] {
    let mut logits = engine.forward_for_bench(p512, 0);
    for i in 0..8 {
        let next = argmax(&logits);
        logits = engine.forward_for_bench(&[next], p512.len() + i);
    }
    let mut timed = |ids: &[u32], pick: bool| {
        median(
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    let logits = engine.forward_for_bench(ids, 0);
                    if pick {
                        std::hint::black_box(argmax(&logits));
                    }
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let prefill_128 = timed(p128, false);
    let prefill_512 = timed(p512, false);
    let ttft = timed(p128, true);
    let decode = median(
        (0..3)
            .map(|_| {
                let mut logits = engine.forward_for_bench(p128, 0);
                let t = Instant::now();
                for i in 0..128 {
                    let next = argmax(&logits);
                    logits = engine.forward_for_bench(&[next], p128.len() + i);
                }
                128.0 / t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    [128.0 / prefill_128, 512.0 / prefill_512, ttft, decode]
}
