//! The Xinference documentation's LLM example, in Rust: launch a GGUF chat model (typed
//! builder, handle returned directly) and ask it one question with typed messages.
//!
//!     cargo run --release --example chat -- \
//!         ~/.cache/xinference-rs/test-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
//!         "What is the capital of France?"
//!
//! The first argument is a local GGUF file of Qwen2.5-Coder-0.5B-Instruct; without it (or with
//! `-`) the registry's file is downloaded from the Hugging Face hub into `$XINFERENCE_HOME`.
//! The answer is greedy (temperature 0), so the same question gets the same answer.

use xinference::{ChatCompletionRequest, ChatMessage, Client, LaunchRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|p| p != "-");
    let question = args
        .next()
        .unwrap_or_else(|| "What is the capital of France?".to_owned());

    let client = Client::local_from_env()?;
    // The engine is chosen from the format (ggufv2: `llama.cpp`).
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
    let answer = model.chat(request).await?;
    let choice = &answer.choices[0];
    println!("{}", choice.message.content.as_deref().unwrap_or(""));
    println!(
        "finish_reason: {}, prompt_tokens: {}, completion_tokens: {}",
        choice.finish_reason, answer.usage.prompt_tokens, answer.usage.completion_tokens
    );
    client.terminate_model(model.uid()).await
}
