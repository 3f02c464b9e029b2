//! Run LLM, embedding, rerank, image and speech-to-text models in your Rust program, or drive a
//! running xinference-rs / Xinference server, through one API.
//!
//! A [`Client`] is either in process ([`Client::local_from_env`]: the models run on worker
//! threads of this process, weights under `$XINFERENCE_HOME`, default `~/.xinference`) or
//! remote ([`Client::remote`]: the same calls over HTTP). Launching returns a typed handle per
//! capability: [`LlmModel`], [`EmbeddingModel`], [`RerankModel`], [`ImageModel`],
//! [`AudioModel`]. Every failure is one [`Error`] whose [`ErrorKind`] is the same in process
//! and over HTTP.
//!
//! Model compute never runs on your async executor: each model has its own threads, and every
//! call here is an `async fn` that awaits the answer.
//!
//! # Chat
//!
//! ```no_run
//! use xinference::{ChatCompletionRequest, ChatMessage, Client, LaunchRequest};
//!
//! # async fn demo() -> xinference::Result<()> {
//! let client = Client::local_from_env()?;
//! // A local GGUF file; without `model_path` the registry's file is downloaded from the hub.
//! // No engine named: a `.gguf` file runs under `llama.cpp`.
//! let llm = client
//!     .launch_llm(
//!         LaunchRequest::llm("qwen2.5-instruct")
//!             .model_path("/models/qwen2.5-0.5b-instruct-q4_k_m.gguf")
//!             .n_parallel(2),
//!     )
//!     .await?;
//! let request = ChatCompletionRequest::new([
//!     ChatMessage::system("You are a helpful assistant."),
//!     ChatMessage::user("What is the largest animal?"),
//! ])
//! .max_tokens(64);
//! let answer = llm.chat(request).await?;
//! println!("{}", answer.choices[0].message.content.as_deref().unwrap_or(""));
//! # Ok(()) }
//! ```
//!
//! # Streaming
//!
//! A stream is a `futures::Stream` of chunks. Dropping it stops the generation: in process
//! the model's slot is freed at the next token, over HTTP the server sees the connection close
//! and does the same.
//!
//! ```no_run
//! use futures::StreamExt;
//! use xinference::{ChatCompletionRequest, ChatMessage, LlmModel};
//!
//! # async fn demo(llm: LlmModel) -> xinference::Result<()> {
//! let mut chunks = llm
//!     .chat_stream(ChatCompletionRequest::new([ChatMessage::user("Count to ten.")]))
//!     .await?;
//! while let Some(chunk) = chunks.next().await {
//!     for choice in chunk?.choices {
//!         print!("{}", choice.delta.content.unwrap_or_default());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Tools
//!
//! ```no_run
//! use serde_json::json;
//! use xinference::{ChatCompletionRequest, ChatMessage, LlmModel};
//!
//! # async fn demo(llm: LlmModel) -> xinference::Result<()> {
//! let weather = json!({"type": "function", "function": {
//!     "name": "get_weather",
//!     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
//! }});
//! let question = ChatMessage::user("What is the weather in Paris?");
//! let request = ChatCompletionRequest::new([question.clone()]).tools(vec![weather.clone()]);
//! let answer = llm.chat(request).await?;
//! if let Some(calls) = answer.choices[0].message.tool_calls.clone().filter(|c| !c.is_empty()) {
//!     // Run the tools, then hand their results back.
//!     let mut messages = vec![question, ChatMessage::assistant_tool_calls(calls.clone())];
//!     for call in &calls {
//!         messages.push(ChatMessage::tool(&call.id, "18 degrees and sunny"));
//!     }
//!     let answer = llm.chat(ChatCompletionRequest::new(messages).tools(vec![weather])).await?;
//!     println!("{:?}", answer.choices[0].message.content);
//! }
//! # Ok(()) }
//! ```
//!
//! # Embeddings
//!
//! ```no_run
//! use xinference::{Client, LaunchRequest};
//!
//! # async fn demo(client: Client) -> xinference::Result<()> {
//! let model = client
//!     .launch_embedding(LaunchRequest::embedding("all-MiniLM-L6-v2"))
//!     .await?;
//! let response = model
//!     .create_embedding(vec!["A man is eating food.".to_owned(), "A cat sleeps.".to_owned()])
//!     .await?;
//! println!("{} vectors", response.data.len());
//! # Ok(()) }
//! ```
//!
//! # Rerank
//!
//! ```no_run
//! use xinference::{Client, LaunchRequest, RerankRequest};
//!
//! # async fn demo(client: Client) -> xinference::Result<()> {
//! let model = client.launch_rerank(LaunchRequest::rerank("bge-reranker-base")).await?;
//! let mut request = RerankRequest::new("Where do pandas live?", ["In China.", "Paris is in France."]);
//! request.top_n = Some(1);
//! let ranked = model.rerank(request).await?;
//! println!("best: document {}", ranked.results[0].index);
//! # Ok(()) }
//! ```
//!
//! # Image
//!
//! ```no_run
//! use xinference::{Client, ImageGenerationRequest, LaunchRequest};
//!
//! # async fn demo(client: Client) -> xinference::Result<()> {
//! let model = client.launch_image(LaunchRequest::image("sd-turbo")).await?;
//! let mut request = ImageGenerationRequest::new("a lighthouse at dusk");
//! request.size = Some("512x512".to_owned());
//! let images = model.text_to_image(request).await?;
//! // In process a `url` is a local file path.
//! println!("{:?}", images.data[0].url);
//! # Ok(()) }
//! ```
//!
//! # Audio
//!
//! ```no_run
//! use xinference::{Client, LaunchRequest};
//!
//! # async fn demo(client: Client) -> xinference::Result<()> {
//! let model = client.launch_audio(LaunchRequest::audio("whisper-tiny.en")).await?;
//! let audio = std::fs::read("speech.wav")?;
//! let transcription = model.transcriptions(audio).await?;
//! println!("{}", transcription.text);
//! # Ok(()) }
//! ```
//!
//! # A server, and errors
//!
//! The same calls go over HTTP with [`Client::remote`]; an error carries the kind the server's
//! status code stands for.
//!
//! ```no_run
//! use xinference::{ChatCompletionRequest, ChatMessage, Client, ErrorKind};
//!
//! # async fn demo() -> xinference::Result<()> {
//! let client = Client::remote("http://127.0.0.1:9997", None)?;
//! match client.get_model("my-llm").await {
//!     Ok(handle) => {
//!         let llm = handle.into_llm()?;
//!         llm.chat(ChatCompletionRequest::new([ChatMessage::user("Hi")])).await?;
//!     }
//!     Err(e) if e.kind() == ErrorKind::NotFound => println!("not launched: {e}"),
//!     Err(e) if e.kind() == ErrorKind::Overloaded => println!("busy, retry later"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub use xinference_core::*;
