//! The LLM-reranker path (Qwen3-Reranker's yes/no prompt through our LLM engine) on the real
//! Qwen2.5-Coder-0.5B GGUF: for five query/document sets, the relevant document ranks first.

mod common;

use common::qwen_gguf;
use xinference::protocol::rerank::RerankRequest;
use xinference::{Client, LaunchRequest, ModelType, Runtime, RuntimeConfig};

/// (query, relevant document, distractors).
const SETS: &[(&str, &str, &[&str])] = &[
    (
        "What is the capital of France?",
        "Paris is the capital of France.",
        &[
            "Bananas are a yellow fruit.",
            "The Pacific is the largest ocean.",
        ],
    ),
    (
        "How do I reverse a list in Python?",
        "In Python, call my_list.reverse() or use my_list[::-1] to reverse a list.",
        &[
            "Cats sleep for most of the day.",
            "The stock market closed higher on Friday.",
        ],
    ),
    (
        "What do bees make?",
        "Bees make honey from the nectar of flowers.",
        &[
            "Rust is a systems programming language.",
            "Mount Everest is in the Himalayas.",
        ],
    ),
    (
        "Which planet is known as the Red Planet?",
        "Mars is called the Red Planet because of its reddish color.",
        &["Bread is baked in an oven.", "A violin has four strings."],
    ),
    (
        "How many legs does a spider have?",
        "A spider has eight legs.",
        &[
            "Tea is a popular drink in England.",
            "Paris is the capital of France.",
        ],
    ),
];

#[tokio::test]
async fn qwen_gguf_reranker_ranks_the_relevant_document_first() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        Runtime::new(RuntimeConfig::new(home.path())).unwrap(),
    ));
    let uid = client
        .launch_model(
            LaunchRequest::new("Qwen3-Reranker-0.6B")
                .model_type(ModelType::Rerank)
                .model_format("ggufv2")
                .quantization("Q4_K_M")
                .model_path(qwen_gguf().display().to_string()),
        )
        .await
        .unwrap();
    let description = client.describe_model(&uid).await.unwrap();
    assert_eq!(description.model_type, ModelType::Rerank);
    assert_eq!(description.model_engine.as_deref(), Some("llama.cpp"));
    let model = client.get_model(&uid).await.unwrap().into_rerank().unwrap();
    for (query, relevant, distractors) in SETS {
        // The relevant document is placed last, so ranking it first is the model's doing.
        let mut documents: Vec<&str> = distractors.to_vec();
        documents.push(relevant);
        let mut request = RerankRequest::new(*query, documents.clone());
        request.return_documents = Some(true);
        request.return_len = Some(true);
        let response = model.rerank(request).await.unwrap();
        let best = &response.results[0];
        assert_eq!(
            best.index,
            documents.len() - 1,
            "{query:?}: ranked {:?}",
            response.results
        );
        assert_eq!(best.document.as_ref().unwrap().text, *relevant);
        for r in &response.results {
            assert!((0.0..=1.0).contains(&r.relevance_score), "{r:?}");
        }
        assert!(response.meta.tokens.unwrap().input_tokens > 3 * 60);
    }
    client.terminate_model(&uid).await.unwrap();
}
