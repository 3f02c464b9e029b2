//! Every embedding architecture and pooling mode matches sentence-transformers, on the tiny
//! random models of `tests/fixtures/tiny-embedders` (made, with their reference vectors, by
//! `scripts/fixtures/make_tiny_embedders.py`). A registry entry of each architecture launches
//! and serves over HTTP.

mod common;

use common::TestServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xinference::embedding::{load_embedding_model, EmbedInput};
use xinference::{LaunchRequest, ModelType};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-embedders")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json is JSON")
}

/// A copy of the tiny `model` folder whose pooling is rewritten to `mode` the way the recording
/// script did it (sentence-transformers' older `pooling_mode_*` flags).
fn variant(model: &str, mode: &str, reference: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join(model), dir.path());
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let mut pooling = json!({
        "word_embedding_dimension": config["hidden_size"],
        "pooling_mode_cls_token": false,
        "pooling_mode_mean_tokens": false,
        "pooling_mode_max_tokens": false,
        "pooling_mode_mean_sqrt_len_tokens": false,
        "pooling_mode_weightedmean_tokens": false,
        "pooling_mode_lasttoken": false,
        "include_prompt": true,
    });
    for (k, v) in reference["pooling_variants"][mode].as_object().unwrap() {
        pooling[k] = v.clone();
    }
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        serde_json::to_string_pretty(&pooling).unwrap(),
    )
    .unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a vector")
        .iter()
        .map(|x| x.as_f64().expect("a float") as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn tiny_models_match_sentence_transformers_in_every_pooling_mode() {
    let reference = reference();
    let mut checked = 0;
    for (model, modes) in reference["models"].as_object().unwrap() {
        for (mode, record) in modes.as_object().unwrap() {
            let dir = variant(model, mode, &reference);
            let mut embedder = load_embedding_model(dir.path(), None).unwrap();
            assert_eq!(
                embedder.tokenizer.max_len() as u64,
                record["max_seq_length"].as_u64().unwrap(),
                "{model}: the length limit sentence-transformers uses"
            );
            let items = record["items"].as_array().unwrap();
            let inputs: Vec<EmbedInput> = items
                .iter()
                .map(|i| EmbedInput::Text(i["text"].as_str().unwrap().to_owned()))
                .collect();
            let got = embedder.embed(&inputs).unwrap();
            let mut worst = 0f32;
            for (item, e) in items.iter().zip(&got) {
                let d = max_abs_diff(&e.vector, &floats(&item["embedding"]));
                worst = worst.max(d);
                assert!(
                    d < 1e-5,
                    "{model}/{mode} {:?}: max abs diff {d}",
                    item["text"]
                );
                assert_eq!(
                    e.tokens as u64,
                    item["tokens"].as_u64().unwrap(),
                    "{model}/{mode} {:?}: token count",
                    item["text"]
                );
            }
            eprintln!(
                "{model}/{mode}: max abs diff {worst:e} over {} vectors",
                items.len()
            );
            checked += items.len();
        }
    }
    assert!(checked >= 110, "only {checked} vectors checked");
    for model in ["bert", "xlm-roberta", "nomic-bert", "jina-bert", "qwen3"] {
        assert!(
            reference["models"][model].is_object(),
            "reference.json has no {model} vectors"
        );
    }
}

/// Built-in entries of every architecture (`bge-m3`: XLM-RoBERTa, `jina-embeddings-v2-base-en`,
/// `nomic-embed-text-v1.5`, `Qwen3-Embedding-0.6B`) launch from a local folder (the tiny model
/// of their architecture, as `model_path`) and serve that architecture's vectors, with real
/// token usage, over HTTP.
#[tokio::test]
async fn registry_entries_of_every_architecture_serve_over_http() {
    let reference = reference();
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    for (name, model, mode) in [
        ("bge-m3", "xlm-roberta", "mean"),
        ("jina-embeddings-v2-base-en", "jina-bert", "mean"),
        ("nomic-embed-text-v1.5", "nomic-bert", "mean"),
        ("Qwen3-Embedding-0.6B", "qwen3", "lasttoken"),
    ] {
        let record = &reference["models"][model][mode];
        let items = record["items"].as_array().expect("reference items");
        let uid = server
            .runtime
            .launch_model(
                LaunchRequest::new(name)
                    .model_type(ModelType::Embedding)
                    .model_path(fixtures().join(model).display().to_string()),
                true,
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
        let response: Value = reqwest::Client::new()
            .post(format!("{}/v1/embeddings", server.url))
            .json(&json!({"model": uid, "input": texts}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = response["data"].as_array().expect("data");
        assert_eq!(data.len(), items.len(), "{name}: {response}");
        let mut tokens = 0;
        for (item, d) in items.iter().zip(data) {
            let diff = max_abs_diff(&floats(&d["embedding"]), &floats(&item["embedding"]));
            assert!(
                diff < 1e-5,
                "{name} {:?}: max abs diff {diff}",
                item["text"]
            );
            tokens += item["tokens"].as_u64().unwrap();
        }
        assert_eq!(
            response["usage"]["prompt_tokens"].as_u64(),
            Some(tokens),
            "{name}"
        );
    }
    server.stop().await;
}
