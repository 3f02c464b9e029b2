//! Reranking: one small trait, [`Rerank`], that the runtime drives from a worker thread, with
//! two kinds of model behind it:
//!
//! - cross-encoders (`cross_encoder.rs`): BERT and XLM-RoBERTa sequence-classification heads
//!   (ms-marco-MiniLM, bge-reranker-base/large/v2-m3), scored as sentence-transformers'
//!   `CrossEncoder.predict` scores them (what Xinference's `sentence_transformers` engine calls);
//! - LLM rerankers (`llm_reranker.rs`): Qwen3-Reranker style, the probability of "yes" after the
//!   model's judging prompt, computed by our [`crate::llm::LlmEngine`] (GGUF or safetensors).
//!
//! Which one a launch gets is decided by the files, never by the model's name: a GGUF file or a
//! `*ForCausalLM` folder is an LLM reranker, a `*ForSequenceClassification` folder a cross-encoder.

mod cross_encoder;
mod llm_reranker;

pub use cross_encoder::{CrossEncoder, ScoreActivation};
pub use llm_reranker::{LlmReranker, DEFAULT_INSTRUCTION};

use crate::registry::ModelFamily;
use crate::Result;
use std::path::Path;

/// How one request wants its documents scored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreOptions {
    /// `Some(n)`: a document longer than the model's window is cut into up to `n` consecutive
    /// windows, each scored with the query, and the document keeps its best score. `None`: it is
    /// truncated to the window (sentence-transformers' behaviour).
    pub max_chunks_per_doc: Option<usize>,
    /// Cohere's `max_tokens_per_doc`: each document is cut to this many tokens first.
    pub max_tokens_per_doc: Option<usize>,
    /// The task instruction of instruction-following rerankers (Qwen3-Reranker's `<Instruct>`);
    /// cross-encoders prepend it to the query, as Xinference does.
    pub instruction: Option<String>,
}

/// One document's relevance and the tokens the model read for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DocScore {
    /// The relevance score (higher is more relevant).
    pub score: f32,
    /// Tokens read for this document, special tokens and every chunk included.
    pub tokens: usize,
}

/// One request's work: a query, its documents and options.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankJob {
    /// The query.
    pub query: String,
    /// The documents, in request order.
    pub documents: Vec<String>,
    /// How to score them.
    pub options: ScoreOptions,
}

/// A loaded rerank model. Runs on a worker thread, never on the async executor.
pub trait Rerank: Send {
    /// Scores every document against `query`, in document order.
    fn score(
        &mut self,
        query: &str,
        documents: &[String],
        options: &ScoreOptions,
    ) -> Result<Vec<DocScore>>;

    /// Scores several requests at once (the runtime hands over every request that queued up
    /// while the model was busy); a model that can batch across requests overrides this.
    fn score_many(&mut self, jobs: &[RerankJob]) -> Vec<Result<Vec<DocScore>>> {
        jobs.iter()
            .map(|j| self.score(&j.query, &j.documents, &j.options))
            .collect()
    }
}

/// Loads the rerank model at `path` (a Hugging Face folder or a GGUF file), choosing the kind
/// from what the files are. The family's `max_tokens` caps the sequence length.
pub fn load_rerank_model(path: &Path, family: &ModelFamily) -> Result<Box<dyn Rerank>> {
    let max_tokens = family.max_tokens.map(|t| t as usize);
    let is_gguf_file = path.is_file()
        && path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("gguf"));
    let dir = if path.is_file() {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    let config_path = dir.join("config.json");
    if is_gguf_file || !config_path.is_file() {
        // A GGUF model (a file, or a folder holding one).
        let engine = crate::llm::LlmEngine::load_gguf(path, None, &[], &[])?;
        return Ok(Box::new(LlmReranker::new(engine, max_tokens)?));
    }
    let config = crate::files::read_json(&config_path)?;
    let architecture = config["architectures"][0].as_str().unwrap_or("");
    if architecture.ends_with("ForCausalLM") {
        let engine = crate::llm::LlmEngine::load_safetensors(dir, None, &[], &[])?;
        return Ok(Box::new(LlmReranker::new(engine, max_tokens)?));
    }
    Ok(Box::new(CrossEncoder::load(dir, &config, max_tokens)?))
}

/// The order of results: by score, highest first; equal scores keep document order.
pub fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_descending_and_stable() {
        assert_eq!(ranking(&[0.1, 0.9, 0.5, 0.9]), vec![1, 3, 2, 0]);
        assert!(ranking(&[]).is_empty());
    }
}
