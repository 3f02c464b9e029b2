//! A padding-free BERT-layout transformer encoder (BERT, XLM-RoBERTa), written for throughput.
//!
//! The sequences of a batch are packed one after another into a single `[tokens, hidden]`
//! matrix: the dense layers run over real tokens only (no padding rows), and attention runs per
//! sequence and head, so it needs no mask. Products go straight to `gemm` with bias and
//! residual pre-filled in the output; element-wise work uses the run-time-dispatched AVX2
//! kernels of [`crate::kernels`]. candle's `BertModel` (padded, one tensor per op, scalar GELU)
//! reached about half the throughput of PyTorch on the same two cores; this is the pass the
//! embedding and cross-encoder models run.

use crate::kernels::{self, matmul_to, Activation, SharedMut, View};
use crate::{Error, Result};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde_json::Value;

/// The shape and options of an encoder, from its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Width of the token vectors.
    pub hidden: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Layer-norm epsilon.
    pub eps: f32,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Rows of the position table.
    pub max_positions: usize,
    /// Rows of the token-type table.
    pub type_vocab: usize,
    /// Rows of the token table.
    pub vocab: usize,
    /// The padding token.
    pub pad_id: u32,
    /// RoBERTa numbering: positions count non-padding tokens from `pad_id + 1`, and a padding
    /// token sits at position `pad_id` (BERT numbers tokens from 0).
    pub roberta_positions: bool,
}

impl EncoderConfig {
    /// Reads a `config.json`; `roberta` selects RoBERTa position numbering and defaults.
    pub fn from_json(config: &Value, roberta: bool) -> Result<Self> {
        let bad = |what: String| Error::bad_request(format!("unsupported config.json: {what}"));
        let int = |key: &str, default: Option<usize>| -> Result<usize> {
            match config.get(key).and_then(Value::as_u64) {
                Some(v) => Ok(v as usize),
                None => default.ok_or_else(|| bad(format!("`{key}` is missing"))),
            }
        };
        let position_type = config["position_embedding_type"]
            .as_str()
            .unwrap_or("absolute");
        if position_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type `{position_type}` (only absolute is supported)"
            )));
        }
        let act_name = config["hidden_act"].as_str().unwrap_or("gelu");
        let activation = Activation::from_name(act_name)
            .ok_or_else(|| bad(format!("hidden_act `{act_name}` is not supported")))?;
        let hidden = int("hidden_size", None)?;
        let heads = int("num_attention_heads", None)?;
        if heads == 0 || hidden % heads != 0 {
            return Err(bad(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            )));
        }
        Ok(EncoderConfig {
            hidden,
            heads,
            layers: int("num_hidden_layers", None)?,
            intermediate: int("intermediate_size", None)?,
            eps: config["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
            activation,
            max_positions: int("max_position_embeddings", Some(512))?,
            type_vocab: int("type_vocab_size", Some(2))?,
            vocab: int("vocab_size", None)?,
            pad_id: int("pad_token_id", Some(if roberta { 1 } else { 0 }))? as u32,
            roberta_positions: roberta,
        })
    }

    /// The longest sequence the position table allows.
    pub fn max_tokens(&self) -> usize {
        if self.roberta_positions {
            self.max_positions
                .saturating_sub(self.pad_id as usize + 1)
                .max(1)
        } else {
            self.max_positions
        }
    }
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// One transformer layer; weight matrices stored `[out, in]` as PyTorch has them.
struct Layer {
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    attn_norm: LayerNorm,
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    out_norm: LayerNorm,
}

/// A loaded encoder.
pub struct Encoder {
    config: EncoderConfig,
    words: Vec<f32>,
    positions: Vec<f32>,
    token_types: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// The token vectors of a packed batch: sequence `i` is rows `starts[i]..starts[i] + lens[i]`
/// of `hidden` (`[tokens, width]`, row-major).
pub struct Packed {
    /// All token vectors, row-major.
    pub hidden: Vec<f32>,
    /// Width of a row.
    pub width: usize,
    /// First row of each sequence.
    pub starts: Vec<usize>,
    /// Rows of each sequence.
    pub lens: Vec<usize>,
}

impl Packed {
    /// The rows of sequence `i`.
    pub fn sequence(&self, i: usize) -> &[f32] {
        let (start, len) = (self.starts[i], self.lens[i]);
        &self.hidden[start * self.width..(start + len) * self.width]
    }
}

fn vector(vb: &VarBuilder, len: usize, name: &str) -> candle_core::Result<Vec<f32>> {
    vb.get(len, name)?.to_vec1()
}

fn matrix(vb: &VarBuilder, rows: usize, cols: usize, name: &str) -> candle_core::Result<Vec<f32>> {
    vb.get((rows, cols), name)?.flatten_all()?.to_vec1()
}

fn layer_norm(vb: &VarBuilder, width: usize) -> candle_core::Result<LayerNorm> {
    // Old BERT checkpoints name these gamma/beta.
    let (w, b) = if vb.contains_tensor("weight") {
        ("weight", "bias")
    } else {
        ("gamma", "beta")
    };
    Ok(LayerNorm {
        gamma: vector(vb, width, w)?,
        beta: vector(vb, width, b)?,
    })
}

impl Encoder {
    /// Loads the weights under `vb` (the encoder's root: `embeddings.*`, `encoder.layer.*`).
    pub fn load(vb: &VarBuilder, config: EncoderConfig) -> candle_core::Result<Self> {
        let h = config.hidden;
        let emb = vb.pp("embeddings");
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let att = l.pp("attention.self");
            let q = linear_weights(&att.pp("query"), h, h)?;
            let k = linear_weights(&att.pp("key"), h, h)?;
            let v = linear_weights(&att.pp("value"), h, h)?;
            // [3h, h]: the rows of q, then k, then v.
            let qkv_w = [q.0, k.0, v.0].concat();
            let qkv_b = [q.1, k.1, v.1].concat();
            let (out_w, out_b) = linear_weights(&l.pp("attention.output.dense"), h, h)?;
            let (up_w, up_b) = linear_weights(&l.pp("intermediate.dense"), config.intermediate, h)?;
            let (down_w, down_b) = linear_weights(&l.pp("output.dense"), h, config.intermediate)?;
            layers.push(Layer {
                qkv_w,
                qkv_b,
                out_w,
                out_b,
                attn_norm: layer_norm(&l.pp("attention.output.LayerNorm"), h)?,
                up_w,
                up_b,
                down_w,
                down_b,
                out_norm: layer_norm(&l.pp("output.LayerNorm"), h)?,
            });
        }
        Ok(Encoder {
            words: matrix(&emb, config.vocab, h, "word_embeddings.weight")?,
            positions: matrix(&emb, config.max_positions, h, "position_embeddings.weight")?,
            token_types: matrix(&emb, config.type_vocab, h, "token_type_embeddings.weight")?,
            embed_norm: layer_norm(&emb.pp("LayerNorm"), h)?,
            layers,
            config,
        })
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Runs the sequences of `batch` (each non-empty and within [`EncoderConfig::max_tokens`]);
    /// `token_types`, when given, has one type id per token of each sequence (else all 0).
    pub fn forward(&self, batch: &[&[u32]], token_types: Option<&[Vec<u32>]>) -> Result<Packed> {
        // The whole pass runs on one thread of the pool, so that each parallel step below
        // shares its work with the other threads directly instead of waking them from outside
        // (and waiting to be woken) a few dozen times per pass.
        let mut result = None;
        rayon::scope(|_| result = Some(self.forward_here(batch, token_types)));
        result.expect("the scope ran")
    }

    fn forward_here(&self, batch: &[&[u32]], token_types: Option<&[Vec<u32>]>) -> Result<Packed> {
        let c = &self.config;
        let h = c.hidden;
        let lens: Vec<usize> = batch.iter().map(|s| s.len()).collect();
        let mut starts = Vec::with_capacity(batch.len());
        let mut total = 0;
        for &len in &lens {
            if len == 0 || len > c.max_tokens() {
                return Err(Error::bad_request(format!(
                    "a sequence of {len} tokens (the encoder takes 1 to {})",
                    c.max_tokens()
                )));
            }
            starts.push(total);
            total += len;
        }
        let mut x = self.embed(batch, token_types, total)?;
        let mut qkv = Vec::new();
        let mut ctx = vec![0f32; total * h];
        let mut attended = Vec::new();
        let mut up = Vec::new();
        for layer in &self.layers {
            kernels::linear(
                &x,
                &layer.qkv_w,
                Some(&layer.qkv_b),
                None,
                &mut qkv,
                (total, h, 3 * h),
            );
            self.attention(&qkv, &mut ctx, &starts, &lens);
            kernels::linear(
                &ctx,
                &layer.out_w,
                Some(&layer.out_b),
                Some(&x),
                &mut attended,
                (total, h, h),
            );
            kernels::layer_norm(
                &mut attended,
                &layer.attn_norm.gamma,
                &layer.attn_norm.beta,
                c.eps,
            );
            kernels::linear(
                &attended,
                &layer.up_w,
                Some(&layer.up_b),
                None,
                &mut up,
                (total, h, c.intermediate),
            );
            c.activation.apply(&mut up);
            kernels::linear(
                &up,
                &layer.down_w,
                Some(&layer.down_b),
                Some(&attended),
                &mut x,
                (total, c.intermediate, h),
            );
            kernels::layer_norm(&mut x, &layer.out_norm.gamma, &layer.out_norm.beta, c.eps);
        }
        Ok(Packed {
            hidden: x,
            width: h,
            starts,
            lens,
        })
    }

    /// Token + position + token-type vectors of every token, layer-normalised.
    fn embed(
        &self,
        batch: &[&[u32]],
        token_types: Option<&[Vec<u32>]>,
        total: usize,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden;
        let mut x = Vec::with_capacity(total * h);
        for (i, seq) in batch.iter().enumerate() {
            let types = token_types.map(|t| t[i].as_slice());
            let mut next_position = if c.roberta_positions {
                c.pad_id as usize + 1
            } else {
                0
            };
            for (j, &id) in seq.iter().enumerate() {
                if id as usize >= c.vocab {
                    return Err(Error::bad_request(format!(
                        "token id {id} is outside the vocabulary of {} tokens",
                        c.vocab
                    )));
                }
                let position = if c.roberta_positions && id == c.pad_id {
                    c.pad_id as usize
                } else {
                    next_position += 1;
                    next_position - 1
                };
                let token_type = types.and_then(|t| t.get(j)).copied().unwrap_or(0) as usize;
                if token_type >= c.type_vocab {
                    return Err(Error::bad_request(format!(
                        "token type {token_type} is outside the model's {} types",
                        c.type_vocab
                    )));
                }
                let word = &self.words[id as usize * h..][..h];
                let pos = &self.positions[position * h..][..h];
                let typ = &self.token_types[token_type * h..][..h];
                x.extend(word.iter().zip(pos).zip(typ).map(|((w, p), t)| w + p + t));
            }
        }
        kernels::layer_norm(&mut x, &self.embed_norm.gamma, &self.embed_norm.beta, c.eps);
        Ok(x)
    }

    /// Multi-head self-attention of each sequence over itself: `ctx` rows get the attended
    /// values, head by head. Sequences and heads are spread over the pool.
    fn attention(&self, qkv: &[f32], ctx: &mut [f32], starts: &[usize], lens: &[usize]) {
        let h = self.config.hidden;
        let heads = self.config.heads;
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let out = SharedMut::new(ctx);
        let job = |index: usize| {
            let (s, head) = (index / heads, index % heads);
            let (start, len) = (starts[s], lens[s]);
            let mut scores = vec![0f32; len * len];
            let row = 3 * h;
            let q = View {
                offset: start * row + head * d,
                row_stride: row,
                col_stride: 1,
            };
            // K transposed: element (dim, token).
            let kt = View {
                offset: start * row + h + head * d,
                row_stride: 1,
                col_stride: row,
            };
            let v = View {
                offset: start * row + 2 * h + head * d,
                row_stride: row,
                col_stride: 1,
            };
            kernels::matmul(
                (len, d, len),
                &mut scores,
                View::rows(0, len),
                qkv,
                q,
                qkv,
                kt,
                scale,
                false,
                false,
            );
            kernels::softmax_rows(&mut scores, len);
            let dst = View {
                offset: start * h + head * d,
                row_stride: h,
                col_stride: 1,
            };
            // SAFETY: each job writes only the columns of its head in the rows of its
            // sequence: jobs never overlap, and `ctx` is not otherwise used meanwhile.
            unsafe {
                matmul_to(
                    (len, len, d),
                    out,
                    dst,
                    &scores,
                    View::rows(0, len),
                    qkv,
                    v,
                    1.0,
                    false,
                    false,
                );
            }
        };
        let jobs = lens.len() * heads;
        let work: usize = lens.iter().map(|l| l * l * h).sum();
        if kernels::threads() == 1 || jobs == 1 || work < kernels::PARALLEL_WORK {
            (0..jobs).for_each(job);
        } else {
            (0..jobs).into_par_iter().for_each(job);
        }
    }
}

/// A PyTorch linear layer: (`weight` `[out, in]`, `bias` `[out]`).
fn linear_weights(
    vb: &VarBuilder,
    out: usize,
    inp: usize,
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    Ok((matrix(vb, out, inp, "weight")?, vector(vb, out, "bias")?))
}
