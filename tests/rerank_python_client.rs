//! The official Python `xinference-client` (from PyPI) launches a rerank model on our server and
//! gets rerank results with the documented `top_n`, `return_documents`, `return_len` and
//! `max_chunks_per_doc` behaviour.

mod common;

use common::{run_python, tiny_reranker, TestServer};
use std::path::Path;

#[tokio::test]
async fn xinference_python_client_reranks() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let (dir, _) = tiny_reranker("xlmr");
    let reference =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-rerankers/reference.json");
    let out = run_python(
        "xinference_client_rerank.py",
        &[
            &server.url,
            &dir.display().to_string(),
            &reference.display().to_string(),
        ],
    )
    .await;
    assert!(out.contains("xinference client rerank: ok"), "{out}");
    server.stop().await;
}
