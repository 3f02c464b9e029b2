//! JinaBERT v2 sentence embedders (jina-embeddings-v2-base-en): BERT with ALiBi attention
//! biases instead of position embeddings, a GEGLU feed-forward and post-layer-norms.
//!
//! Our own forward pass rather than candle's `jina_bert`: candle's applies no attention mask (a
//! padded batch would attend to its padding), and it precomputes the ALiBi bias for
//! `max_position_embeddings` squared (8192² per head for the real model, gigabytes). Here the
//! bias is built per pass for the batch's length and the padding mask is added to it, as the
//! reference implementation does.

use super::attention::attention;
use super::{padded, weights, PoolingConfig};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, linear_no_bias, Embedding, LayerNorm, Linear};
use candle_nn::{Module, VarBuilder};
use serde::Deserialize;
use std::path::Path;

/// The `config.json` fields JinaBERT reads.
#[derive(Debug, Clone, Deserialize)]
struct Config {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    position_embedding_type: Option<String>,
    #[serde(default)]
    feed_forward_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_positions() -> usize {
    8192
}

/// The ALiBi slopes of `n` heads (Press et al.): `2^(-8 i / n)` for `i = 1..=n` when `n` is a
/// power of two; otherwise those of the closest lower power of two `p`, then every other slope
/// of `2p`, as many as are missing.
fn alibi_slopes(n: usize) -> Vec<f64> {
    let power_of_two = |n: usize| -> Vec<f64> {
        (1..=n)
            .map(|i| 2f64.powf(-8.0 * i as f64 / n as f64))
            .collect()
    };
    if n.is_power_of_two() {
        return power_of_two(n);
    }
    let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let mut slopes = power_of_two(p);
    slopes.extend(power_of_two(2 * p).into_iter().step_by(2).take(n - p));
    slopes
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    gated: Linear,
    wo: Linear,
    mlp_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let att = vb.pp("attention");
        let mlp = vb.pp("mlp");
        Ok(Layer {
            query: linear(h, h, att.pp("self.query"))?,
            key: linear(h, h, att.pp("self.key"))?,
            value: linear(h, h, att.pp("self.value"))?,
            attn_out: linear(h, h, att.pp("output.dense"))?,
            attn_norm: layer_norm(h, c.layer_norm_eps, att.pp("output.LayerNorm"))?,
            gated: linear_no_bias(h, 2 * c.intermediate_size, mlp.pp("gated_layers"))?,
            wo: linear(c.intermediate_size, h, mlp.pp("wo"))?,
            mlp_norm: layer_norm(h, c.layer_norm_eps, mlp.pp("layernorm"))?,
        })
    }
}

/// A loaded JinaBERT v2 encoder with its pooling rules.
pub struct JinaBertEmbedder {
    word: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    /// `[heads, 1, 1]`, negated: the bias is `-slope * |i - j|`.
    slopes: Tensor,
    heads: usize,
    intermediate: usize,
    relu: bool,
    pooling: PoolingConfig,
    pad_id: u32,
    dims: usize,
    device: Device,
}

impl JinaBertEmbedder {
    /// Loads the weights in `dir` (with or without a `bert.` prefix) with `config.json`'s text.
    /// Also returns the longest sequence it reads: ALiBi has no position table, so the
    /// configured `max_position_embeddings`.
    pub fn load(dir: &Path, config_text: &str, pooling: PoolingConfig) -> Result<(Self, usize)> {
        let c: Config = serde_json::from_str(config_text)
            .map_err(|e| Error::bad_request(format!("unsupported JinaBERT config.json: {e}")))?;
        if let Some(p) = c
            .position_embedding_type
            .as_deref()
            .filter(|p| *p != "alibi")
        {
            return Err(Error::bad_request(format!(
                "JinaBERT position_embedding_type {p} is not supported (only alibi)"
            )));
        }
        let relu = match c.feed_forward_type.as_deref().unwrap_or("geglu") {
            "geglu" => false,
            "reglu" => true,
            other => {
                return Err(Error::bad_request(format!(
                    "JinaBERT feed_forward_type {other} is not supported (geglu, reglu)"
                )))
            }
        };
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::bad_request(
                "JinaBERT hidden_size is not a multiple of num_attention_heads",
            ));
        }
        let device = Device::Cpu;
        let vb = weights(dir, &device)?;
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        if vb.contains_tensor("encoder.layer.0.attention.self.layer_norm_q.weight") {
            return Err(Error::bad_request(
                "JinaBERT with query/key layer norms (jina-bert-v2-qk-post-norm) is not supported",
            ));
        }
        let bad = |e: candle_core::Error| {
            Error::bad_request(format!(
                "cannot load JinaBERT weights from {}: {e}",
                dir.display()
            ))
        };
        let emb = vb.pp("embeddings");
        let word =
            embedding(c.vocab_size, c.hidden_size, emb.pp("word_embeddings")).map_err(bad)?;
        let token_type = embedding(
            c.type_vocab_size,
            c.hidden_size,
            emb.pp("token_type_embeddings"),
        )
        .map_err(bad)?;
        let emb_norm =
            layer_norm(c.hidden_size, c.layer_norm_eps, emb.pp("LayerNorm")).map_err(bad)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), &c))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(bad)?;
        let slopes: Vec<f32> = alibi_slopes(c.num_attention_heads)
            .into_iter()
            .map(|s| -s as f32)
            .collect();
        let slopes = Tensor::from_vec(slopes, (c.num_attention_heads, 1, 1), &device)?;
        let embedder = JinaBertEmbedder {
            word,
            token_type,
            emb_norm,
            layers,
            slopes,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            relu,
            pooling,
            pad_id: c.pad_token_id.unwrap_or(0),
            dims: c.hidden_size,
            device,
        };
        Ok((embedder, c.max_position_embeddings))
    }

    /// The bias of query rows `first..first + rows`, `[batch, heads, rows, seq]`: ALiBi
    /// (`-slope · |i - j|`, the slopes negative already) plus a very negative value on padded
    /// keys (`pad`, `[batch, 1, 1, seq]`).
    fn attention_bias(
        &self,
        pad: &Tensor,
        first: usize,
        rows: usize,
    ) -> candle_core::Result<Tensor> {
        let s = pad.dim(3)?;
        let distance: Vec<f32> = (first..first + rows)
            .flat_map(|i| (0..s).map(move |j| (j as f32 - i as f32).abs()))
            .collect();
        let distance = Tensor::from_vec(distance, (rows, s), &self.device)?;
        let alibi = distance.unsqueeze(0)?.broadcast_mul(&self.slopes)?; // [h, rows, s]
        alibi.unsqueeze(0)?.broadcast_add(pad)
    }

    fn encode(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let hd = self.dims / self.heads;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.token_type.forward(&ids.zeros_like()?)?)?;
        let mut x = self.emb_norm.forward(&x)?;
        let pad =
            ((mask.to_dtype(DType::F32)? - 1.0)? * f64::from(f32::MAX))?.reshape((b, 1, 1, s))?;
        let bias = |first: usize, rows: usize| self.attention_bias(&pad, first, rows).map(Some);
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, s, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        for layer in &self.layers {
            let q = split(layer.query.forward(&x)?)?;
            let k = split(layer.key.forward(&x)?)?;
            let v = split(layer.value.forward(&x)?)?;
            let ctx = attention(&q, &k, &v, 1.0 / (hd as f64).sqrt(), &bias)?
                .transpose(1, 2)?
                .reshape((b, s, self.dims))?;
            x = layer
                .attn_norm
                .forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let h = layer.gated.forward(&x)?;
            let gated = h.narrow(D::Minus1, 0, self.intermediate)?;
            let non_gated = h.narrow(D::Minus1, self.intermediate, self.intermediate)?;
            let act = if self.relu {
                gated.relu()?
            } else {
                gated.gelu_erf()?
            };
            let h = layer.wo.forward(&(act * non_gated)?)?;
            x = layer.mlp_norm.forward(&(h + &x)?)?;
        }
        Ok(x)
    }
}

impl super::Embed for JinaBertEmbedder {
    fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (ids, mask) = padded(batch, self.pad_id, &self.device)?;
        let hidden = self.encode(&ids, &mask)?;
        let lens: Vec<usize> = batch.iter().map(|s| s.len()).collect();
        self.pooling.pool_padded(&hidden, &lens)
    }

    fn dimensions(&self) -> usize {
        self.dims
    }
}

#[cfg(test)]
mod tests {
    use super::alibi_slopes;

    #[test]
    fn alibi_slopes_follow_the_paper() {
        let s = alibi_slopes(8);
        assert_eq!(s.len(), 8);
        assert!((s[0] - 0.5).abs() < 1e-12 && (s[7] - 2f64.powi(-8)).abs() < 1e-12);
        // 12 heads (jina-embeddings-v2-base-en): the 8 of 8, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
        let s = alibi_slopes(12);
        assert_eq!(s.len(), 12);
        assert!((s[7] - 2f64.powi(-8)).abs() < 1e-12);
        for (i, e) in [-0.5, -1.5, -2.5, -3.5].iter().enumerate() {
            assert!((s[8 + i] - 2f64.powf(*e)).abs() < 1e-12, "{s:?}");
        }
    }
}
