//! The path traversals over real HTTP: a custom LLM whose quantization, size, format,
//! repository id, revision or file template climbs out with `..`, a launch whose uid, format
//! or quantization does, and an image file name that does, are each a 400 (or a 404 for the
//! file) naming the field, and nothing is written outside `$XINFERENCE_HOME`.

mod common;

use common::TestServer;
use serde_json::{json, Value};
use std::path::Path;

fn llm_family(name: &str, field: &str, value: &str) -> Value {
    let mut spec = json!({
        "model_format": "ggufv2", "model_hub": "huggingface", "model_id": "org/repo",
        "model_revision": null, "model_size_in_billions": "0_5", "quantization": "Q4_K_M",
        "model_file_name_template": "m-{quantization}.gguf"
    });
    spec[field] = json!(value);
    json!({
        "version": 2, "context_length": 2048, "model_name": name, "model_lang": ["en"],
        "model_ability": ["generate"], "model_specs": [spec]
    })
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn traversals_are_refused_and_write_nothing_outside_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("a/b/home");
    std::fs::create_dir_all(&home).unwrap();
    let server = TestServer::start(&home).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = http.post(format!("{}{path}", server.url)).json(&body);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    for (field, value) in [
        ("quantization", "../../../x"),
        ("model_size_in_billions", "../../x"),
        ("model_format", "../x"),
        ("model_id", "../../../x"),
        ("model_revision", "../../x"),
        ("model_file_name_template", "../../../x-{quantization}.gguf"),
        ("model_file_name_template", "/tmp/x.gguf"),
    ] {
        let family = llm_family("escape", field, value);
        let (status, body) = post(
            "/v1/model_registrations/LLM",
            json!({"model": family.to_string(), "persist": true}),
        )
        .await;
        assert_eq!(status, 400, "{field}={value}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("Invalid {field} ")),
            "{field}={value}: {body}"
        );
    }
    for (field, value) in [
        ("model_uid", "../../x"),
        ("quantization", "../../../x"),
        ("model_format", "../x"),
        ("model_name", "../x"),
    ] {
        let mut launch = json!({"model_name": "qwen2.5-instruct", "model_type": "LLM",
            "model_engine": "llama.cpp", "model_format": "ggufv2",
            "model_size_in_billions": "0_5", "quantization": "q4_k_m"});
        launch[field] = json!(value);
        let (status, body) = post("/v1/models", launch).await;
        assert_eq!(status, 400, "{field}={value}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Invalid {field} ")),
            "{field}={value}: {body}"
        );
    }
    for name in [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "..%2Fauth%2Fauth.db",
        ".hidden",
    ] {
        let r = http
            .get(format!("{}/v1/images/files/{name}", server.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!([400, 404].contains(&status), "{name}: {status} {text}");
        assert!(!text.contains("root:"), "{name}: {text}");
    }
    // Nothing registered, nothing written beside the home.
    let listed = reqwest::get(format!("{}/v1/model_registrations/LLM", server.url))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(!listed.to_string().contains("escape"));
    server.stop().await;
    let outside: Vec<String> = tree(dir.path())
        .into_iter()
        .filter(|p| !p.starts_with("a/b/home"))
        .collect();
    assert_eq!(outside, ["a", "a/b"], "written outside the home");
    assert!(
        !tree(&home)
            .iter()
            .any(|p| p.contains("escape") || p.ends_with("/x")),
        "{:?}",
        tree(&home)
    );
}
