//! Custom model registration over HTTP: validation (clear 400s), persistence under
//! `$XINFERENCE_HOME/model/v2/<type>/<name>.json` (where Xinference 4.x writes them, so its files
//! carry over) across a restart, no shadowing of built-ins,
//! and unregistering; launching a registered custom embedding model from its `model_uri`.

mod common;

use common::{minilm_dir, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn custom_embedding(name: &str) -> Value {
    json!({
        "version": 2,
        "model_name": name,
        "dimensions": 384,
        "max_tokens": 256,
        "language": ["en"],
        "model_specs": [{
            "model_format": "pytorch",
            "model_id": "sentence-transformers/all-MiniLM-L6-v2",
            "model_uri": format!("file://{}", minilm_dir().display()),
            "quantization": "none"
        }]
    })
}

async fn register(url: &str, t: &str, model: &Value, persist: bool) -> (StatusCode, Value) {
    let body = json!({"model": model.to_string(), "persist": persist});
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/model_registrations/{t}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str) -> (StatusCode, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn names(url: &str, t: &str) -> Vec<(String, bool)> {
    let (_, v) = get(&format!("{url}/v1/model_registrations/{t}")).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model_name"].as_str().unwrap().to_owned(),
                r["is_builtin"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn custom_registrations_persist_across_restart() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let url = server.url.clone();

    let builtins = names(&url, "embedding").await;
    assert!(builtins.iter().all(|(_, b)| *b));
    assert!(builtins.iter().any(|(n, _)| n == "bge-small-en-v1.5"));
    // Sorted case-insensitively, as Xinference lists them.
    let lower: Vec<String> = builtins.iter().map(|(n, _)| n.to_lowercase()).collect();
    let mut sorted = lower.clone();
    sorted.sort();
    assert_eq!(lower, sorted);

    assert_eq!(
        register(&url, "embedding", &custom_embedding("my-minilm"), true).await,
        (StatusCode::OK, Value::Null)
    );
    assert_eq!(
        register(&url, "embedding", &custom_embedding("scratch"), false)
            .await
            .0,
        StatusCode::OK
    );
    let persisted = home.path().join("model/v2/embedding/my-minilm.json");
    assert!(persisted.exists());
    assert!(!home.path().join("model/v2/embedding/scratch.json").exists());
    let listed = names(&url, "embedding").await;
    assert!(listed.contains(&("my-minilm".into(), false)));
    let (s, family) = get(&format!("{url}/v1/model_registrations/embedding/my-minilm")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(family, custom_embedding("my-minilm"));

    // Errors: each a 400 with a reason, and nothing registered is lost.
    let mut llm_without_family = custom_embedding("my-llm");
    llm_without_family["model_specs"][0]["model_size_in_billions"] = json!(1);
    let cases = [
        ("embedding", "{not json".to_string(), "Invalid model JSON"),
        ("embedding", json!("a string").to_string(), "Invalid embedding model spec"),
        ("embedding", custom_embedding("bge-small-en-v1.5").to_string(), "conflicts"),
        ("embedding", custom_embedding("my-minilm").to_string(), "conflicts"),
        ("embedding", json!({"version": 2, "model_name": "flat", "dimensions": 4}).to_string(), "model_specs"),
        ("embedding", json!({"version": 2, "model_name": "x", "model_specs": [{"model_format": "pytorch", "model_id": "a/b"}]}).to_string(), "dimensions"),
        ("embedding", custom_embedding("../escape").to_string(), "model_name"),
        ("LLM", llm_without_family.to_string(), "model_family"),
        ("nonsense", custom_embedding("t").to_string(), "Unsupported model type"),
    ];
    for (t, model, needle) in cases {
        let body = json!({"model": model, "persist": true});
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/model_registrations/{t}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{t} {model} -> {v}");
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{t} {model} -> {v}"
        );
    }
    let (s, _) = get(&format!("{url}/v1/model_registrations/embedding/nothing")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A registered custom model launches from its model_uri.
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/models"))
        .json(&json!({"model_name": "my-minilm", "model_type": "embedding"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/embeddings"))
        .json(&json!({"model": "my-minilm", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.stop().await;

    // Restart on the same home: the persisted one is back, the other is gone.
    let server = TestServer::start(home.path()).await;
    let url = server.url.clone();
    let listed = names(&url, "embedding").await;
    assert!(listed.contains(&("my-minilm".into(), false)));
    assert!(!listed.iter().any(|(n, _)| n == "scratch"));

    // Unregister: gone from the listing and from disk; built-ins cannot be unregistered.
    let client = reqwest::Client::new();
    let r = client
        .delete(format!("{url}/v1/model_registrations/embedding/my-minilm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!persisted.exists());
    assert!(!names(&url, "embedding")
        .await
        .iter()
        .any(|(n, _)| n == "my-minilm"));
    let r = client
        .delete(format!("{url}/v1/model_registrations/embedding/my-minilm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client
        .delete(format!(
            "{url}/v1/model_registrations/embedding/bge-small-en-v1.5"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(names(&url, "embedding").await, builtins);
    server.stop().await;
}

/// A custom LLM as Xinference 4.x persists it: pydantic's `json()` of `CustomLLMFamilyV2`,
/// every field present, the unset ones `null`.
fn xinference_written_llm(name: &str) -> Value {
    json!({
        "version": 2, "context_length": 32768, "model_name": name, "model_lang": ["en", "zh"],
        "model_ability": ["chat", "tools"], "model_description": null,
        "model_family": "qwen2.5-instruct",
        "model_specs": [{
            "model_format": "ggufv2", "model_hub": "huggingface", "model_id": null,
            "model_revision": null, "model_uri": "file:///models/qwen", "model_size_in_billions": "0_5",
            "activated_size_in_billions": null, "quantization": "Q4_K_M",
            "model_file_name_template": "qwen2.5-0.5b-instruct-{quantization}.gguf",
            "model_file_name_split_template": null, "quantization_parts": null,
            "cache_config": null
        }],
        "chat_template": null, "stop_token_ids": null, "stop": null,
        "reasoning_start_tag": null, "reasoning_end_tag": null, "cache_config": null,
        "virtualenv": null, "tool_parser": null, "architectures": null
    })
}

#[tokio::test]
async fn registrations_written_by_xinference_and_by_the_first_layout_load_at_start() {
    let home = tempfile::tempdir().unwrap();
    let v2 = home.path().join("model/v2/llm");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(
        v2.join("my-qwen.json"),
        xinference_written_llm("my-qwen").to_string(),
    )
    .unwrap();
    // This crate's first layout: moved to v2 at start.
    let legacy = home.path().join("model/embedding");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("old.json"), custom_embedding("old").to_string()).unwrap();
    // A file there that does not parse (as Xinference 0.x's v1 files may not) stays where it is.
    std::fs::write(legacy.join("v1.json"), "{\"model_name\": 1}").unwrap();

    let server = TestServer::start(home.path()).await;
    assert!(names(&server.url, "LLM")
        .await
        .contains(&("my-qwen".into(), false)));
    let (s, family) = get(&format!(
        "{}/v1/model_registrations/LLM/my-qwen",
        server.url
    ))
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(family["model_family"], "qwen2.5-instruct");
    assert!(names(&server.url, "embedding")
        .await
        .contains(&("old".into(), false)));
    assert!(home.path().join("model/v2/embedding/old.json").exists());
    assert!(!legacy.join("old.json").exists());
    assert!(legacy.join("v1.json").exists());
}

#[tokio::test]
async fn a_corrupt_registration_file_does_not_stop_the_server() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("model/v2/embedding");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.json"), "{oops").unwrap();
    std::fs::write(dir.join("good.json"), custom_embedding("good").to_string()).unwrap();
    let server = TestServer::start(home.path()).await;
    let listed = names(&server.url, "embedding").await;
    assert!(listed.contains(&("good".into(), false)));
    // The unreadable file is left alone for its owner to fix.
    assert!(dir.join("broken.json").exists());
    server.stop().await;
}

#[tokio::test]
async fn engines_and_registrations_describe_every_builtin() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let url = &server.url;
    let (s, e) = get(&format!("{url}/v1/engines/all-MiniLM-L6-v2")).await;
    assert_eq!(s, StatusCode::OK);
    let params = e["sentence_transformers"]
        .as_array()
        .expect("runnable engine lists params");
    assert_eq!(params[0]["model_format"], "pytorch");
    assert_eq!(params[0]["quantizations"], json!(["none"]));
    let (_, e) = get(&format!("{url}/v1/engines/LLM/chatglm3")).await;
    assert!(
        e["Transformers"]
            .as_str()
            .unwrap()
            .contains("cannot be run by this build yet"),
        "{e}"
    );
    let (s, _) = get(&format!("{url}/v1/engines/no-such-model")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    for t in ["LLM", "embedding", "rerank", "image", "audio"] {
        let (_, list) = get(&format!("{url}/v1/model_registrations/{t}?detailed=true")).await;
        for family in list.as_array().unwrap() {
            assert_eq!(family["is_builtin"], true);
            assert!(
                family["architectures"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
                "{t} {}",
                family["model_name"]
            );
        }
    }
    let (_, glm) = get(&format!("{url}/v1/model_registrations/LLM/glm4-chat")).await;
    assert_eq!(glm["version"], 2);
    assert!(glm["context_length"].is_u64());
    assert!(glm["model_ability"]
        .as_array()
        .unwrap()
        .contains(&json!("tools")));
    let (_, flexible) = get(&format!("{url}/v1/model_registrations/flexible")).await;
    assert_eq!(flexible, json!([]));
    server.stop().await;
}
