//! all-MiniLM-L6-v2 through the in-process Client matches sentence-transformers.

mod common;

use common::{cosine, minilm_dir, minilm_fixture};
use xinference::protocol::openai::EmbeddingVector;
use xinference::{Client, LaunchRequest, ModelType, Runtime, RuntimeConfig};

fn floats(v: &EmbeddingVector) -> &[f32] {
    match v {
        EmbeddingVector::Float(f) => f,
        EmbeddingVector::Base64(_) => panic!("expected floats"),
    }
}

#[tokio::test]
async fn minilm_vectors_match_sentence_transformers() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        Runtime::new(RuntimeConfig::new(home.path())).unwrap(),
    ));
    let uid = client
        .launch_model(
            LaunchRequest::new("all-MiniLM-L6-v2")
                .model_type(ModelType::Embedding)
                .model_path(minilm_dir().display().to_string()),
        )
        .await
        .unwrap();
    let model = client
        .get_model(&uid)
        .await
        .unwrap()
        .into_embedding()
        .unwrap();

    let fixture = minilm_fixture();
    let items = fixture["items"].as_array().unwrap();
    let texts: Vec<String> = items
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_owned())
        .collect();
    let response = model.create_embedding(texts.clone()).await.unwrap();
    assert_eq!(response.data.len(), texts.len());
    let mut total_tokens = 0;
    for (item, data) in items.iter().zip(&response.data) {
        let expected: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let got = floats(&data.embedding);
        assert_eq!(got.len(), 384);
        let max_diff = expected
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff < 1e-4,
            "{:?}: max abs diff {max_diff}",
            item["text"]
        );
        total_tokens += item["tokens"].as_u64().unwrap() as usize;
    }
    assert_eq!(
        response.usage.prompt_tokens, total_tokens,
        "usage counts the real tokens"
    );

    // The known sentence-transformers figure.
    let c = cosine(
        floats(&response.data[0].embedding),
        floats(&response.data[1].embedding),
    );
    assert!((c - 0.755).abs() < 0.001, "cosine {c}");

    // One input alone gives the same vector as inside a batch (padding does not leak).
    let single = model
        .create_embedding("A man is eating food.")
        .await
        .unwrap();
    let d = floats(&single.data[0].embedding)
        .iter()
        .zip(floats(&response.data[0].embedding))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "batch vs single differ by {d}");
    client.terminate_model(&uid).await.unwrap();
}
