//! Continuous batching on real GGUFs: sequences of different lengths, generated at the same
//! time on forks of one engine and joining at different steps, have their decode steps run in
//! shared passes over the weights, the prompts of those joining fed in chunks within the
//! others' decode passes (one prompt is long enough for several chunks), and each gets exactly
//! the greedy tokens it gets alone.

mod common;

use common::{qwen_gguf, smollm2_gguf};
use std::sync::mpsc;
use std::thread;
use xinference::llm::{GenerateOptions, LlmEngine, SamplingParams};

const PROMPTS: [&str; 4] = [
    "Write a short poem about the sea.",
    "List three uses of copper, with one sentence on each of them, and say which is oldest.",
    "Hi",
    "Explain in two sentences why the sky looks blue on a clear afternoon. Before you answer, \
     remember that the reader is a curious child who has never heard of molecules, light \
     waves, wavelengths or the atmosphere, who likes stories about sailors, mountains, \
     kites and birds, and who will ask why again after every sentence, so keep each \
     sentence short, concrete and friendly, use one comparison with something found in a \
     kitchen, and do not use any numbers, lists, headings or technical words at all.",
];

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(max_tokens),
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        // Run every sequence to its length, so that they overlap for many steps.
        stop_token_ids: Vec::new(),
        ..Default::default()
    }
}

fn prompt(engine: &LlmEngine, text: &str) -> Vec<u32> {
    let messages = [serde_json::json!({"role": "user", "content": text})];
    let rendered = engine
        .render_chat(&messages, None, &Default::default())
        .unwrap();
    engine.tokenize(&rendered).unwrap()
}

fn check(path: &std::path::Path) {
    let mut alone = LlmEngine::load_gguf(path, None, &[], &[]).unwrap();
    alone.set_prefix_cache_budget(0);
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| prompt(&alone, p)).collect();
    // Different lengths, so that sequences also leave at different steps.
    let lengths = [24usize, 16, 28, 20];
    let expected: Vec<Vec<u32>> = prompts
        .iter()
        .zip(lengths)
        .map(|(p, n)| alone.generate(p, &greedy(n), &mut |_| true).unwrap().tokens)
        .collect();
    assert_eq!(
        alone.batch_stats().largest,
        1,
        "one sequence alone runs batches of one"
    );

    let mut shared = LlmEngine::load_gguf(path, None, &[], &[]).unwrap();
    shared.set_prefix_cache_budget(0);
    let forks: Vec<LlmEngine> = (1..prompts.len())
        .map(|_| shared.fork().expect("the decoder forks"))
        .collect();
    let engines: Vec<LlmEngine> = std::iter::once(shared).chain(forks).collect();
    let stats_of = engines[0].batcher().expect("the decoder batches");
    // Sequence i starts once sequence i - 1 has generated 3 tokens: they join mid-flight.
    let mut started: Vec<Option<mpsc::Receiver<()>>> = vec![None];
    let mut signals = Vec::new();
    for _ in 1..prompts.len() {
        let (tx, rx) = mpsc::channel::<()>();
        signals.push(Some(tx));
        started.push(Some(rx));
    }
    signals.push(None);
    let handles: Vec<_> = engines
        .into_iter()
        .zip(prompts.clone())
        .zip(lengths)
        .zip(started)
        .zip(signals)
        .map(|((((mut engine, p), n), wait), signal)| {
            thread::spawn(move || {
                if let Some(rx) = wait {
                    rx.recv().unwrap();
                }
                let mut signal = signal;
                let mut steps = 0;
                let tokens = engine
                    .generate(&p, &greedy(n), &mut |_| {
                        steps += 1;
                        if steps >= 3 {
                            if let Some(tx) = signal.take() {
                                tx.send(()).unwrap();
                            }
                        }
                        true
                    })
                    .unwrap()
                    .tokens;
                // A sequence that ended early still lets the next one start.
                if let Some(tx) = signal.take() {
                    tx.send(()).unwrap();
                }
                tokens
            })
        })
        .collect();
    let got: Vec<Vec<u32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "sequence {i} differs when batched");
    }
    let stats = stats_of.stats();
    assert!(
        stats.largest >= 2,
        "decode steps were batched together: {stats:?}"
    );
    assert!(
        stats.passes < stats.steps,
        "fewer passes than steps: {stats:?}"
    );
    assert!(
        stats.shared_prompt_chunks >= 2,
        "the prompts of sequences joining mid-flight rode in decode passes: {stats:?}"
    );
    eprintln!("{}: {stats:?}", path.display());
}

#[test]
fn smollm2_batched_sequences_match_solo_greedy() {
    check(&smollm2_gguf());
}

#[test]
fn qwen_batched_sequences_match_solo_greedy() {
    check(&qwen_gguf());
}

/// The tiny Gemma 4 fixture (sliding-window blocks of 8 positions, blocks sharing another's
/// keys, per-layer embeddings), Q8_0.
#[test]
fn gemma4_tiny_batched_sequences_match_solo_greedy() {
    check(&common::logit_checks::tiny_gguf_dir().join("gemma4/tiny-Q8_0.gguf"));
}
