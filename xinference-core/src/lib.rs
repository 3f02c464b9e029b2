//! xinference-core: the library behind xinference-rs.
//!
//! A model registry (built-in and custom specs), model file resolution and download, a runtime
//! that runs each launched model on its own worker threads, one module per capability, the wire
//! types, and the [`Client`] that drives it all in process or over HTTP. Most users depend on
//! the `xinference` facade crate, whose documentation has a quick start per capability.
#![warn(missing_docs)]

pub mod anthropic;
pub mod audio;
pub mod auth;
pub mod client;
#[doc(hidden)]
pub mod compute;
pub mod embedding;
mod error;
mod files;
pub mod hub;
pub mod image;
#[doc(hidden)]
pub mod kernels;
pub mod llm;
pub mod protocol;
pub mod registry;
pub mod rerank;
pub mod responses;
pub mod runtime;
mod tokenizer_file;

pub use client::{
    AudioModel, Client, EmbeddingModel, ImageModel, LlmModel, ModelHandle, RemoteClient,
    RerankModel,
};
pub use error::{Error, ErrorKind, Result};
pub use protocol::chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest,
    ToolCall,
};
pub use protocol::image::{ImageGenerationRequest, ImageResponse, ImageToImageRequest};
pub use protocol::message::{ChatMessage, ContentPart, ImageUrl, MessageContent};
pub use protocol::openai::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse};
pub use protocol::rerank::{RerankRequest, RerankResponse};
pub use protocol::xinference::{InstanceInfo, InstanceStatus, LaunchRequest, ModelDescription};
pub use registry::{ModelFamily, ModelType, Registry};
pub use runtime::{ChunkStream, Runtime, RuntimeConfig};

/// The SIMD features this build was compiled with (candle picks kernels at compile time).
pub fn simd_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(target_feature = "avx") {
        f.push("avx");
    }
    if cfg!(target_feature = "avx2") {
        f.push("avx2");
    }
    if cfg!(target_feature = "fma") {
        f.push("fma");
    }
    if cfg!(target_feature = "f16c") {
        f.push("f16c");
    }
    if cfg!(target_feature = "avx512f") {
        f.push("avx512f");
    }
    if cfg!(target_feature = "neon") {
        f.push("neon");
    }
    f
}

/// Where the real test models are (the variable the integration tests read), for
/// unit tests that read them.
#[cfg(test)]
pub(crate) fn test_models() -> std::path::PathBuf {
    let dir = std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/xinference-rs/test-models")
        });
    assert!(
        dir.is_dir(),
        "the test models are missing: run `python3 scripts/fetch-test-models.py smollm2 qwen \
         gemma` (or `bash .ci/run`), or point XINFERENCE_TEST_MODELS at their folder ({})",
        dir.display()
    );
    dir
}
