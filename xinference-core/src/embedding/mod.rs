//! Text embeddings: one small trait, [`Embed`] (one forward pass over a batch of token ids), the
//! [`EmbedTokenizer`] that turns requests into token ids off the compute thread, one module per
//! architecture, and the sentence-transformers pooling rules in `pooling`.
//!
//! The architecture is chosen from `config.json` (`architectures`, then `model_type`):
//! `bert` (MiniLM, BGE, GTE, E5) and `xlm-roberta` (bge-m3, multilingual-e5), both on the
//! padding-free [`encoder`]; JinaBERT v2 (jina-embeddings-v2, `JinaBertForMaskedLM` /
//! `JinaBertModel`, whose `model_type` is `bert`), `nomic_bert` (nomic-embed-text-v1.5) and
//! `qwen3` (Qwen3-Embedding), on padded candle passes.

mod attention;
pub mod bert;
pub mod encoder;
mod jina_bert;
mod nomic_bert;
mod pooling;
mod qwen3;
mod tokenize;

pub use pooling::{Pooling, PoolingConfig};
pub use tokenize::{EmbedTokenizer, Truncation};

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;
use std::sync::Arc;

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

/// A loaded embedding network. Runs on a worker thread, never on the async executor.
pub trait Embed: Send {
    /// One forward pass over `batch` (each sequence non-empty and at most the model's length),
    /// pooled: one vector per sequence.
    fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>>;
    /// Length of the vectors it produces.
    fn dimensions(&self) -> usize;
}

/// A loaded embedding model: its tokenizer (shareable across threads) and its network.
pub struct EmbeddingModel {
    /// Turns inputs into token ids; cheap to share, used off the compute thread.
    pub tokenizer: Arc<EmbedTokenizer>,
    /// The network.
    pub network: Box<dyn Embed>,
}

/// Sequences per forward pass in [`EmbeddingModel::embed`].
const EMBED_CHUNK: usize = 32;

impl EmbeddingModel {
    /// Tokenizes (truncating to the model's length) and embeds every input, in order, in
    /// length-sorted forward passes. A convenience for direct library use; the runtime batches
    /// requests itself.
    pub fn embed(&mut self, inputs: &[EmbedInput]) -> Result<Vec<Embedding>> {
        let encoded = inputs
            .iter()
            .map(|i| self.tokenizer.encode(i, Truncation::default()))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut out: Vec<Option<Embedding>> = vec![None; encoded.len()];
        for chunk in order.chunks(EMBED_CHUNK) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].as_slice()).collect();
            let vectors = crate::compute::with_budget(|| self.network.forward(&batch))?;
            for (&i, vector) in chunk.iter().zip(vectors) {
                out[i] = Some(Embedding {
                    vector,
                    tokens: encoded[i].len(),
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// Loads the embedding model in `dir` (a Hugging Face / sentence-transformers folder),
/// choosing the architecture from its `config.json`: `architectures` first (JinaBERT says
/// `model_type: bert`), then `model_type`. `max_tokens` (the spec's) caps the
/// sequence length, as do `sentence_bert_config.json` and the model's position table.
pub fn load_embedding_model(dir: &Path, max_tokens: Option<usize>) -> Result<EmbeddingModel> {
    let dir = if dir.is_file() {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let config_path = dir.join("config.json");
    let config = crate::files::read_json(&config_path)?;
    // The architectures that read their own typed configuration take it as JSON text.
    let config_text = config.to_string();
    let arch = config["architectures"][0].as_str().unwrap_or("");
    let model_type = config["model_type"].as_str().unwrap_or("");
    let pooling = PoolingConfig::from_dir(dir);
    // sentence-transformers' own limit: `max_seq_length` in sentence_bert_config.json, else
    // (as sentence-transformers falls back, and as version 5+ saves it) the tokenizer's
    // `model_max_length`.
    let read = |file: &str, key: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v[key].as_f64())
            .filter(|v| *v >= 1.0)
            .map(|v| v.min(1e9) as usize)
    };
    let st_max = read("sentence_bert_config.json", "max_seq_length")
        .or_else(|| read("tokenizer_config.json", "model_max_length"));
    let (network, positions): (Box<dyn Embed>, usize) = match (arch, model_type) {
        ("JinaBertForMaskedLM" | "JinaBertModel", _) => {
            let (m, positions) = jina_bert::JinaBertEmbedder::load(dir, &config_text, pooling)?;
            (Box::new(m), positions)
        }
        ("NomicBertModel" | "NomicBertForPreTraining", _) | (_, "nomic_bert") => {
            let (m, positions) = nomic_bert::NomicBertEmbedder::load(dir, &config_text, pooling)?;
            (Box::new(m), positions)
        }
        ("Qwen3Model" | "Qwen3ForCausalLM", _) | (_, "qwen3") => {
            let (m, positions) = qwen3::Qwen3Embedder::load(dir, &config_text, pooling)?;
            (Box::new(m), positions)
        }
        ("XLMRobertaModel" | "XLMRobertaForMaskedLM", _) | (_, "xlm-roberta") => {
            let (m, positions) =
                bert::BertEmbedder::load(dir, &config, bert::Layout::XlmRoberta, pooling)?;
            (Box::new(m), positions)
        }
        ("BertModel" | "BertForMaskedLM", _) | (_, "bert") => {
            let (m, positions) =
                bert::BertEmbedder::load(dir, &config, bert::Layout::Bert, pooling)?;
            (Box::new(m), positions)
        }
        _ => {
            return Err(Error::bad_request(format!(
                "embedding architecture `{}` (from {}) cannot be run by this build yet",
                if arch.is_empty() { model_type } else { arch },
                config_path.display()
            )))
        }
    };
    let max_len = [Some(positions), st_max, max_tokens]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(512);
    let tokenizer = EmbedTokenizer::load(dir, max_len)?;
    Ok(EmbeddingModel {
        tokenizer: Arc::new(tokenizer),
        network,
    })
}

/// Right-pads `batch` with `pad_id` into `[batch, longest]` ids and a 0/1 attention mask.
pub(crate) fn padded(batch: &[&[u32]], pad_id: u32, device: &Device) -> Result<(Tensor, Tensor)> {
    let longest = batch.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut ids = Vec::with_capacity(batch.len() * longest);
    let mut mask = Vec::with_capacity(batch.len() * longest);
    for seq in batch {
        ids.extend_from_slice(seq);
        ids.extend(std::iter::repeat_n(pad_id, longest - seq.len()));
        mask.extend(std::iter::repeat_n(1u32, seq.len()));
        mask.extend(std::iter::repeat_n(0u32, longest - seq.len()));
    }
    let shape = (batch.len(), longest);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

/// The weights of `dir`: `model.safetensors` (memory-mapped) or `pytorch_model.bin`.
pub(crate) fn weights(dir: &Path, device: &Device) -> Result<VarBuilder<'static>> {
    let safetensors = dir.join("model.safetensors");
    if safetensors.exists() {
        // SAFETY: the file is memory-mapped read-only; model files are not modified while loaded.
        return Ok(unsafe {
            VarBuilder::from_mmaped_safetensors(&[safetensors], DType::F32, device)?
        });
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.exists() {
        return Ok(VarBuilder::from_pth(bin, DType::F32, device)?);
    }
    Err(Error::bad_request(format!(
        "no model.safetensors or pytorch_model.bin in {}",
        dir.display()
    )))
}
