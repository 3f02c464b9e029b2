//! Launch an embedding model in process, embed two sentences, print their cosine similarity.
//!
//!     cargo run --release --example embeddings -- ~/.cache/xinference-rs/test-models/all-MiniLM-L6-v2
//!
//! Without an argument the model is fetched from the Hugging Face hub into `$XINFERENCE_HOME`.

use xinference::protocol::openai::EmbeddingVector;
use xinference::{Client, LaunchRequest, ModelType};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let client = Client::local_from_env()?;
    let mut request = LaunchRequest::new("all-MiniLM-L6-v2").model_type(ModelType::Embedding);
    if let Some(path) = std::env::args().nth(1) {
        request = request.model_path(path);
    }
    let uid = client.launch_model(request).await?;
    let model = client.get_model(&uid).await?.into_embedding()?;
    let response = model
        .create_embedding(vec![
            "A man is eating food.",
            "A man is eating a piece of bread.",
        ])
        .await?;
    let vectors: Vec<&Vec<f32>> = response
        .data
        .iter()
        .map(|d| match &d.embedding {
            EmbeddingVector::Float(v) => v,
            EmbeddingVector::Base64(_) => unreachable!("floats were asked for"),
        })
        .collect();
    let dot: f32 = vectors[0].iter().zip(vectors[1]).map(|(a, b)| a * b).sum();
    println!(
        "{} dimensions, {} tokens, cosine similarity {dot:.3}",
        vectors[0].len(),
        response.usage.prompt_tokens
    );
    client.terminate_model(&uid).await
}
