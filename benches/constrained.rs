//! The cost of constrained decoding: decode time per token with and without a grammar, on the
//! test GGUFs, same prompt position and length. The target is at most 20% slower per token.
//!
//!     CANDLE_NUM_THREADS=2 cargo bench --bench constrained
//!
//! Not a test: it asserts nothing about speed.

use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use xinference::llm::{GenerateOptions, Grammar, LlmEngine, SamplingParams};

const TOKENS: usize = 64;
const RUNS: usize = 3;

fn model(file: &str) -> PathBuf {
    let dir = std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/xinference-rs/test-models")
        });
    let path = dir.join(file);
    assert!(
        path.exists(),
        "{} is missing; run `python3 scripts/fetch-test-models.py`",
        path.display()
    );
    path
}

/// Milliseconds per generated token after the prompt, the median of `RUNS`.
fn ms_per_token(engine: &mut LlmEngine, prompt: &[u32], grammar: Option<Grammar>) -> (f64, usize) {
    let options = GenerateOptions {
        max_tokens: Some(TOKENS),
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        grammar,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut generated = 0;
    for _ in 0..RUNS {
        let mut first: Option<Instant> = None;
        let mut steps = 0usize;
        let g = engine
            .generate(prompt, &options, &mut |_| {
                steps += 1;
                first.get_or_insert_with(Instant::now);
                true
            })
            .expect("generate");
        let start = first.expect("at least one step");
        generated = g.completion_tokens;
        times
            .push(start.elapsed().as_secs_f64() * 1000.0 / (g.completion_tokens.max(2) - 1) as f64);
    }
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], generated)
}

fn main() {
    xinference::compute::configure_threads(None);
    // A long array of strings keeps a constrained answer going for all TOKENS.
    let schema = json!({
        "type": "object",
        "properties": {"cities": {"type": "array", "items": {"type": "string"}, "minItems": 40}},
        "required": ["cities"]
    });
    println!("| model | free ms/token | JSON-schema ms/token | ratio (constrained / free) |");
    println!("|---|---|---|---|");
    for (name, file) in [
        ("SmolLM2-135M Q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        (
            "Qwen2.5-coder-0.5B Q4_K_M",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
    ] {
        let mut engine = LlmEngine::load_gguf(&model(file), None, &[], &[]).expect("load");
        let text = engine
            .render_chat(
                &[json!({"role": "user", "content": "List forty European cities as JSON."})],
                None,
                &Default::default(),
            )
            .expect("template");
        let prompt = engine.tokenize(&text).expect("tokenize");
        // Warm up (and build the grammar engine's vocabulary index once).
        ms_per_token(
            &mut engine,
            &prompt,
            Some(Grammar::JsonSchema(schema.clone())),
        );
        let (free, n_free) = ms_per_token(&mut engine, &prompt, None);
        let (constrained, n_con) = ms_per_token(
            &mut engine,
            &prompt,
            Some(Grammar::JsonSchema(schema.clone())),
        );
        println!(
            "| {name} | {free:.2} ({n_free} tokens) | {constrained:.2} ({n_con} tokens) | {:.2} |",
            constrained / free
        );
    }
}
