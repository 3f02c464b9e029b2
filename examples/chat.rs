//! The Xinference documentation's LLM example, in Rust: launch a GGUF chat model with the
//! `llama.cpp` engine name, get a handle, chat, then stream a second answer.
//!
//!     cargo run --release --example chat -- ~/.cache/xinference-rs/test-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
//!
//! Without an argument the GGUF is downloaded from the Hugging Face hub into `$XINFERENCE_HOME`.

use futures::StreamExt;
use serde_json::json;
use xinference::{ChatCompletionRequest, Client, LaunchRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let client = Client::local_from_env()?;
    let mut launch = LaunchRequest::new("qwen2.5-coder-instruct")
        .model_engine("llama.cpp")
        .model_format("ggufv2")
        .model_size_in_billions("0_5")
        .quantization("q4_k_m");
    if let Some(path) = std::env::args().nth(1) {
        launch = launch.model_path(path);
    }
    let uid = client.launch_model(launch).await?;
    let model = client.get_model(&uid).await?.into_llm()?;

    let mut request = ChatCompletionRequest::new(vec![
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": "What is the largest animal?"}),
    ]);
    request.generation.max_tokens = Some(64);
    let answer = model.chat(request.clone()).await?;
    println!(
        "{}",
        answer.choices[0].message.content.as_deref().unwrap_or("")
    );

    let mut chunks = model.chat_stream(request).await?;
    while let Some(chunk) = chunks.next().await {
        for choice in chunk?.choices {
            print!("{}", choice.delta.content.unwrap_or_default());
        }
    }
    println!();
    client.terminate_model(&uid).await
}
