//! Text embeddings: one small trait, [`Embed`], that the runtime drives from a worker thread,
//! with one module per architecture and the sentence-transformers pooling rules in `pooling`.

mod bert;
mod pooling;

pub use pooling::{Pooling, PoolingConfig};

use crate::{Error, Result};
use std::path::Path;

/// One input of an embedding request: text, or token ids the caller already produced.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    /// Text to tokenize.
    Text(String),
    /// Pre-tokenized ids.
    Tokens(Vec<u32>),
}

/// One output vector and the number of tokens it consumed (after truncation).
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// The pooled (and, when the model says so, normalised) vector.
    pub vector: Vec<f32>,
    /// Tokens the model read for this input, special tokens included.
    pub tokens: usize,
}

/// A loaded embedding model. Runs on a worker thread, never on the async executor.
pub trait Embed: Send {
    /// Embeds every input, in order.
    fn embed(&mut self, inputs: &[EmbedInput]) -> Result<Vec<Embedding>>;
    /// Length of the vectors it produces.
    fn dimensions(&self) -> usize;
}

/// Loads the embedding model in `dir` (a Hugging Face / sentence-transformers folder),
/// choosing the architecture from its `config.json`.
pub fn load_embedding_model(dir: &Path, max_tokens: Option<usize>) -> Result<Box<dyn Embed>> {
    let dir = if dir.is_file() {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::bad_request(format!("cannot read {}: {e}", config_path.display())))?;
    let config: serde_json::Value = serde_json::from_str(&config_text).map_err(|e| {
        Error::bad_request(format!("{} is not valid JSON: {e}", config_path.display()))
    })?;
    let model_type = config["model_type"].as_str().unwrap_or("");
    match model_type {
        "bert" => Ok(Box::new(bert::BertEmbedder::load(
            dir,
            &config_text,
            max_tokens,
        )?)),
        other => Err(Error::bad_request(format!(
            "embedding architecture `{other}` (from {}) cannot be run by this build yet",
            config_path.display()
        ))),
    }
}
