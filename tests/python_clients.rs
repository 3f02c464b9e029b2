//! The official Python SDKs (`openai`, `xinference-client`, from PyPI) against a real server on
//! a real port: they must work unchanged.

mod common;

use common::{minilm_dir, run_python, TestServer};
use xinference::{LaunchRequest, ModelType};

#[tokio::test]
async fn openai_sdk_creates_embeddings() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let uid = server
        .runtime
        .launch_model(
            LaunchRequest::new("all-MiniLM-L6-v2")
                .model_type(ModelType::Embedding)
                .model_path(minilm_dir().display().to_string()),
            true,
        )
        .await
        .unwrap();
    let out = run_python("openai_embeddings.py", &[&server.url, &uid]).await;
    assert!(out.contains("openai sdk: ok"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn xinference_python_client_manages_and_uses_models() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let minilm = minilm_dir().display().to_string();
    let out = run_python("xinference_client_embeddings.py", &[&server.url, &minilm]).await;
    assert!(out.contains("xinference client: ok"), "{out}");
    server.stop().await;
}
