//! Launch a cross-encoder reranker in process and order documents by relevance to a query.
//!
//!     cargo run --release --example rerank -- /path/to/bge-reranker-base \
//!         "What is the capital of France?" "Paris is the capital of France." "Bananas are yellow."
//!
//! The first argument is a bge-reranker-base folder (an XLM-RoBERTa cross-encoder:
//! `config.json`, `model.safetensors`, `tokenizer.json`); without it (or with `-`) the model is
//! fetched from the Hugging Face hub into `$XINFERENCE_HOME`. Then the query and the documents
//! (a short example set by default). The tiny random cross-encoder of the tests runs too:
//!
//!     cargo run --release --example rerank -- tests/fixtures/tiny-rerankers/xlmr

use xinference::{Client, LaunchRequest, RerankRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|p| p != "-");
    let query = args
        .next()
        .unwrap_or_else(|| "What is the capital of France?".to_owned());
    let mut documents: Vec<String> = args.collect();
    if documents.is_empty() {
        documents = [
            "Paris is the capital and largest city of France.",
            "Berlin is the capital of Germany.",
            "The Eiffel Tower is in Paris.",
            "Bananas are yellow.",
        ]
        .map(String::from)
        .to_vec();
    }

    let client = Client::local_from_env()?;
    let mut launch = LaunchRequest::rerank("bge-reranker-base");
    if let Some(path) = path {
        launch = launch.model_path(path);
    }
    let model = client.launch_rerank(launch).await?;
    let ranked = model
        .rerank(RerankRequest::new(query.as_str(), documents.clone()))
        .await?;
    println!("query: {query}");
    for r in &ranked.results {
        println!(
            "{:.6}  [{}] {}",
            r.relevance_score, r.index, documents[r.index]
        );
    }
    client.terminate_model(model.uid()).await
}
