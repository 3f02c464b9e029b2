//! Rerank speed beside the reference engines, on the same models and inputs, the same threads,
//! in the same run:
//!
//! - cross-encoders: one request of 32 documents (median of 5 after a warm-up), and 16 such
//!   requests sent at once (total time), against sentence-transformers' `CrossEncoder.predict`
//!   (what Xinference's rerank engine calls) with torch on the same threads. Models: the tiny
//!   XLM-R fixture, and a MiniLM-L6 cross-encoder (ms-marco-MiniLM-L-6-v2's architecture and
//!   size, built by the peer script from all-MiniLM-L6-v2's encoder with a seeded head);
//! - the LLM reranker: Qwen3-Reranker's prompt on the Qwen2.5-Coder GGUF for 8 documents,
//!   against llama.cpp (llama-cpp-python) scoring the same prompts.
//!
//! The peers run through `scripts/bench_rerank_peer.py` when `XINFERENCE_BENCH_PEER_PYTHON`
//! names a Python with torch, sentence-transformers, transformers and llama-cpp-python.
//!
//!     CANDLE_NUM_THREADS=2 XINFERENCE_BENCH_PEER_PYTHON=/path/to/python cargo bench --bench rerank
//!
//! Not a test: it asserts nothing about speed. It prints how far apart the two sides' scores
//! are, as a sanity check.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use xinference::protocol::rerank::RerankRequest;
use xinference::{LaunchRequest, ModelType, Runtime, RuntimeConfig};

const THREADS: usize = 2;
const DOCS: usize = 32;
const CONCURRENT: usize = 16;
const LLM_DOCS: usize = 8;
const QUERY: &str = "How do I bake bread at home?";

/// 32 documents of 15 to 60 words, a few of them about baking bread.
fn documents() -> Vec<String> {
    let pool = [
        "Mix flour, water, salt and yeast, knead the dough and let it rise before baking.",
        "The stock market fell sharply on Monday after the central bank raised rates.",
        "Rust is a systems programming language focused on safety, speed and concurrency.",
        "A hot oven and a little steam give bread a crisp crust and an open crumb.",
        "The Pacific Ocean is the largest and deepest of the world's oceans.",
        "Sourdough uses a starter of wild yeast and lactic bacteria instead of baker's yeast.",
        "Football is the most popular sport in many countries across Europe and South America.",
        "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    ];
    (0..DOCS)
        .map(|i| {
            let n = 1 + i % 4;
            (0..n)
                .map(|k| pool[(i * 3 + k * 5) % pool.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Measured {
    request_s: f64,
    concurrent_s: f64,
    scores: Vec<f64>,
}

async fn rerank(rt: &Runtime, uid: &str, docs: &[String]) -> Vec<f64> {
    let mut request = RerankRequest::new(QUERY, docs.to_vec());
    request.model = uid.to_owned();
    let response = rt.rerank(request).await.expect("rerank");
    let mut scores = vec![0.0; docs.len()];
    for r in response.results {
        scores[r.index] = r.relevance_score;
    }
    scores
}

async fn measure(rt: &Arc<Runtime>, uid: &str, docs: &[String], reps: usize) -> Measured {
    let scores = rerank(rt, uid, docs).await;
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        rerank(rt, uid, docs).await;
        times.push(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (rt, uid, docs) = (rt.clone(), uid.to_owned(), docs.to_vec());
            tokio::spawn(async move { rerank(&rt, &uid, &docs).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("request");
    }
    Measured {
        request_s: median(times),
        concurrent_s: t.elapsed().as_secs_f64(),
        scores,
    }
}

fn python(args: &[&str]) -> Option<Value> {
    let python = std::env::var_os("XINFERENCE_BENCH_PEER_PYTHON")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_rerank_peer.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("the peer script runs");
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).ok()
}

fn max_diff(a: &[f64], b: &Value) -> f64 {
    a.iter()
        .zip(b.as_array().into_iter().flatten())
        .map(|(x, y)| (x - y.as_f64().unwrap_or(f64::NAN)).abs())
        .fold(0.0, f64::max)
}

fn row(name: &str, measure: &str, ours: f64, peer: Option<f64>) {
    match peer {
        Some(p) => println!(
            "| {name} | {measure} | {:.1} ms | {:.1} ms | {:.2}x |",
            ours * 1e3,
            p * 1e3,
            p / ours
        ),
        None => println!(
            "| {name} | {measure} | {:.1} ms | (not run) | |",
            ours * 1e3
        ),
    }
}

fn main() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", THREADS.to_string());
    }
    let models = std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/xinference-rs/test-models")
        });
    let gguf = models.join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    let minilm = models.join("all-MiniLM-L6-v2");
    assert!(
        gguf.exists() && minilm.exists(),
        "run `python3 scripts/fetch-test-models.py minilm qwen` first"
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-rerankers/xlmr");
    let mut cross_encoders = vec![(
        "tiny XLM-R fixture",
        "bge-reranker-base",
        fixture.display().to_string(),
    )];
    let minilm_ce = tmp.path().join("minilm-ce");
    let minilm_ce = minilm_ce.display().to_string();
    if python(&[
        "prepare",
        "--minilm",
        &minilm.display().to_string(),
        "--out",
        &minilm_ce,
    ])
    .is_some()
    {
        cross_encoders.push((
            "MiniLM-L6 cross-encoder",
            "ms-marco-MiniLM-L-6-v2",
            minilm_ce.clone(),
        ));
    }
    let docs = documents();
    let input = tmp.path().join("input.json");
    std::fs::write(
        &input,
        json!({"query": QUERY, "documents": docs, "concurrent": CONCURRENT}).to_string(),
    )
    .expect("write input");

    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let home = tmp.path().join("home");
    let rt = Arc::new(Runtime::new(RuntimeConfig::new(&home)).expect("runtime"));
    let mut ours = Vec::new();
    for (i, (_, family, dir)) in cross_encoders.iter().enumerate() {
        let uid = format!("ce{i}");
        tokio
            .block_on(
                rt.launch_model(
                    LaunchRequest::new(*family)
                        .model_type(ModelType::Rerank)
                        .model_uid(uid.as_str())
                        .model_path(dir.as_str()),
                    true,
                ),
            )
            .expect("launch");
        ours.push(tokio.block_on(measure(&rt, &uid, &docs, 5)));
    }
    tokio
        .block_on(
            rt.launch_model(
                LaunchRequest::new("Qwen3-Reranker-0.6B")
                    .model_type(ModelType::Rerank)
                    .model_format("ggufv2")
                    .quantization("Q4_K_M")
                    .model_uid("qwen")
                    .model_path(gguf.display().to_string()),
                true,
            ),
        )
        .expect("launch qwen");
    let llm_docs = &docs[..LLM_DOCS];
    let llm_scores = tokio.block_on(rerank(&rt, "qwen", llm_docs));
    let llm_times: Vec<f64> = (0..2)
        .map(|_| {
            let t = Instant::now();
            tokio.block_on(rerank(&rt, "qwen", llm_docs));
            t.elapsed().as_secs_f64()
        })
        .collect();
    let llm_s = median(llm_times);
    tokio.block_on(rt.terminate_all());

    let mut args = vec![
        "run".to_owned(),
        "--input".to_owned(),
        input.display().to_string(),
        "--threads".to_owned(),
        THREADS.to_string(),
        "--gguf".to_owned(),
        gguf.display().to_string(),
        "--llm-docs".to_owned(),
        LLM_DOCS.to_string(),
    ];
    for (_, _, dir) in &cross_encoders {
        args.push("--ce".to_owned());
        args.push(dir.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let peer = python(&args);

    println!("| model | measure | xinference-rs | peer | ratio (peer time / ours) |");
    println!("|---|---|---|---|---|");
    for ((name, _, dir), m) in cross_encoders.iter().zip(&ours) {
        let p = peer.as_ref().map(|p| &p["cross_encoders"][dir.as_str()]);
        row(
            name,
            &format!("1 request, {DOCS} docs (vs CrossEncoder.predict)"),
            m.request_s,
            p.and_then(|p| p["request_s"].as_f64()),
        );
        row(
            name,
            &format!("{CONCURRENT} requests at once, {DOCS} docs each"),
            m.concurrent_s,
            p.and_then(|p| p["concurrent_s"].as_f64()),
        );
        if let Some(p) = p {
            println!(
                "| {name} | max score difference | {:.1e} | | |",
                max_diff(&m.scores, &p["scores"])
            );
        }
    }
    let p = peer.as_ref().map(|p| &p["llm"]);
    row(
        "Qwen2.5-Coder-0.5B Q4_K_M (Qwen3-Reranker prompt)",
        &format!("1 request, {LLM_DOCS} docs (vs llama.cpp)"),
        llm_s,
        p.and_then(|p| p["request_s"].as_f64()),
    );
    if let Some(p) = p {
        println!(
            "| Qwen2.5-Coder-0.5B Q4_K_M | max score difference | {:.1e} | | |",
            max_diff(&llm_scores, &p["scores"])
        );
    }
}
