//! BERT-layout sentence embedders on our packed [`Encoder`]: BERT (MiniLM, BGE, GTE, E5) and
//! XLM-RoBERTa (bge-m3, multilingual-e5), which differ only in position numbering, defaults
//! and the prefix of their weights.

use super::encoder::{Encoder, EncoderConfig};
use super::{weights, PoolingConfig};
use crate::{Error, Result};
use candle_core::Device;
use candle_nn::VarBuilder;
use std::path::Path;

/// Which of the two layouts a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// BERT: positions from 0; weights maybe under `bert.`.
    Bert,
    /// XLM-RoBERTa: positions after the padding index; weights maybe under `roberta.`.
    XlmRoberta,
}

/// A loaded encoder with its pooling rules.
pub struct BertEmbedder {
    encoder: Encoder,
    pooling: PoolingConfig,
}

impl BertEmbedder {
    /// Loads the weights in `dir` with its parsed `config.json`. Also returns the longest sequence
    /// the position table allows (for XLM-RoBERTa `max_position_embeddings - pad_token_id - 1`,
    /// 512 for the usual 514).
    pub fn load(
        dir: &Path,
        config: &serde_json::Value,
        layout: Layout,
        pooling: PoolingConfig,
    ) -> Result<(Self, usize)> {
        let weights = weights(dir, &Device::Cpu)?;
        let encoder = load_encoder(dir, &weights, config, layout)?;
        let max_tokens = encoder.config().max_tokens();
        Ok((BertEmbedder { encoder, pooling }, max_tokens))
    }
}

/// Loads the encoder of a BERT or XLM-RoBERTa folder `dir` from its `weights` (an embedder's,
/// or a classifier's: the encoder may sit under `bert.` / `roberta.`).
pub(crate) fn load_encoder(
    dir: &Path,
    weights: &VarBuilder<'static>,
    config: &serde_json::Value,
    layout: Layout,
) -> Result<Encoder> {
    let (name, prefix) = match layout {
        Layout::Bert => ("BERT", "bert"),
        Layout::XlmRoberta => ("XLM-RoBERTa", "roberta"),
    };
    let config = EncoderConfig::from_json(config, layout == Layout::XlmRoberta)?;
    let vb = if weights.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) {
        weights.pp(prefix)
    } else {
        weights.clone()
    };
    Encoder::load(&vb, config).map_err(|e| {
        Error::bad_request(format!(
            "cannot load {name} weights from {}: {e}",
            dir.display()
        ))
    })
}

impl super::Embed for BertEmbedder {
    fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let packed = self.encoder.forward(batch, None)?;
        Ok((0..batch.len())
            .map(|i| self.pooling.pool(packed.sequence(i), packed.width))
            .collect())
    }

    fn dimensions(&self) -> usize {
        self.encoder.config().hidden
    }
}
