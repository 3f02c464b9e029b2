//! Qwen3 decoder embedders (Qwen3-Embedding): the Qwen3 decoder stack (RMSNorm, per-head
//! query/key RMSNorm, rotary positions, grouped-query attention, SwiGLU) with causal attention.
//! The sentence vector is usually the last real token's (`lasttoken` pooling in `1_Pooling`),
//! normalised.
//!
//! Batches are right-padded. Under a causal mask a real token never sees the padding after it,
//! so each sequence's hidden states are exactly those of the sequence alone, with positions
//! from 0 (Qwen3-Embedding's tokenizer pads on the left; rotary attention depends only on
//! relative positions, so that is the same result). Last-token pooling reads the last real
//! token; the tokenizer's post-processor appends `<|endoftext|>`, so that is it.
//!
//! Our own forward pass rather than candle's `qwen3`: candle's is a generation model with a
//! KV cache, a fixed `model.` weight prefix and no padding handling.

use super::attention::attention;
use super::{padded, weights, PoolingConfig};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use candle_nn::{embedding, linear_b, linear_no_bias, rms_norm, Embedding, Linear, RmsNorm};
use candle_nn::{Module, VarBuilder};
use serde_json::Value;
use std::path::Path;

/// The `config.json` fields a Qwen3 embedder reads.
#[derive(Debug, Clone)]
struct Config {
    vocab_size: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inner: usize,
    eps: f64,
    rope_theta: f64,
    attention_bias: bool,
    positions: usize,
    pad_id: u32,
}

impl Config {
    fn parse(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_request(format!("unsupported Qwen3 config.json: {e}")))?;
        let size = |key: &str| -> Result<usize> {
            v[key]
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| Error::bad_request(format!("Qwen3 config.json has no {key}")))
        };
        let hidden = size("hidden_size")?;
        let heads = size("num_attention_heads")?;
        let kv_heads = v["num_key_value_heads"]
            .as_u64()
            .map_or(heads, |n| n as usize);
        let head_dim = v["head_dim"]
            .as_u64()
            .map_or(hidden / heads.max(1), |n| n as usize);
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !head_dim.is_multiple_of(2)
        {
            return Err(Error::bad_request(format!(
                "Qwen3 with {heads} heads, {kv_heads} key/value heads and head_dim {head_dim} \
                 is not supported"
            )));
        }
        if v["rope_scaling"].is_object()
            || v["rope_parameters"]["rope_type"]
                .as_str()
                .is_some_and(|t| t != "default")
        {
            return Err(Error::bad_request(
                "Qwen3 rope scaling is not supported for embeddings",
            ));
        }
        if v["hidden_act"].as_str().is_some_and(|a| a != "silu") {
            return Err(Error::bad_request("Qwen3 hidden_act other than silu"));
        }
        Ok(Config {
            vocab_size: size("vocab_size")?,
            hidden,
            layers: size("num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim,
            inner: size("intermediate_size")?,
            eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            rope_theta: v["rope_theta"]
                .as_f64()
                .or_else(|| v["rope_parameters"]["rope_theta"].as_f64())
                .unwrap_or(10000.0),
            attention_bias: v["attention_bias"].as_bool().unwrap_or(false),
            positions: v["max_position_embeddings"].as_u64().unwrap_or(32768) as usize,
            pad_id: v["pad_token_id"].as_u64().unwrap_or(0) as u32,
        })
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    ln1: RmsNorm,
    ln2: RmsNorm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        let (h, d) = (c.hidden, c.head_dim);
        let att = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Layer {
            q: linear_b(h, c.heads * d, c.attention_bias, att.pp("q_proj"))?,
            k: linear_b(h, c.kv_heads * d, c.attention_bias, att.pp("k_proj"))?,
            v: linear_b(h, c.kv_heads * d, c.attention_bias, att.pp("v_proj"))?,
            o: linear_b(c.heads * d, h, c.attention_bias, att.pp("o_proj"))?,
            q_norm: rms_norm(d, c.eps, att.pp("q_norm"))?,
            k_norm: rms_norm(d, c.eps, att.pp("k_norm"))?,
            gate: linear_no_bias(h, c.inner, mlp.pp("gate_proj"))?,
            up: linear_no_bias(h, c.inner, mlp.pp("up_proj"))?,
            down: linear_no_bias(c.inner, h, mlp.pp("down_proj"))?,
            ln1: rms_norm(h, c.eps, vb.pp("input_layernorm"))?,
            ln2: rms_norm(h, c.eps, vb.pp("post_attention_layernorm"))?,
        })
    }
}

/// A loaded Qwen3 decoder with its pooling rules.
pub struct Qwen3Embedder {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// `1 / theta^(2i / head_dim)`, `[head_dim / 2]`.
    inv_freq: Tensor,
    config: Config,
    pooling: PoolingConfig,
    device: Device,
}

impl Qwen3Embedder {
    /// Loads the weights in `dir` (a `Qwen3Model` checkpoint, or a `Qwen3ForCausalLM` one whose
    /// decoder is under `model.`; a language-model head is ignored) with `config.json`'s text.
    /// Also returns the longest sequence it reads (`max_position_embeddings`).
    pub fn load(dir: &Path, config_text: &str, pooling: PoolingConfig) -> Result<(Self, usize)> {
        let c = Config::parse(config_text)?;
        let device = Device::Cpu;
        let vb = weights(dir, &device)?;
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb.pp("model")
        } else {
            vb
        };
        let bad = |e: candle_core::Error| {
            Error::bad_request(format!(
                "cannot load Qwen3 weights from {}: {e}",
                dir.display()
            ))
        };
        let embed = embedding(c.vocab_size, c.hidden, vb.pp("embed_tokens")).map_err(bad)?;
        let layers = (0..c.layers)
            .map(|i| Layer::load(vb.pp(format!("layers.{i}")), &c))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(bad)?;
        let norm = rms_norm(c.hidden, c.eps, vb.pp("norm")).map_err(bad)?;
        let d = c.head_dim;
        let inv_freq: Vec<f32> = (0..d / 2)
            .map(|i| (1.0 / c.rope_theta.powf(2.0 * i as f64 / d as f64)) as f32)
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, d / 2, &device)?;
        let positions = c.positions;
        Ok((
            Qwen3Embedder {
                embed,
                layers,
                norm,
                inv_freq,
                config: c,
                pooling,
                device,
            },
            positions,
        ))
    }

    fn attention(&self, l: &Layer, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, s, _) = x.dims3()?;
        let d = c.head_dim;
        let heads = |t: Tensor, n: usize, norm: Option<&RmsNorm>| -> candle_core::Result<Tensor> {
            let t = t.reshape((b, s, n, d))?;
            let t = match norm {
                Some(norm) => norm.forward(&t)?,
                None => t,
            };
            t.transpose(1, 2)?.contiguous()
        };
        let q = heads(l.q.forward(x)?, c.heads, Some(&l.q_norm))?;
        let k = heads(l.k.forward(x)?, c.kv_heads, Some(&l.k_norm))?;
        let v = heads(l.v.forward(x)?, c.kv_heads, None)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        // Grouped-query attention: each key/value head serves `heads / kv_heads` query heads.
        let group = c.heads / c.kv_heads;
        let repeat = |t: Tensor| -> candle_core::Result<Tensor> {
            if group == 1 {
                return Ok(t);
            }
            t.unsqueeze(2)?
                .broadcast_as((b, c.kv_heads, group, s, d))?
                .reshape((b, c.heads, s, d))
        };
        let (k, v) = (repeat(k)?, repeat(v)?);
        // Causal: query i sees keys 0..=i. Right padding then needs no mask of its own.
        let causal = |first: usize, rows: usize| -> candle_core::Result<Option<Tensor>> {
            let mask: Vec<f32> = (first..first + rows)
                .flat_map(|i| (0..s).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Ok(Some(Tensor::from_vec(mask, (1, 1, rows, s), x.device())?))
        };
        let ctx = attention(&q, &k, &v, 1.0 / (d as f64).sqrt(), &causal)?
            .transpose(1, 2)?
            .reshape((b, s, c.heads * d))?;
        Ok(l.o.forward(&ctx)?)
    }

    fn encode(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, s) = ids.dims2()?;
        let mut x = self.embed.forward(ids)?;
        let pos: Vec<f32> = (0..s as u32).map(|p| p as f32).collect();
        let freqs = Tensor::from_vec(pos, (s, 1), &self.device)?
            .broadcast_mul(&self.inv_freq.unsqueeze(0)?)?; // [s, head_dim / 2]
        let (cos, sin) = (freqs.cos()?, freqs.sin()?);
        for l in &self.layers {
            let a = self.attention(l, &l.ln1.forward(&x)?, &cos, &sin)?;
            x = (x + a)?;
            let h = l.ln2.forward(&x)?;
            let m = l
                .down
                .forward(&(l.gate.forward(&h)?.silu()? * l.up.forward(&h)?)?)?;
            x = (x + m)?;
        }
        Ok(self.norm.forward(&x)?)
    }
}

impl super::Embed for Qwen3Embedder {
    fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (ids, _) = padded(batch, self.config.pad_id, &self.device)?;
        let hidden = self.encode(&ids)?;
        let lens: Vec<usize> = batch.iter().map(|s| s.len()).collect();
        self.pooling.pool_padded(&hidden, &lens)
    }

    fn dimensions(&self) -> usize {
        self.config.hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::{Embed, Pooling};
    use std::collections::HashMap;

    /// A `Qwen3ForCausalLM` checkpoint (decoder under `model.`, plus an `lm_head`) gives the
    /// same vectors as the `Qwen3Model` one.
    #[test]
    fn causal_lm_layout_loads_the_same_decoder() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-embedders/qwen3");
        let config_text = std::fs::read_to_string(fixture.join("config.json"))
            .expect("the qwen3 fixture (scripts/fixtures/make_tiny_embedders.py)");
        let pooling = PoolingConfig {
            pooling: Pooling::LastToken,
            normalize: true,
        };
        let tensors =
            candle_core::safetensors::load(fixture.join("model.safetensors"), &Device::Cpu)
                .expect("the qwen3 fixture's weights");
        let mut renamed: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (format!("model.{k}"), v.clone()))
            .collect();
        renamed.insert(
            "lm_head.weight".into(),
            tensors["embed_tokens.weight"].clone(),
        );
        let dir = tempfile::tempdir().unwrap();
        candle_core::safetensors::save(&renamed, dir.path().join("model.safetensors")).unwrap();
        let causal_config = config_text.replace("\"Qwen3Model\"", "\"Qwen3ForCausalLM\"");
        let batch: [&[u32]; 3] = [&[5, 6, 7, 8, 0], &[9, 0], &[10, 11, 12, 0]];
        let (mut a, _) = Qwen3Embedder::load(&fixture, &config_text, pooling).unwrap();
        let (mut b, _) = Qwen3Embedder::load(dir.path(), &causal_config, pooling).unwrap();
        assert_eq!(a.forward(&batch).unwrap(), b.forward(&batch).unwrap());
        // Right padding changes nothing: each sequence alone gives its batched vector.
        let batched = a.forward(&batch).unwrap();
        for (seq, v) in batch.iter().zip(&batched) {
            let alone = a.forward(&[seq]).unwrap().remove(0);
            let d = alone
                .iter()
                .zip(v)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-6, "{seq:?}: {d}");
        }
    }
}
