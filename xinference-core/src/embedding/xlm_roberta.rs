//! XLM-RoBERTa sentence embedders (bge-m3, multilingual-e5) on candle's
//! `xlm_roberta::XLMRobertaModel`.

use super::{padded, weights, PoolingConfig};
use crate::{Error, Result};
use candle_core::{DType, Device};
use candle_transformers::models::xlm_roberta::{Config, XLMRobertaModel};
use std::path::Path;

/// A loaded XLM-RoBERTa encoder with its pooling rules.
pub struct XlmRobertaEmbedder {
    model: XLMRobertaModel,
    pooling: PoolingConfig,
    pad_id: u32,
    dims: usize,
    device: Device,
}

impl XlmRobertaEmbedder {
    /// Loads the weights in `dir` with `config.json`'s text. Also returns the longest sequence
    /// the position table allows: RoBERTa positions start after the padding index, so
    /// `max_position_embeddings - pad_token_id - 1` (512 for the usual 514).
    pub fn load(dir: &Path, config_text: &str, pooling: PoolingConfig) -> Result<(Self, usize)> {
        let config = parse_config(config_text)?;
        if config.position_embedding_type != "absolute" {
            return Err(Error::bad_request(format!(
                "XLM-RoBERTa position_embedding_type {} is not supported (only absolute)",
                config.position_embedding_type
            )));
        }
        let device = Device::Cpu;
        let vb = weights(dir, &device)?;
        // Checkpoints saved from XLMRobertaForMaskedLM keep the encoder under `roberta.`.
        let vb = if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
            vb.pp("roberta")
        } else {
            vb
        };
        let model = XLMRobertaModel::new(&config, vb).map_err(|e| {
            Error::bad_request(format!(
                "cannot load XLM-RoBERTa weights from {}: {e}",
                dir.display()
            ))
        })?;
        let positions = config
            .max_position_embeddings
            .saturating_sub(config.pad_token_id as usize + 1)
            .max(1);
        let embedder = XlmRobertaEmbedder {
            model,
            pooling,
            pad_id: config.pad_token_id,
            dims: config.hidden_size,
            device,
        };
        Ok((embedder, positions))
    }
}

/// `config.json`, with transformers' `XLMRobertaConfig` defaults for the fields that newer
/// transformers versions leave out when they equal the default.
fn parse_config(text: &str) -> Result<Config> {
    let bad = |e: serde_json::Error| {
        Error::bad_request(format!("unsupported XLM-RoBERTa config.json: {e}"))
    };
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
    let defaults = serde_json::json!({
        "position_embedding_type": "absolute",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "type_vocab_size": 2,
        "max_position_embeddings": 512,
        "pad_token_id": 1,
    });
    if let (Some(config), Some(defaults)) = (value.as_object_mut(), defaults.as_object()) {
        for (key, default) in defaults {
            if config.get(key).is_none_or(|v| v.is_null()) {
                config.insert(key.clone(), default.clone());
            }
        }
    }
    serde_json::from_value(value).map_err(bad)
}

impl super::Embed for XlmRobertaEmbedder {
    fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (ids, mask) = padded(batch, self.pad_id, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self
            .model
            .forward(&ids, &mask, &token_types, None, None, None)?;
        let pooled = self.pooling.apply(&hidden, &mask)?;
        Ok(pooled.to_dtype(DType::F32)?.to_vec2()?)
    }

    fn dimensions(&self) -> usize {
        self.dims
    }
}
