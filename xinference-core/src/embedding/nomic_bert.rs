//! Nomic-BERT sentence embedders (nomic-embed-text-v1.5): a BERT-like encoder with rotary
//! position embeddings, a fused `Wqkv` projection, a SwiGLU feed-forward and post-layer-norms.
//!
//! Reads the checkpoint's own layout (`n_embd`, `rotary_emb_base`, `encoder.layers.N.attn.Wqkv`,
//! `mlp.fc11/fc12/fc2`, `norm1/norm2`, `emb_ln`); transformers' names for the sizes
//! (`hidden_size`, `rope_parameters`, ...) are read where the original ones are absent.
//!
//! Our own forward pass rather than candle's `nomic_bert`: candle's passes its whole
//! `n_positions` cos/sin tables to the rotary kernel, which wants them cut to the sequence,
//! and ignores `rotary_emb_fraction`.

use super::attention::attention;
use super::{padded, weights, PoolingConfig};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_nn::{embedding, layer_norm, linear_b, Embedding, LayerNorm, Linear, Module};
use serde_json::Value;
use std::path::Path;

/// The sizes and switches of a nomic_bert `config.json`.
#[derive(Debug, Clone)]
struct Config {
    vocab_size: usize,
    hidden: usize,
    heads: usize,
    layers: usize,
    inner: usize,
    positions: usize,
    type_vocab_size: usize,
    eps: f64,
    rope_base: f64,
    qkv_bias: bool,
    fc1_bias: bool,
    fc2_bias: bool,
    pad_id: u32,
}

impl Config {
    fn parse(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_request(format!("unsupported nomic_bert config.json: {e}")))?;
        let size = |keys: &[&str], default: Option<usize>| -> Result<usize> {
            keys.iter()
                .find_map(|k| v[*k].as_u64())
                .map(|n| n as usize)
                .or(default)
                .ok_or_else(|| {
                    Error::bad_request(format!("nomic_bert config.json has no {}", keys[0]))
                })
        };
        let float = |keys: &[&str], default: f64| {
            keys.iter().find_map(|k| v[*k].as_f64()).unwrap_or(default)
        };
        let flag = |key: &str, default: bool| v[key].as_bool().unwrap_or(default);
        let unsupported = |what: String| {
            Err(Error::bad_request(format!(
                "nomic_bert {what} is not supported"
            )))
        };
        if let Some(f) = v["rotary_emb_fraction"].as_f64().filter(|f| *f != 1.0) {
            return unsupported(format!("rotary_emb_fraction {f}"));
        }
        if flag("rotary_emb_interleaved", false) {
            return unsupported("rotary_emb_interleaved".into());
        }
        if !v["rotary_scaling_factor"].is_null() {
            return unsupported("rotary_scaling_factor".into());
        }
        if flag("use_rms_norm", false)
            || flag("causal", false)
            || flag("parallel_block", false)
            || flag("prenorm", false)
        {
            return unsupported("use_rms_norm, causal, parallel_block or prenorm".into());
        }
        if let Some(a) = v["activation_function"].as_str().filter(|a| *a != "swiglu") {
            return unsupported(format!("activation_function {a}"));
        }
        let rope_base = v["rotary_emb_base"]
            .as_f64()
            .or_else(|| v["rope_parameters"]["rope_theta"].as_f64())
            .or_else(|| v["rope_theta"].as_f64())
            .unwrap_or(1000.0);
        let hidden = size(&["n_embd", "hidden_size"], None)?;
        let heads = size(&["n_head", "num_attention_heads"], None)?;
        if heads == 0 || !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
            return unsupported(format!("n_embd {hidden} with n_head {heads}"));
        }
        Ok(Config {
            vocab_size: size(&["vocab_size"], None)?,
            hidden,
            heads,
            layers: size(&["n_layer", "num_hidden_layers"], None)?,
            inner: size(&["n_inner", "intermediate_size"], Some(4 * hidden))?,
            positions: size(&["n_positions", "max_position_embeddings"], Some(2048))?,
            type_vocab_size: size(&["type_vocab_size"], Some(2))?,
            eps: float(&["layer_norm_epsilon", "layer_norm_eps"], 1e-12),
            rope_base,
            qkv_bias: flag("qkv_proj_bias", false),
            fc1_bias: flag("mlp_fc1_bias", false),
            fc2_bias: flag("mlp_fc2_bias", false),
            pad_id: v["pad_token_id"].as_u64().unwrap_or(0) as u32,
        })
    }
}

struct Block {
    wqkv: Linear,
    out_proj: Linear,
    fc11: Linear,
    fc12: Linear,
    fc2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
}

impl Block {
    fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        let h = c.hidden;
        Ok(Block {
            wqkv: linear_b(h, 3 * h, c.qkv_bias, vb.pp("attn.Wqkv"))?,
            out_proj: linear_b(h, h, c.qkv_bias, vb.pp("attn.out_proj"))?,
            fc11: linear_b(h, c.inner, c.fc1_bias, vb.pp("mlp.fc11"))?,
            fc12: linear_b(h, c.inner, c.fc1_bias, vb.pp("mlp.fc12"))?,
            fc2: linear_b(c.inner, h, c.fc2_bias, vb.pp("mlp.fc2"))?,
            norm1: layer_norm(h, c.eps, vb.pp("norm1"))?,
            norm2: layer_norm(h, c.eps, vb.pp("norm2"))?,
        })
    }
}

/// A loaded Nomic-BERT encoder with its pooling rules.
pub struct NomicBertEmbedder {
    word: Embedding,
    token_type: Option<Embedding>,
    emb_ln: LayerNorm,
    blocks: Vec<Block>,
    /// `1 / base^(2i / head_dim)`, `[head_dim / 2]`.
    inv_freq: Tensor,
    config: Config,
    pooling: PoolingConfig,
    device: Device,
}

impl NomicBertEmbedder {
    /// Loads the weights in `dir` with `config.json`'s text. Also returns the longest sequence
    /// it reads (`n_positions`).
    pub fn load(dir: &Path, config_text: &str, pooling: PoolingConfig) -> Result<(Self, usize)> {
        let c = Config::parse(config_text)?;
        let device = Device::Cpu;
        let vb = weights(dir, &device)?;
        let vb = ["nomic_bert", "bert", "model"]
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")))
            .map_or(vb.clone(), |p| vb.pp(p));
        if vb.contains_tensor("layers.0.self_attn.q_proj.weight") {
            return Err(Error::bad_request(
                "nomic_bert weights in transformers' converted layout are not supported; \
                 use the checkpoint's own layout (encoder.layers.N.attn.Wqkv)",
            ));
        }
        let bad = |e: candle_core::Error| {
            Error::bad_request(format!(
                "cannot load nomic_bert weights from {}: {e}",
                dir.display()
            ))
        };
        let word =
            embedding(c.vocab_size, c.hidden, vb.pp("embeddings.word_embeddings")).map_err(bad)?;
        let token_type = if c.type_vocab_size > 0 {
            Some(
                embedding(
                    c.type_vocab_size,
                    c.hidden,
                    vb.pp("embeddings.token_type_embeddings"),
                )
                .map_err(bad)?,
            )
        } else {
            None
        };
        let emb_ln = layer_norm(c.hidden, c.eps, vb.pp("emb_ln")).map_err(bad)?;
        let blocks = (0..c.layers)
            .map(|i| Block::load(vb.pp(format!("encoder.layers.{i}")), &c))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(bad)?;
        let head_dim = c.hidden / c.heads;
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| (1.0 / c.rope_base.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, head_dim / 2, &device)?;
        let positions = c.positions;
        let embedder = NomicBertEmbedder {
            word,
            token_type,
            emb_ln,
            blocks,
            inv_freq,
            config: c,
            pooling,
            device,
        };
        Ok((embedder, positions))
    }

    fn attention(
        &self,
        b: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: &Tensor,
    ) -> Result<Tensor> {
        let (n, s, h) = x.dims3()?;
        let heads = self.config.heads;
        let hd = h / heads;
        let qkv = b.wqkv.forward(x)?;
        let part = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(D::Minus1, i * h, h)?
                .reshape((n, s, heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = candle_nn::rotary_emb::rope(&part(0)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&part(1)?, cos, sin)?;
        let v = part(2)?;
        let padding = |_: usize, _: usize| Ok(Some(bias.clone()));
        let ctx = attention(&q, &k, &v, 1.0 / (hd as f64).sqrt(), &padding)?
            .transpose(1, 2)?
            .reshape((n, s, h))?;
        Ok(b.out_proj.forward(&ctx)?)
    }

    fn mlp(b: &Block, x: &Tensor) -> Result<Tensor> {
        let up = b.fc11.forward(x)?;
        let gate = b.fc12.forward(x)?.silu()?;
        Ok(b.fc2.forward(&(up * gate)?)?)
    }

    fn encode(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (n, s) = ids.dims2()?;
        let mut x = self.word.forward(ids)?;
        if let Some(tt) = &self.token_type {
            x = x.broadcast_add(&tt.forward(&ids.zeros_like()?)?)?;
        }
        let mut x = self.emb_ln.forward(&x)?;
        let pos: Vec<f32> = (0..s as u32).map(|p| p as f32).collect();
        let freqs = Tensor::from_vec(pos, (s, 1), &self.device)?
            .broadcast_mul(&self.inv_freq.unsqueeze(0)?)?; // [s, head_dim / 2]
        let (cos, sin) = (freqs.cos()?, freqs.sin()?);
        let bias =
            ((mask.to_dtype(DType::F32)? - 1.0)? * f64::from(f32::MAX))?.reshape((n, 1, 1, s))?;
        for b in &self.blocks {
            // Post-norm, as nomic-embed-text-v1.5 (`prenorm: false`).
            let a = self.attention(b, &x, &cos, &sin, &bias)?;
            x = b.norm1.forward(&(x + a)?)?;
            let m = Self::mlp(b, &x)?;
            x = b.norm2.forward(&(x + m)?)?;
        }
        Ok(x)
    }
}

impl super::Embed for NomicBertEmbedder {
    fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (ids, mask) = padded(batch, self.config.pad_id, &self.device)?;
        let hidden = self.encode(&ids, &mask)?;
        let lens: Vec<usize> = batch.iter().map(|s| s.len()).collect();
        self.pooling.pool_padded(&hidden, &lens)
    }

    fn dimensions(&self) -> usize {
        self.config.hidden
    }
}
