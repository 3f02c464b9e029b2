//! LLM speed beside llama.cpp, on the same GGUF files, the same threads, in the same run:
//! prefill tokens/s for 128- and 512-token prompts, decode tokens/s over 128 tokens, time to
//! first token, RSS after launch (in a fresh process per model); and the decode speed of two models generating at once.
//! Then serving under load (ours only; llama.cpp's server is not part of this run): aggregate
//! decode tokens/s of 1, 2, 4 and 8 concurrent clients on one model (one slot each, decode
//! steps batched), and the time to first token of a second request that shares a
//! 1,000-token system prompt with the first (prefix cache). `XINFERENCE_BENCH_LLM_SERVING=only`
//! runs just those, `=skip` everything but those (and the two models at once).
//! The peer runs through `scripts/bench_llama_cpp.py` (llama-cpp-python) when
//! `XINFERENCE_BENCH_PEER_PYTHON` names a Python that has `llama_cpp` installed.
//!
//!     CANDLE_NUM_THREADS=2 XINFERENCE_BENCH_PEER_PYTHON=/path/to/python cargo bench --bench llm
//!
//! `XINFERENCE_BENCH_LLM_KTILES=only` runs just an A/B of the Q4_K / Q6_K prompt tiles: prefill
//! tokens/s at 128 and 512 tokens with the tiles on and off, alternating, in one run;
//! `XINFERENCE_BENCH_LLM_PANELS=only` the same for the panels of the small-block formats
//! (Q4_0 .. Q8_0, Q4_K, Q6_K; off: their tiles). `XINFERENCE_BENCH_LLM_PROFILE=N` runs only ten
//! prefills of N tokens per model (to profile them, e.g. under `perf record`).
//! `XINFERENCE_BENCH_LLM_FILES` (comma-separated file names in the test-models folder) picks
//! the models; by default SmolLM2, Qwen2.5-coder and Gemma 3 270M.
//!
//! Not a test: it asserts nothing about speed.

#[path = "common/llm_setup.rs"]
mod setup;
#[path = "common/llm_timing.rs"]
mod timing;

use std::path::{Path, PathBuf};
use std::time::Instant;
use xinference::llm::{argmax, GenerateOptions, LlmEngine, SamplingParams};

use timing::median;

fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A prompt of exactly `n` tokens (ordinary text, repeated).
fn prompt_tokens(engine: &LlmEngine, n: usize) -> Vec<u32> {
    let text = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills. "
        .repeat(n);
    let mut ids = engine.tokenize(&text).expect("tokenize");
    ids.truncate(n);
    ids
}

struct Ours {
    prefill_128: f64,
    prefill_512: f64,
    decode: f64,
    ttft_128: f64,
    rss_after_load: f64,
}

/// RSS right after loading `path` in a fresh process (this bench run again with
/// `XINFERENCE_BENCH_LLM_RSS_OF`), so that no earlier model's freed memory counts.
fn rss_after_load_in_fresh_process(path: &Path) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().expect("the bench binary"))
        .env(RSS_OF, path)
        .output()
        .expect("the bench runs again");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("rss_after_load_mb "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no RSS from the fresh process: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Set in the child process of [`rss_after_load_in_fresh_process`]: the model to load.
const RSS_OF: &str = "XINFERENCE_BENCH_LLM_RSS_OF";

fn measure(path: &Path) -> Ours {
    let rss_after_load = rss_after_load_in_fresh_process(path);
    let mut engine = LlmEngine::load_gguf(path, None, &[], &[]).expect("load");
    // Timed as scripts/bench_llama_cpp.py times llama.cpp (see `timing::time_engine`).
    let (p128_ids, p512_ids) = (prompt_tokens(&engine, 128), prompt_tokens(&engine, 512));
    let [prefill_128, prefill_512, ttft_128, decode] =
        timing::time_engine(&mut engine, &p128_ids, &p512_ids);
    Ours {
        prefill_128,
        prefill_512,
        decode,
        ttft_128,
        rss_after_load,
    }
}

/// Decode tokens/s of each of two models generating at once (two threads, one compute budget).
fn two_at_once(path: &Path) -> (f64, f64) {
    let run = |path: PathBuf| {
        std::thread::spawn(move || {
            let mut engine = LlmEngine::load_gguf(&path, None, &[], &[]).expect("load");
            let ids = prompt_tokens(&engine, 32);
            let mut logits = engine.forward_for_bench(&ids, 0);
            let t = Instant::now();
            for i in 0..64 {
                let next = argmax(&logits);
                logits = engine.forward_for_bench(&[next], ids.len() + i);
            }
            64.0 / t.elapsed().as_secs_f64()
        })
    };
    let a = run(path.to_path_buf());
    let b = run(path.to_path_buf());
    (a.join().unwrap(), b.join().unwrap())
}

/// Aggregate decode tokens/s of `clients` sequences generating 64 tokens each at once, each on
/// its own fork (slot) of one engine, from unique ~120-token prompts; and the mean batch.
fn clients_at_once(path: &Path, clients: usize) -> (f64, f64) {
    let engine = LlmEngine::load_gguf(path, None, &[], &[]).expect("load");
    let batcher = engine.batcher();
    let forks: Vec<LlmEngine> = (1..clients).map(|_| engine.fork().expect("fork")).collect();
    let start = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let t = Instant::now();
    let handles: Vec<_> = std::iter::once(engine)
        .chain(forks)
        .enumerate()
        .map(|(i, mut engine)| {
            let start = start.clone();
            std::thread::spawn(move || {
                // A unique ~120-token chat prompt that asks for a long answer.
                let question = format!("I am reader number {i}. ")
                    + &"Describe the rivers, hills and towns of the valley in detail. ".repeat(8)
                    + "Then tell a long story set there.";
                let messages = [serde_json::json!({"role": "user", "content": question})];
                // A base model without a chat template (Gemma 3 270M) gets the raw question.
                let text = engine
                    .render_chat(&messages, None, &Default::default())
                    .unwrap_or(question);
                let ids = engine.tokenize(&text).expect("tokenize");
                let options = GenerateOptions {
                    max_tokens: Some(64),
                    sampling: SamplingParams {
                        temperature: 0.0,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                start.wait();
                let g = engine
                    .generate(&ids, &options, &mut |_| true)
                    .expect("generate");
                g.completion_tokens
            })
        })
        .collect();
    let tokens: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = t.elapsed().as_secs_f64();
    let mean = batcher.map_or(1.0, |b| {
        let s = b.stats();
        s.steps as f64 / s.passes.max(1) as f64
    });
    (tokens as f64 / elapsed, mean)
}

/// Seconds to the first token of two requests sharing a 1,000-token system prompt (different
/// questions), the second served from the prefix cache.
fn shared_system_prompt(path: &Path) -> (f64, f64, usize) {
    let mut engine = LlmEngine::load_gguf(path, None, &[], &[]).expect("load");
    let system = prompt_tokens(&engine, 1000);
    let options = GenerateOptions {
        max_tokens: Some(1),
        ..Default::default()
    };
    let mut ttft = |question: &str| {
        let mut ids = system.clone();
        ids.extend(engine.tokenize(question).expect("tokenize"));
        let t = Instant::now();
        let g = engine
            .generate(&ids, &options, &mut |_| true)
            .expect("generate");
        (t.elapsed().as_secs_f64(), g.cached_tokens)
    };
    let (first, _) = ttft(" Question: how long is the river?");
    let (second, cached) = ttft(" Question: which town is largest?");
    (first, second, cached)
}

/// Prefill tokens/s at 128 and 512 tokens with a kernel switch (`set`) on and off,
/// alternating five times (the same bits either way; only the time differs).
fn switch_ab(path: &Path, file: &str, what: &str, set: fn(bool)) {
    let mut engine = LlmEngine::load_gguf(path, None, &[], &[]).expect("load");
    for n in [128, 512] {
        let ids = prompt_tokens(&engine, n);
        engine.forward_for_bench(&ids, 0);
        let mut times = [Vec::new(), Vec::new()];
        let mut logits = [Vec::new(), Vec::new()];
        for _ in 0..5 {
            for (i, on) in [true, false].into_iter().enumerate() {
                set(on);
                let t = Instant::now();
                logits[i] = engine.forward_for_bench(&ids, 0);
                times[i].push(t.elapsed().as_secs_f64());
            }
        }
        set(true);
        let same = logits[0] == logits[1];
        let [on, off] = times.map(median);
        println!(
            "| {file} | prefill {n} tok/s, {what} on / off | {:.1} / {:.1} ({:.2}x; logits {}) | | |",
            n as f64 / on,
            n as f64 / off,
            off / on,
            if same { "bit-identical" } else { "DIFFER" }
        );
    }
}

fn serving(models: &Path, file: &str) {
    let path = models.join(file);
    let mut single = 0.0;
    for clients in [1, 2, 4, 8] {
        let (tps, mean) = clients_at_once(&path, clients);
        if clients == 1 {
            single = tps;
        }
        println!(
            "| {file} | {clients} clients: aggregate decode tok/s | {tps:.1} ({:.2}x one client; mean batch {mean:.1}) | (not run) | |",
            tps / single
        );
    }
    let (first, second, cached) = shared_system_prompt(&path);
    println!(
        "| {file} | shared 1,000-token system prompt: time to first token, 1st / 2nd request | {:.0} ms / {:.0} ms ({:.0}%; {cached} tokens reused) | (not run) | |",
        first * 1000.0,
        second * 1000.0,
        100.0 * second / first
    );
}

fn main() {
    // As the server does at start: the thread count where candle and rayon read it.
    setup::configure_threads();
    if let Some(path) = std::env::var_os(RSS_OF) {
        let _engine = LlmEngine::load_gguf(Path::new(&path), None, &[], &[]).expect("load");
        println!("rss_after_load_mb {:.1}", rss_mb("VmRSS:"));
        return;
    }
    let models = setup::models_dir();
    println!("| model | measure | xinference-rs | llama.cpp | ratio |");
    println!("|---|---|---|---|---|");
    let files = setup::llm_files(&[
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ]);
    let serving_only = std::env::var("XINFERENCE_BENCH_LLM_SERVING").is_ok_and(|v| v == "only");
    let serving_skipped = std::env::var("XINFERENCE_BENCH_LLM_SERVING").is_ok_and(|v| v == "skip");
    if std::env::var("XINFERENCE_BENCH_LLM_KTILES").is_ok_and(|v| v == "only") {
        for file in &files {
            let set = xinference::kernels::quant::set_k_tiles;
            switch_ab(&models.join(file), file, "Q4_K/Q6_K tiles", set);
        }
        return;
    }
    if let Some(n) = std::env::var("XINFERENCE_BENCH_LLM_PROFILE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        // Prefill of `n` tokens, ten times per model, nothing else (for `perf record`).
        for file in &files {
            let mut engine =
                LlmEngine::load_gguf(&models.join(file), None, &[], &[]).expect("load");
            let ids = prompt_tokens(&engine, n);
            let t = Instant::now();
            for _ in 0..10 {
                engine.forward_for_bench(&ids, 0);
            }
            let tps = 10.0 * n as f64 / t.elapsed().as_secs_f64();
            println!("| {file} | prefill {n} tok/s (ten in a row) | {tps:.1} | | |");
        }
        return;
    }
    if std::env::var("XINFERENCE_BENCH_LLM_PANELS").is_ok_and(|v| v == "only") {
        for file in &files {
            let set = xinference::kernels::quant::set_panels;
            switch_ab(&models.join(file), file, "small-block panels", set);
        }
        return;
    }
    for file in &files {
        if serving_only {
            serving(&models, file);
            continue;
        }
        let path = models.join(file);
        assert!(
            path.exists(),
            "{} is missing: run `python3 scripts/fetch-test-models.py smollm2 qwen gemma` first",
            path.display()
        );
        let size_mb = std::fs::metadata(&path).unwrap().len() as f64 / 1048576.0;
        let ours = measure(&path);
        let theirs = setup::peer(&path, &[]);
        let get = |k: &str| theirs.as_ref().and_then(|t| t[k].as_f64());
        let row = |name: &str, ours: f64, peer: Option<f64>, higher_better: bool| match peer {
            Some(p) => println!(
                "| {file} | {name} | {ours:.1} | {p:.1} | {:.2}x |",
                if higher_better { ours / p } else { p / ours }
            ),
            None => println!("| {file} | {name} | {ours:.1} | (not run) | |"),
        };
        row(
            "prefill 128 tok/s",
            ours.prefill_128,
            get("prefill_128_tps"),
            true,
        );
        row(
            "prefill 512 tok/s",
            ours.prefill_512,
            get("prefill_512_tps"),
            true,
        );
        row("decode tok/s", ours.decode, get("decode_tps"), true);
        row(
            "time to first token (128) ms",
            ours.ttft_128 * 1000.0,
            get("ttft_128_s").map(|s| s * 1000.0),
            false,
        );
        println!(
            "| {file} | RSS after load MB (file {size_mb:.0} MB) | {:.0} ({:.2}x file) | {} | |",
            ours.rss_after_load,
            ours.rss_after_load / size_mb,
            get("rss_after_load_mb")
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "(not run)".into())
        );
    }
    if serving_only || serving_skipped {
        return;
    }
    for file in &files {
        serving(&models, file);
    }
    let path = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !files.iter().any(|f| models.join(f) == path) {
        return;
    }
    let solo = measure(&path).decode;
    let (a, b) = two_at_once(&path);
    println!(
        "| SmolLM2 x2 at once | decode tok/s each | {a:.1} and {b:.1} ({:.0}% and {:.0}% of solo {solo:.1}) | | |",
        100.0 * a / solo,
        100.0 * b / solo
    );
}
