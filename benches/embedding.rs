//! Embeddings beside sentence-transformers, in the same run, on all-MiniLM-L6-v2 with 2 compute
//! threads each:
//!   * one short sentence: p50 latency, in process;
//!   * batches of 32 twenty-word sentences: sentences per second, in process;
//!   * 16 concurrent HTTP clients on a real server on a real port, each sending one twenty-word
//!     sentence per request: sentences per second (where dynamic batching must shine).
//!
//! The peer runs before and after ours and keeps its better figure of each measure.
//! `XINFERENCE_BENCH_PEER_PYTHON` names a Python that has `sentence-transformers` and `torch`
//! (the peer is `scripts/bench_sentence_transformers.py`):
//!
//!     XINFERENCE_BENCH_PEER_PYTHON=/path/to/python cargo bench --bench embedding

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use xinference::{EmbeddingRequest, LaunchRequest, ModelType, Runtime, RuntimeConfig};

const THREADS: usize = 2;
const SHORT: &str = "A man is eating food.";
const BATCH: usize = 32;
/// Sentences per throughput measure.
const SENTENCES: usize = 640;
const CLIENTS: usize = 16;
const SINGLE_REPS: usize = 50;

/// Deterministic twenty-word sentences, all different.
fn sentences(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the",
        "model",
        "serves",
        "embeddings",
        "for",
        "every",
        "request",
        "that",
        "arrives",
        "quickly",
        "while",
        "many",
        "clients",
        "wait",
        "on",
        "a",
        "small",
        "machine",
        "with",
        "two",
        "cores",
        "and",
        "some",
        "memory",
        "left",
        "over",
        "from",
        "yesterday",
        "people",
        "search",
        "documents",
        "about",
        "weather",
        "rivers",
        "mountains",
        "cities",
        "music",
        "history",
        "science",
        "cooking",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            (0..20)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    WORDS[(state % WORDS.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peer(model: &Path, sentences_file: &Path) -> Option<serde_json::Value> {
    let python = std::env::var_os("XINFERENCE_BENCH_PEER_PYTHON")?;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_sentence_transformers.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(model)
        .arg(sentences_file)
        .args(["--threads", &THREADS.to_string()])
        .output()
        .expect("peer runs");
    if !out.status.success() {
        eprintln!(
            "sentence-transformers peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

struct Ours {
    single_p50_ms: f64,
    batch32_per_s: f64,
    http16_per_s: f64,
    http_single_p50_ms: f64,
}

async fn ours(model: &Path, batch: &[String]) -> Ours {
    let home = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(home.path());
    config.compute_threads = Some(THREADS);
    let runtime = Arc::new(Runtime::new(config).unwrap());
    let uid = runtime
        .launch_model(
            LaunchRequest::new("all-MiniLM-L6-v2")
                .model_type(ModelType::Embedding)
                .model_path(model.display().to_string()),
            true,
        )
        .await
        .unwrap();

    // In process: one short sentence.
    let embed = |input: Vec<String>| {
        let runtime = runtime.clone();
        let uid = uid.clone();
        async move {
            runtime
                .create_embedding(EmbeddingRequest::new(uid, input))
                .await
                .unwrap()
        }
    };
    embed(batch[..BATCH].to_vec()).await;
    for _ in 0..5 {
        embed(vec![SHORT.to_owned()]).await;
    }
    let mut times = Vec::new();
    for _ in 0..SINGLE_REPS {
        let t = Instant::now();
        embed(vec![SHORT.to_owned()]).await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let single_p50_ms = p50(times);

    // In process: batches of 32.
    let t = Instant::now();
    for chunk in batch.chunks(BATCH) {
        embed(chunk.to_vec()).await;
    }
    let batch32_per_s = batch.len() as f64 / t.elapsed().as_secs_f64();

    // A real server on a real port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(xinference_server::serve(
        runtime.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let target = uid.clone();
    let post = move |text: String| {
        let http = http.clone();
        let url = url.clone();
        let uid = target.clone();
        async move {
            let r = http
                .post(&url)
                .json(&serde_json::json!({"model": uid, "input": text}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.bytes().await.unwrap();
        }
    };
    for _ in 0..5 {
        post(SHORT.to_owned()).await;
    }
    let mut times = Vec::new();
    for _ in 0..SINGLE_REPS {
        let t = Instant::now();
        post(SHORT.to_owned()).await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let http_single_p50_ms = p50(times);

    let per_client = batch.len() / CLIENTS;
    let t = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mine: Vec<String> = batch[c * per_client..(c + 1) * per_client].to_vec();
            let post = post.clone();
            tokio::spawn(async move {
                for text in mine {
                    post(text).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let http16_per_s = (per_client * CLIENTS) as f64 / t.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = server.await;
    runtime.terminate_all().await;
    Ours {
        single_p50_ms,
        batch32_per_s,
        http16_per_s,
        http_single_p50_ms,
    }
}

fn main() {
    let models = std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/xinference-rs/test-models")
        });
    let model = models.join("all-MiniLM-L6-v2");
    assert!(
        model.join("model.safetensors").exists(),
        "{} is missing: run `python3 scripts/fetch-test-models.py minilm`",
        model.display()
    );
    let batch = sentences(SENTENCES);
    let dir = tempfile::tempdir().unwrap();
    let sentences_file = dir.path().join("sentences.json");
    std::fs::write(
        &sentences_file,
        serde_json::json!({"short": SHORT, "batch": batch}).to_string(),
    )
    .unwrap();

    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average at start: {}", load().trim());
    // The peer runs before and after ours, and keeps its better figure of each measure: the
    // machine drifts, and this way the drift never flatters us.
    let before = peer(&model, &sentences_file);
    let ours = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ours(&model, &batch));
    let after = peer(&model, &sentences_file);
    eprintln!("load average at end: {}", load().trim());
    eprintln!("peer runs: {before:?} and {after:?}");
    let peer = before.clone().or(after.clone());

    let num = |key: &str| {
        let runs = [&before, &after];
        let values = runs.iter().filter_map(|p| p.as_ref()?[key].as_f64());
        if key.ends_with("_ms") {
            values.reduce(f64::min)
        } else {
            values.reduce(f64::max)
        }
    };
    let cell = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1}{unit}"));
    let ratio = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}x"));
    println!("\nall-MiniLM-L6-v2, {THREADS} compute threads each\n");
    println!("| measure | xinference-rs | sentence-transformers | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| one short sentence, p50 latency (in process) | {:.1} ms | {} | {} |",
        ours.single_p50_ms,
        cell(num("single_p50_ms"), " ms"),
        ratio(num("single_p50_ms").map(|p| p / ours.single_p50_ms)),
    );
    println!(
        "| one short sentence, p50 latency (HTTP) | {:.1} ms | | |",
        ours.http_single_p50_ms,
    );
    println!(
        "| batches of {BATCH} twenty-word sentences, sentences/s (in process) | {:.1} | {} | {} |",
        ours.batch32_per_s,
        cell(num("batch32_per_s"), ""),
        ratio(num("batch32_per_s").map(|p| ours.batch32_per_s / p)),
    );
    println!(
        "| {CLIENTS} concurrent HTTP clients, one sentence per request, sentences/s | {:.1} | {} (one sentence per encode call) | {} |",
        ours.http16_per_s,
        cell(num("sequential_per_s"), ""),
        ratio(num("sequential_per_s").map(|p| ours.http16_per_s / p)),
    );
    println!(
        "\nconcurrent HTTP throughput / in-process batch throughput: {:.0}%",
        100.0 * ours.http16_per_s / ours.batch32_per_s
    );
    if let Some(p) = &peer {
        println!("peer: torch {} with {} threads", p["torch"], p["threads"]);
    }
}
