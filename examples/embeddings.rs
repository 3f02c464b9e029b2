//! Launch an embedding model in process, embed sentences, print each pair's cosine similarity.
//!
//!     cargo run --release --example embeddings -- ~/.cache/xinference-rs/test-models/all-MiniLM-L6-v2 \
//!         "A man is eating food." "A man is eating a piece of bread."
//!
//! The first argument is a sentence-transformers folder of all-MiniLM-L6-v2; without it (or
//! with `-`) the model is fetched from the Hugging Face hub into `$XINFERENCE_HOME`. The
//! remaining arguments are the sentences (two examples by default).

use xinference::protocol::openai::EmbeddingVector;
use xinference::{Client, LaunchRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|p| p != "-");
    let mut sentences: Vec<String> = args.collect();
    if sentences.is_empty() {
        sentences = vec![
            "A man is eating food.".into(),
            "A man is eating a piece of bread.".into(),
        ];
    }

    let client = Client::local_from_env()?;
    let mut launch = LaunchRequest::embedding("all-MiniLM-L6-v2");
    if let Some(path) = path {
        launch = launch.model_path(path);
    }
    let model = client.launch_embedding(launch).await?;
    let response = model.create_embedding(sentences.clone()).await?;
    let vectors: Vec<&Vec<f32>> = response
        .data
        .iter()
        .map(|d| match &d.embedding {
            EmbeddingVector::Float(v) => v,
            EmbeddingVector::Base64(_) => unreachable!("floats were asked for"),
        })
        .collect();
    println!(
        "{} vectors of {} dimensions, {} tokens",
        vectors.len(),
        vectors[0].len(),
        response.usage.prompt_tokens
    );
    // The vectors are normalised: the dot product is the cosine similarity.
    for i in 0..vectors.len() {
        for j in i + 1..vectors.len() {
            let dot: f32 = vectors[i].iter().zip(vectors[j]).map(|(a, b)| a * b).sum();
            println!("cosine({i}, {j}) = {dot:.4}");
        }
    }
    client.terminate_model(model.uid()).await
}
