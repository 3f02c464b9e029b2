//! Stream a chat answer token by token: the handle's `chat_stream` is a `futures::Stream` of
//! chunks. Dropping the stream early would stop the generation at the next token.
//!
//!     cargo run --release --example chat_stream -- \
//!         ~/.cache/xinference-rs/test-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
//!         "What is the capital of France?"
//!
//! The first argument is a local GGUF file of Qwen2.5-Coder-0.5B-Instruct; without it (or with
//! `-`) the registry's file is downloaded from the Hugging Face hub into `$XINFERENCE_HOME`.
//! The answer is greedy, so it is the one the `chat` example prints, delta by delta.

use futures::StreamExt;
use std::io::Write;
use xinference::{ChatCompletionRequest, ChatMessage, Client, LaunchRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|p| p != "-");
    let question = args
        .next()
        .unwrap_or_else(|| "What is the capital of France?".to_owned());

    let client = Client::local_from_env()?;
    let mut launch = LaunchRequest::llm("qwen2.5-coder-instruct")
        .model_format("ggufv2")
        .model_size_in_billions("0_5")
        .quantization("q4_k_m");
    if let Some(path) = path {
        launch = launch.model_path(path);
    }
    let model = client.launch_llm(launch).await?;

    let request = ChatCompletionRequest::new([
        ChatMessage::system("You are a helpful assistant. Answer in one sentence."),
        ChatMessage::user(question),
    ])
    .temperature(0.0)
    .max_tokens(48);
    let mut chunks = model.chat_stream(request).await?;
    let (mut deltas, mut finish_reason) = (0, None);
    while let Some(chunk) = chunks.next().await {
        for choice in chunk?.choices {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                print!("{text}");
                std::io::stdout().flush().ok();
                deltas += 1;
            }
            finish_reason = choice.finish_reason.or(finish_reason);
        }
    }
    println!();
    println!(
        "deltas: {deltas}, finish_reason: {}",
        finish_reason.unwrap_or_default()
    );
    client.terminate_model(model.uid()).await
}
