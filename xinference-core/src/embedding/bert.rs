//! BERT-family sentence embedders (MiniLM, BGE, GTE, E5) on candle's `bert::BertModel`.

use super::{padded, weights, PoolingConfig};
use crate::{Error, Result};
use candle_core::{DType, Device};
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;

/// A loaded BERT encoder with its pooling rules.
pub struct BertEmbedder {
    model: BertModel,
    pooling: PoolingConfig,
    pad_id: u32,
    dims: usize,
    device: Device,
}

impl BertEmbedder {
    /// Loads the weights in `dir` with `config.json`'s text. Also returns the longest sequence
    /// the position table allows.
    pub fn load(dir: &Path, config_text: &str, pooling: PoolingConfig) -> Result<(Self, usize)> {
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
        let embedder = BertEmbedder {
            model,
            pooling,
            pad_id: config.pad_token_id as u32,
            dims: config.hidden_size,
            device,
        };
        Ok((embedder, config.max_position_embeddings))
    }
}

impl super::Embed for BertEmbedder {
    fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (ids, mask) = padded(batch, self.pad_id, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        let pooled = self.pooling.apply(&hidden, &mask)?;
        Ok(pooled.to_dtype(DType::F32)?.to_vec2()?)
    }

    fn dimensions(&self) -> usize {
        self.dims
    }
}
