//! The Xinference documentation's LLM example, in Rust: launch a GGUF chat model (typed
//! builder, handle returned directly), chat with typed messages, then stream a second answer.
//!
//!     cargo run --release --example chat -- ~/.cache/xinference-rs/test-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
//!
//! Without an argument the GGUF is downloaded from the Hugging Face hub into `$XINFERENCE_HOME`.

use futures::StreamExt;
use xinference::{ChatCompletionRequest, ChatMessage, Client, LaunchRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let client = Client::local_from_env()?;
    // The engine is chosen from the format (ggufv2: `llama.cpp`).
    let mut launch = LaunchRequest::llm("qwen2.5-coder-instruct")
        .model_format("ggufv2")
        .model_size_in_billions("0_5")
        .quantization("q4_k_m");
    if let Some(path) = std::env::args().nth(1) {
        launch = launch.model_path(path);
    }
    let model = client.launch_llm(launch).await?;
    let uid = model.uid().to_owned();

    let request = ChatCompletionRequest::new([
        ChatMessage::system("You are a helpful assistant."),
        ChatMessage::user("What is the largest animal?"),
    ])
    .max_tokens(64);
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
