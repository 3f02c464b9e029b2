//! Prompt-prefix reuse on real GGUFs: a second request that shares its start with an earlier
//! one (the same system prompt, the earlier turns of a chat) feeds only its new tokens, and
//! answers exactly as without the cache (greedy). The work saved is read from the cache's
//! counters, never from timings. Over HTTP, the model's description shows the cache.

mod common;

use common::{qwen_gguf, smollm2_gguf, TestServer};
use serde_json::{json, Value};
use xinference::llm::{GenerateOptions, LlmEngine, SamplingParams};

/// A long shared system prompt (a few hundred tokens).
fn system_prompt() -> String {
    let rule = "Answer briefly and precisely. Prefer facts over opinions, name your units, \
                and never invent sources. ";
    format!(
        "You are a careful assistant for a library. {}",
        rule.repeat(12)
    )
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(max_tokens),
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn chat_prompt(engine: &LlmEngine, messages: &[Value]) -> Vec<u32> {
    let text = engine
        .render_chat(messages, None, &Default::default())
        .unwrap();
    engine.tokenize(&text).unwrap()
}

fn shared_start(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Same system prompt, two questions, then a second turn: with the cache, each later prompt
/// computes only what follows the cached prefix, and every answer equals the cache-less one.
fn check_reuse(path: &std::path::Path) {
    let mut cached = LlmEngine::load_gguf(path, None, &[], &[]).unwrap();
    let mut plain = LlmEngine::load_gguf(path, None, &[], &[]).unwrap();
    plain.set_prefix_cache_budget(0);
    let system = json!({"role": "system", "content": system_prompt()});
    let first = [
        system.clone(),
        json!({"role": "user", "content": "What is the boiling point of water?"}),
    ];
    let second = [
        system.clone(),
        json!({"role": "user", "content": "How long is a marathon?"}),
    ];
    let p1 = chat_prompt(&cached, &first);
    let p2 = chat_prompt(&cached, &second);
    let options = greedy(16);

    let g1 = cached.generate(&p1, &options, &mut |_| true).unwrap();
    assert_eq!(
        g1.cached_tokens, 0,
        "nothing is cached before the first request"
    );
    let s1 = cached.prefix_cache_stats();
    assert_eq!(
        (s1.lookups, s1.hits, s1.prefilled_tokens),
        (1, 0, p1.len() as u64)
    );
    assert_eq!(s1.entries, 1);
    assert!(s1.bytes > 0 && s1.bytes <= s1.budget_bytes, "{s1:?}");

    let g2 = cached.generate(&p2, &options, &mut |_| true).unwrap();
    let shared = shared_start(&p1, &p2);
    assert!(
        shared > 100,
        "the system prompt is shared ({shared} tokens)"
    );
    assert_eq!(
        g2.cached_tokens, shared,
        "the whole shared prefix is reused"
    );
    let s2 = cached.prefix_cache_stats();
    assert_eq!(s2.hits, 1);
    assert_eq!(
        s2.prefilled_tokens - s1.prefilled_tokens,
        (p2.len() - shared) as u64,
        "the second prompt computes only its own tokens"
    );
    assert_eq!(s2.reused_tokens, shared as u64);
    let r2 = plain.generate(&p2, &options, &mut |_| true).unwrap();
    assert_eq!(g2.tokens, r2.tokens, "the cache changes no token");
    assert_eq!(
        plain.prefix_cache_stats().entries,
        0,
        "budget 0 stores nothing"
    );

    // The next turn of the first conversation: its prompt holds the first prompt and answer.
    let turn2 = [
        first[0].clone(),
        first[1].clone(),
        json!({"role": "assistant", "content": g1.text}),
        json!({"role": "user", "content": "And in Fahrenheit?"}),
    ];
    let p3 = chat_prompt(&cached, &turn2);
    let g3 = cached.generate(&p3, &options, &mut |_| true).unwrap();
    assert!(
        g3.cached_tokens >= p1.len(),
        "the later turn reuses at least the whole first prompt ({} of {})",
        g3.cached_tokens,
        p1.len()
    );
    let s3 = cached.prefix_cache_stats();
    assert_eq!(
        s3.prefilled_tokens - s2.prefilled_tokens,
        (p3.len() - g3.cached_tokens) as u64
    );
    let r3 = plain.generate(&p3, &options, &mut |_| true).unwrap();
    assert_eq!(g3.tokens, r3.tokens, "the cache changes no token");
}

#[test]
fn smollm2_reuses_shared_prefixes_with_the_same_tokens() {
    check_reuse(&smollm2_gguf());
}

#[test]
fn qwen_reuses_shared_prefixes_with_the_same_tokens() {
    check_reuse(&qwen_gguf());
}

/// A short shared prefix (a few tokens, far under a system prompt) is reused too, and the
/// answer is bit for bit the cache-less one: the same tokens and the same log-probabilities.
fn check_short_reuse(path: &std::path::Path) {
    let mut cached = LlmEngine::load_gguf(path, None, &[], &[]).unwrap();
    let mut plain = LlmEngine::load_gguf(path, None, &[], &[]).unwrap();
    plain.set_prefix_cache_budget(0);
    let p1 = cached.tokenize("The capital of France is").unwrap();
    let p2 = cached.tokenize("The capital of Italy is").unwrap();
    let shared = shared_start(&p1, &p2);
    assert!((2..8).contains(&shared), "{shared} tokens shared");
    let options = GenerateOptions {
        logprobs: Some(0),
        ..greedy(12)
    };
    cached.generate(&p1, &options, &mut |_| true).unwrap();
    let g2 = cached.generate(&p2, &options, &mut |_| true).unwrap();
    assert_eq!(g2.cached_tokens, shared, "the short prefix is reused");
    let r2 = plain.generate(&p2, &options, &mut |_| true).unwrap();
    assert_eq!(g2.tokens, r2.tokens, "the cache changes no token");
    let logprobs = |g: &xinference::llm::Generated| -> Vec<f32> {
        g.logprobs.iter().map(|l| l.logprob).collect()
    };
    assert_eq!(logprobs(&g2), logprobs(&r2), "the cache changes no bit");
}

#[test]
fn smollm2_reuses_a_short_shared_prefix_with_the_same_bits() {
    check_short_reuse(&smollm2_gguf());
}

#[test]
fn qwen_reuses_a_short_shared_prefix_with_the_same_bits() {
    check_short_reuse(&qwen_gguf());
}

/// Gemma 3's sliding-window layers (a window of 512 positions on five layers of six) keep every
/// position while the prefix cache is on (llama.cpp's `--swa-full`): a prompt that shares a start
/// of about 1,000 tokens with an earlier one, then goes another way, reuses that whole start
/// (before, only what the windows still held: nothing) and answers with the same tokens and
/// log-probabilities as without the cache, as does a branch 200 tokens back and a continuation.
#[test]
fn gemma3_reuses_shared_prefixes_longer_than_its_window_with_the_same_bits() {
    let path = common::test_models_dir().join("gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing. Fix: run `python3 scripts/fetch-test-models.py gemma`",
        path.display()
    );
    let mut cached = LlmEngine::load_gguf(&path, None, &[], &[]).unwrap();
    let mut plain = LlmEngine::load_gguf(&path, None, &[], &[]).unwrap();
    plain.set_prefix_cache_budget(0);
    let options = GenerateOptions {
        logprobs: Some(0),
        ..greedy(8)
    };
    let logprobs = |g: &xinference::llm::Generated| -> Vec<f32> {
        g.logprobs.iter().map(|l| l.logprob).collect()
    };
    // A shared start twice the window, then two different questions.
    let start = "The library opens at nine and closes at five. ".repeat(100);
    let p1 = cached
        .tokenize(&format!("{start}Question: when does it open?"))
        .unwrap();
    let p2 = cached
        .tokenize(&format!("{start}Question: is it open on Sundays?"))
        .unwrap();
    let shared = shared_start(&p1, &p2);
    assert!(shared > 1000, "{shared} tokens shared");
    let g1 = cached.generate(&p1, &options, &mut |_| true).unwrap();
    assert_eq!(g1.cached_tokens, 0);
    let held = cached.prefix_cache_stats().bytes;
    println!(
        "gemma3: {} prompt + {} generated tokens held in {:.1} MiB ({:.1} KiB per position)",
        p1.len(),
        g1.tokens.len(),
        held as f64 / (1 << 20) as f64,
        held as f64 / 1024.0 / (p1.len() + g1.tokens.len()) as f64
    );
    let g2 = cached.generate(&p2, &options, &mut |_| true).unwrap();
    assert_eq!(g2.cached_tokens, shared, "the whole shared start is reused");
    let r2 = plain.generate(&p2, &options, &mut |_| true).unwrap();
    assert_eq!(r2.cached_tokens, 0);
    assert_eq!(g2.tokens, r2.tokens, "the cache changes no token");
    assert_eq!(logprobs(&g2), logprobs(&r2), "the cache changes no bit");
    // Continuing the first prompt and its answer.
    let mut p3 = p1.clone();
    p3.extend_from_slice(&g1.tokens);
    p3.extend(cached.tokenize(" On Sundays").unwrap().into_iter().skip(1));
    let g3 = cached.generate(&p3, &options, &mut |_| true).unwrap();
    assert!(g3.cached_tokens >= p1.len(), "{} cached", g3.cached_tokens);
    let r3 = plain.generate(&p3, &options, &mut |_| true).unwrap();
    assert_eq!(g3.tokens, r3.tokens);
    assert_eq!(logprobs(&g3), logprobs(&r3));
    // Branching 200 tokens back.
    let mut p4 = p1[..p1.len() - 200].to_vec();
    p4.extend(cached.tokenize(" Closed").unwrap().into_iter().skip(1));
    let g4 = cached.generate(&p4, &options, &mut |_| true).unwrap();
    assert_eq!(g4.cached_tokens, p1.len() - 200);
    let r4 = plain.generate(&p4, &options, &mut |_| true).unwrap();
    assert_eq!(g4.tokens, r4.tokens);
    assert_eq!(logprobs(&g4), logprobs(&r4));
}

/// The tiny Gemma 4 fixture (Q8_0; sliding-window blocks of 8 positions, blocks that read
/// another block's keys): a continued prompt reuses the whole earlier one, and a branch further
/// back than the windows reach reuses what it shares (the sliding blocks keep every position
/// while the prefix cache is on), each answering with the same bits as without the cache.
#[test]
fn gemma4_reuses_prefixes_longer_than_its_windows_with_the_same_bits() {
    let path = common::logit_checks::tiny_gguf_dir().join("gemma4/tiny-Q8_0.gguf");
    let mut cached = LlmEngine::load_gguf(&path, None, &[], &[]).unwrap();
    let mut plain = LlmEngine::load_gguf(&path, None, &[], &[]).unwrap();
    plain.set_prefix_cache_budget(0);
    let p1 = cached
        .tokenize(&"The library opens at nine and closes at five. ".repeat(4))
        .unwrap();
    assert!(p1.len() > 30, "{} tokens", p1.len());
    let options = GenerateOptions {
        logprobs: Some(0),
        ..greedy(8)
    };
    let logprobs = |g: &xinference::llm::Generated| -> Vec<f32> {
        g.logprobs.iter().map(|l| l.logprob).collect()
    };
    let g1 = cached.generate(&p1, &options, &mut |_| true).unwrap();
    assert_eq!(g1.cached_tokens, 0);
    let mut p2 = p1.clone();
    p2.extend_from_slice(&g1.tokens);
    p2.extend(cached.tokenize(" On Sundays").unwrap().into_iter().skip(1));
    let g2 = cached.generate(&p2, &options, &mut |_| true).unwrap();
    assert!(g2.cached_tokens >= p1.len(), "{} cached", g2.cached_tokens);
    let r2 = plain.generate(&p2, &options, &mut |_| true).unwrap();
    assert_eq!(g2.tokens, r2.tokens, "the cache changes no token");
    assert_eq!(logprobs(&g2), logprobs(&r2), "the cache changes no bit");
    // Branching 20 tokens back, more than the sliding blocks' window of 8.
    let mut p3 = p1[..p1.len() - 20].to_vec();
    p3.extend(cached.tokenize(" Closed").unwrap().into_iter().skip(1));
    let g3 = cached.generate(&p3, &options, &mut |_| true).unwrap();
    assert_eq!(g3.cached_tokens, p1.len() - 20);
    let r3 = plain.generate(&p3, &options, &mut |_| true).unwrap();
    assert_eq!(r3.cached_tokens, 0);
    assert_eq!(g3.tokens, r3.tokens);
    assert_eq!(logprobs(&g3), logprobs(&r3));
}

/// Over real HTTP: two chats with the same system prompt; the description reports the hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_shows_the_prefix_cache() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/models", server.url))
        .json(&json!({"model_name": "smollm2-instruct", "model_engine": "llama.cpp", "model_format": "ggufv2",
            "model_size_in_billions": "0_135", "quantization": "Q4_1", "model_path": smollm2_gguf(),
            "n_parallel": 1, "prefix_cache_bytes": 64 << 20}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    for question in ["What is a library card?", "When does the library open?"] {
        let answer: Value = http
            .post(format!("{}/v1/chat/completions", server.url))
            .json(
                &json!({"model": "smollm2-instruct", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "system", "content": system_prompt()},
                             {"role": "user", "content": question}]}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["usage"]["completion_tokens"], 4, "{answer}");
    }
    let description: Value = http
        .get(format!("{}/v1/models/smollm2-instruct", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cache = &description["prefix_cache"];
    assert_eq!(cache["lookups"], 2, "{description}");
    assert_eq!(cache["hits"], 1, "{description}");
    assert_eq!(cache["hit_rate"], 0.5);
    assert!(cache["reused_tokens"].as_u64().unwrap() > 100, "{cache}");
    assert_eq!(cache["budget_bytes"], 64 << 20);
    assert!(cache["bytes"].as_u64().unwrap() > 0, "{cache}");
    // A bad budget is a 400.
    let r = http
        .post(format!("{}/v1/models", server.url))
        .json(&json!({"model_name": "smollm2-instruct", "model_uid": "other", "model_engine": "llama.cpp",
            "model_format": "ggufv2", "model_size_in_billions": "0_135", "quantization": "Q4_1",
            "model_path": smollm2_gguf(), "prefix_cache_bytes": "lots"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await;
}
