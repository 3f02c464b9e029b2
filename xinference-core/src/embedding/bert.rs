//! BERT-family sentence embedders (MiniLM, BGE, GTE) on candle's `bert::BertModel`.

use super::{EmbedInput, Embedding, PoolingConfig};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// Inputs per forward pass; longer requests are split.
const MAX_BATCH: usize = 32;

/// A loaded BERT embedder: weights, tokenizer and pooling rules.
pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: PoolingConfig,
    max_len: usize,
    pad_id: u32,
    dims: usize,
    device: Device,
}

impl BertEmbedder {
    /// Loads `dir` (config.json, tokenizer.json, model.safetensors or pytorch_model.bin).
    /// `max_tokens` (the spec's) caps the sequence length, as does the model's
    /// `sentence_bert_config.json` `max_seq_length` and `max_position_embeddings`.
    pub fn load(dir: &Path, config_text: &str, max_tokens: Option<usize>) -> Result<Self> {
        let config: Config = serde_json::from_str(config_text)
            .map_err(|e| Error::bad_request(format!("unsupported BERT config.json: {e}")))?;
        let device = Device::Cpu;
        let vb = weights(dir, &device)?;
        let model = BertModel::load(vb, &config).map_err(|e| {
            Error::bad_request(format!(
                "cannot load BERT weights from {}: {e}",
                dir.display()
            ))
        })?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            Error::bad_request(format!("cannot read {}/tokenizer.json: {e}", dir.display()))
        })?;
        let st_max = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map(|v| v as usize);
        let max_len = [Some(config.max_position_embeddings), st_max, max_tokens]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(512);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| Error::internal(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);
        Ok(BertEmbedder {
            model,
            tokenizer,
            pooling: PoolingConfig::from_dir(dir),
            max_len,
            pad_id: config.pad_token_id as u32,
            dims: config.hidden_size,
            device,
        })
    }

    fn encode(&self, input: &EmbedInput) -> Result<Vec<u32>> {
        match input {
            EmbedInput::Text(text) => {
                let enc = self
                    .tokenizer
                    .encode(text.as_str(), true)
                    .map_err(|e| Error::bad_request(format!("cannot tokenize input: {e}")))?;
                Ok(enc.get_ids().to_vec())
            }
            EmbedInput::Tokens(ids) => {
                let vocab = self.tokenizer.get_vocab_size(true) as u32;
                if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
                    return Err(Error::bad_request(format!(
                        "token id {bad} is outside the vocabulary (size {vocab})"
                    )));
                }
                Ok(ids.iter().copied().take(self.max_len).collect())
            }
        }
    }

    fn forward_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let longest = batch.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut ids = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for seq in batch {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(self.pad_id, longest - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - seq.len()));
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        let pooled = self.pooling.apply(&hidden, &mask)?;
        Ok(pooled.to_dtype(DType::F32)?.to_vec2()?)
    }
}

impl super::Embed for BertEmbedder {
    fn embed(&mut self, inputs: &[EmbedInput]) -> Result<Vec<Embedding>> {
        let encoded = inputs
            .iter()
            .map(|i| self.encode(i))
            .collect::<Result<Vec<_>>>()?;
        if let Some(i) = encoded.iter().position(Vec::is_empty) {
            return Err(Error::bad_request(format!("input {i} has no tokens")));
        }
        // Sort by length so each forward pass pads as little as possible.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut out: Vec<Option<Embedding>> = vec![None; encoded.len()];
        for chunk in order.chunks(MAX_BATCH) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            let vectors = crate::compute::with_budget(|| self.forward_batch(&batch))?;
            for (&i, vector) in chunk.iter().zip(vectors) {
                out[i] = Some(Embedding {
                    vector,
                    tokens: encoded[i].len(),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|e| e.expect("every input embedded"))
            .collect())
    }

    fn dimensions(&self) -> usize {
        self.dims
    }
}

fn weights(dir: &Path, device: &Device) -> Result<VarBuilder<'static>> {
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
