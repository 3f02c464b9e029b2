//! Our Whisper forward pass. The encoder: candle tensors for the projections and norms, our
//! own attention (`audio::attention`) by blocks of queries on the projected matrices. The
//! decoder runs on plain slices on the compute pool: its products stream weights kept as f16
//! when the file stored them so (CTranslate2's files: exactly the same values, half the bytes
//! to read per token) with the columns split over the threads, its attention heads run as pool
//! tasks; it projects query, key and value in one product, writes keys/values into a cache it
//! keeps in place, and keeps the cross-attention keys/values of its window, so each new token
//! costs one position instead of the whole sequence. Exact (erf) GELU as openai-whisper and
//! CTranslate2 use. Weights are read under the Hugging Face names.

use super::attention::{self, KvCache};
use crate::kernels::few_rows::{few_rows_product, Weights};
use crate::{kernels, Result};
use candle_core::{Device, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, Module, VarBuilder};
use half::f16;
use rayon::prelude::*;

/// Model dimensions.
#[derive(Debug, Clone)]
pub struct Dims {
    /// Mel bins.
    pub n_mels: usize,
    /// Width.
    pub d_model: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Encoder heads.
    pub encoder_heads: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Decoder heads.
    pub decoder_heads: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Encoder positions (1500).
    pub audio_ctx: usize,
    /// Decoder positions (448).
    pub text_ctx: usize,
}

/// A linear layer of the encoder (and of the decoder's cross-attention keys and values, over
/// the window's 1500 frames), through `gemm`.
struct Lin {
    w: Tensor,
    b: Option<Tensor>,
}

/// Rows up to which a decoder step's products stream the weights ([`StepLin`]); a request
/// with more rows in one step, a long prompt, is not batched with others: it goes through
/// `gemm` alone.
pub(crate) const SMALL_ROWS: usize = 16;

impl Lin {
    /// `x · wᵀ + b`, plus `residual` when given, for `rows` rows of `x` on slices
    /// ([`kernels::linear`]: the bias and residual are in place before the product adds to
    /// them, so no pass over the result follows it).
    fn forward_rows(&self, x: &[f32], rows: usize, residual: Option<&[f32]>) -> Result<Vec<f32>> {
        let (n, k) = self.w.dims2()?;
        let mut out = Vec::new();
        with_values(&self.w, |w| match &self.b {
            Some(b) => with_values(b, |b| {
                kernels::linear(x, w, Some(b), residual, &mut out, (rows, k, n))
            }),
            None => {
                kernels::linear(x, w, None, residual, &mut out, (rows, k, n));
                Ok(())
            }
        })??;
        Ok(out)
    }
}

/// The values of a weight matrix as stored for decoder steps: f16 when every value is one
/// (CTranslate2's files store f16; the f32 copy would be the same numbers in twice the bytes,
/// and a step is bound by reading them), else f32.
enum Stored {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Stored {
    /// The values of `t`, as f16 when that loses nothing.
    fn of(t: &Tensor) -> Result<Self> {
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(if values.iter().all(|&v| f16::from_f32(v).to_f32() == v) {
            Stored::F16(values.into_iter().map(f16::from_f32).collect())
        } else {
            Stored::F32(values)
        })
    }

    fn weights(&self) -> Weights<'_> {
        match self {
            Stored::F32(w) => Weights::F32(w),
            Stored::F16(w) => Weights::F16(w),
        }
    }

    /// The values as f32 (a copy when stored as f16).
    fn to_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Stored::F32(w) => std::borrow::Cow::Borrowed(w),
            Stored::F16(w) => std::borrow::Cow::Owned(w.iter().map(|v| v.to_f32()).collect()),
        }
    }

    /// Row `i` (of `width` values) as f32, into `out`.
    fn row_into(&self, i: usize, width: usize, out: &mut [f32]) {
        match self {
            Stored::F32(w) => out.copy_from_slice(&w[i * width..][..width]),
            Stored::F16(w) => out
                .iter_mut()
                .zip(&w[i * width..][..width])
                .for_each(|(o, v)| *o = v.to_f32()),
        }
    }
}

/// A linear layer of the decoder, on slices: `x · wᵀ + b` with `w` stored `[n, k]`.
struct StepLin {
    w: Stored,
    b: Option<Vec<f32>>,
    n: usize,
    k: usize,
}

impl StepLin {
    fn of(l: &Lin) -> Result<Self> {
        let (n, k) = l.w.dims2()?;
        Ok(StepLin {
            w: Stored::of(&l.w)?,
            b: l.b.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?,
            n,
            k,
        })
    }

    /// The product for `rows` rows of `x`: streamed ([`few_rows_product`], each row rounded as
    /// alone, columns over the pool) when `streamed` or for at most [`SMALL_ROWS`] rows, else
    /// through `gemm` (prompts).
    fn forward(&self, x: &[f32], rows: usize, streamed: bool) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let mut out = match &self.b {
            Some(b) => b.repeat(rows),
            None => vec![0f32; rows * n],
        };
        if streamed || rows <= SMALL_ROWS {
            few_rows_product(&mut out, x, self.w.weights(), (rows, k, n));
        } else {
            let w = self.w.to_f32();
            kernels::matmul(
                (rows, k, n),
                &mut out,
                kernels::View::rows(0, n),
                x,
                kernels::View::rows(0, k),
                &w,
                kernels::View::transposed(0, k),
                1.0,
                true,
                true,
            );
        }
        out
    }
}

fn linear(vb: &VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Lin> {
    let w = vb.get((d_out, d_in), "weight")?.contiguous()?;
    let b = if bias {
        Some(vb.get(d_out, "bias")?)
    } else {
        None
    };
    Ok(Lin { w, b })
}

/// A layer norm, on slices.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Norm {
            gamma: vb.get(d, "weight")?.to_vec1::<f32>()?,
            beta: vb.get(d, "bias")?.to_vec1::<f32>()?,
        })
    }

    /// The normalised rows of `x`.
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        kernels::layer_norm(&mut h, &self.gamma, &self.beta, 1e-5);
        h
    }
}

/// `x += y`.
fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    out: Lin,
}

impl Attention {
    fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Attention {
            q: linear(&vb.pp("q_proj"), d, d, true)?,
            k: linear(&vb.pp("k_proj"), d, d, false)?,
            v: linear(&vb.pp("v_proj"), d, d, true)?,
            out: linear(&vb.pp("out_proj"), d, d, true)?,
        })
    }

    /// The query, key and value projections as one `[3d, d]` product (a missing bias is 0).
    fn fused_qkv(&self, d: usize) -> Result<Lin> {
        let bias = |l: &Lin| match &l.b {
            Some(b) => Ok(b.clone()),
            None => Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu),
        };
        Ok(Lin {
            w: Tensor::cat(&[&self.q.w, &self.k.w, &self.v.w], 0)?.contiguous()?,
            b: Some(Tensor::cat(
                &[bias(&self.q)?, bias(&self.k)?, bias(&self.v)?],
                0,
            )?),
        })
    }
}

/// `[b, t, d]` -> `[b, heads, t, d / heads]`.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    Ok(x.reshape((b, t, heads, d / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// The attention of projected queries `q` (`[b, t, d]`) over keys (split and transposed,
/// contiguous) and values (split), before the output projection: `[b, t, d]`, and the scaled
/// scores when `keep_scores` is set (a prompt's cross-attention, through `gemm`).
fn mix(
    q: &Tensor,
    kt: &Tensor,
    v: &Tensor,
    heads: usize,
    keep_scores: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, t, d) = q.dims3()?;
    let hd = d / heads;
    let q = (split_heads(q, heads)? * (1.0 / (hd as f64).sqrt()))?;
    let w = q.matmul(kt)?;
    let scores = keep_scores.then(|| w.clone());
    let w = candle_nn::ops::softmax_last_dim(&w)?;
    Ok((w.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?, scores))
}

/// The feed-forward half of a layer, with its norm.
struct Mlp {
    ln: Norm,
    fc1: Lin,
    fc2: Lin,
}

impl Mlp {
    fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Mlp {
            ln: Norm::load(&vb.pp("final_layer_norm"), d)?,
            fc1: linear(&vb.pp("fc1"), d, 4 * d, true)?,
            fc2: linear(&vb.pp("fc2"), 4 * d, d, true)?,
        })
    }

    /// `x + fc2(gelu(fc1(ln(x))))` for `rows` rows of `x`.
    fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut h = self.fc1.forward_rows(&self.ln.forward(x), rows, None)?;
        kernels::Activation::Gelu.apply(&mut h);
        self.fc2.forward_rows(&h, rows, Some(x))
    }
}

/// An encoder layer, its query, key and value projections fused into one `[3d, d]` product.
struct Block {
    attn_ln: Norm,
    qkv: Lin,
    attn_out: Lin,
    heads: usize,
    mlp: Mlp,
}

impl Block {
    fn load(vb: &VarBuilder, d: usize, heads: usize) -> Result<Self> {
        let a = Attention::load(&vb.pp("self_attn"), d)?;
        Ok(Block {
            attn_ln: Norm::load(&vb.pp("self_attn_layer_norm"), d)?,
            qkv: a.fused_qkv(d)?,
            attn_out: a.out,
            heads,
            mlp: Mlp::load(vb, d)?,
        })
    }
}

/// A decoder layer: self-attention with its query, key and value projections fused into one
/// `[3d, d]` product, cross-attention over the window's audio (its keys and values computed
/// once per window, through `gemm`), and the MLP.
struct DecoderBlock {
    attn_ln: Norm,
    qkv: StepLin,
    attn_out: StepLin,
    cross_ln: Norm,
    cross_q: StepLin,
    cross_k: Lin,
    cross_v: Lin,
    cross_out: StepLin,
    mlp_ln: Norm,
    fc1: StepLin,
    fc2: StepLin,
}

impl DecoderBlock {
    fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        let a = Attention::load(&vb.pp("self_attn"), d)?;
        let qkv = a.fused_qkv(d)?;
        let cross = Attention::load(&vb.pp("encoder_attn"), d)?;
        let mlp = Mlp::load(vb, d)?;
        Ok(DecoderBlock {
            attn_ln: Norm::load(&vb.pp("self_attn_layer_norm"), d)?,
            qkv: StepLin::of(&qkv)?,
            attn_out: StepLin::of(&a.out)?,
            cross_ln: Norm::load(&vb.pp("encoder_attn_layer_norm"), d)?,
            cross_q: StepLin::of(&cross.q)?,
            cross_k: cross.k,
            cross_v: cross.v,
            cross_out: StepLin::of(&cross.out)?,
            mlp_ln: mlp.ln,
            fc1: StepLin::of(&mlp.fc1)?,
            fc2: StepLin::of(&mlp.fc2)?,
        })
    }
}

/// One request's part of a shared decoder pass ([`WhisperNet::decode_many`]): `tokens` fed
/// after what `state` holds (`state.batch()` sequences of `tokens.len() / batch` tokens, row
/// after row).
pub struct Step<'a> {
    /// The tokens, sequence after sequence.
    pub tokens: &'a [u32],
    /// The request's decoder state (its caches and its window's audio keys/values).
    pub state: &'a mut DecoderState,
}

/// The encoder and decoder weights.
pub struct WhisperNet {
    /// Dimensions.
    pub dims: Dims,
    conv1: Conv1d,
    conv2: Conv1d,
    /// The encoder's positions `[audio_ctx, d]`.
    audio_pos: Vec<f32>,
    encoder: Vec<Block>,
    encoder_ln: Norm,
    /// The token embeddings `[vocab, d]`, also the output projection.
    embed: Stored,
    /// The decoder's positions `[text_ctx, d]`.
    text_pos: Vec<f32>,
    decoder: Vec<DecoderBlock>,
    decoder_ln: Norm,
}

/// The decoder's state over one window: per layer, the cached self-attention keys/values of
/// each sequence of the batch (beams, or best-of samples; written in place) and the window's
/// cross-attention keys (transposed once: `[1, heads, head_dim, 1500]`) and values, which every
/// sequence shares. Clones copy the self-attention caches (empty in a fresh state) and share
/// the audio's keys/values.
#[derive(Clone)]
pub struct DecoderState {
    self_kv: Vec<KvCache>,
    cross_kv: Vec<(Tensor, Tensor)>,
    len: usize,
    batch: usize,
    width: usize,
}

impl DecoderState {
    /// A placeholder left behind while the state is away in a shared pass.
    pub(crate) fn placeholder() -> Self {
        DecoderState {
            self_kv: Vec::new(),
            cross_kv: Vec::new(),
            len: 0,
            batch: 1,
            width: 0,
        }
    }

    /// Positions decoded so far (per sequence).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was decoded yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Makes row `origins[i]` of the cache the new row `i`: beam reordering, or expanding one
    /// decoded prompt into several sequences.
    pub fn reorder(&mut self, origins: &[u32]) -> Result<()> {
        let identity = origins.len() == self.batch
            && origins.iter().enumerate().all(|(i, &o)| o as usize == i);
        if !identity {
            for cache in &mut self.self_kv {
                cache.reorder(origins, self.len, self.width);
            }
        }
        self.batch = origins.len();
        Ok(())
    }
}

/// Exact (erf) GELU through the vectorised kernel ([`kernels::Activation::Gelu`]).
fn gelu(x: &Tensor) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    kernels::Activation::Gelu.apply(&mut values);
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Runs `f` on the values of a contiguous f32 CPU tensor, without copying them.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(crate::Error::internal("Whisper weights must be on the CPU"));
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| crate::Error::internal("Whisper weights must be contiguous"))?;
    Ok(f(&cpu.as_slice::<f32>()?[start..end]))
}

/// Sinusoidal positions of the encoder (as openai-whisper computes them).
fn sinusoids(length: usize, channels: usize) -> Result<Tensor> {
    let half = channels / 2;
    let step = (10_000f64).ln() / (half - 1) as f64;
    let mut v = vec![0f32; length * channels];
    for t in 0..length {
        for i in 0..half {
            let x = t as f64 * (-(i as f64) * step).exp();
            v[t * channels + i] = x.sin() as f32;
            v[t * channels + half + i] = x.cos() as f32;
        }
    }
    Ok(Tensor::from_vec(v, (length, channels), &Device::Cpu)?)
}

impl WhisperNet {
    /// Loads the weights under the Hugging Face names (`model.encoder...`, `model.decoder...`).
    pub fn load(vb: &VarBuilder, dims: Dims) -> Result<Self> {
        let d = dims.d_model;
        let conv = |name: &str, c_in: usize, stride: usize| -> Result<Conv1d> {
            let vb = vb.pp(name);
            Ok(Conv1d::new(
                vb.get((d, c_in, 3), "weight")?,
                Some(vb.get(d, "bias")?),
                Conv1dConfig {
                    padding: 1,
                    stride,
                    dilation: 1,
                    groups: 1,
                    cudnn_fwd_algo: None,
                },
            ))
        };
        let enc = vb.pp("model.encoder");
        let dec = vb.pp("model.decoder");
        let audio_pos = match enc.get((dims.audio_ctx, d), "embed_positions.weight") {
            Ok(t) => t,
            Err(_) => sinusoids(dims.audio_ctx, d)?,
        }
        .flatten_all()?
        .to_vec1::<f32>()?;
        Ok(WhisperNet {
            conv1: conv("model.encoder.conv1", dims.n_mels, 1)?,
            conv2: conv("model.encoder.conv2", d, 2)?,
            audio_pos,
            encoder: (0..dims.encoder_layers)
                .map(|i| Block::load(&enc.pp(format!("layers.{i}")), d, dims.encoder_heads))
                .collect::<Result<_>>()?,
            encoder_ln: Norm::load(&enc.pp("layer_norm"), d)?,
            embed: Stored::of(&dec.get((dims.vocab, d), "embed_tokens.weight")?)?,
            text_pos: dec
                .get((dims.text_ctx, d), "embed_positions.weight")?
                .flatten_all()?
                .to_vec1::<f32>()?,
            decoder: (0..dims.decoder_layers)
                .map(|i| DecoderBlock::load(&dec.pp(format!("layers.{i}")), d))
                .collect::<Result<_>>()?,
            decoder_ln: Norm::load(&dec.pp("layer_norm"), d)?,
            dims,
        })
    }

    /// Encoder states `[b, 1500, d]` of features `[b, n_mels, 3000]` (each window of the
    /// batch computed as alone), on a pool thread. The convolutions are candle's; the layers
    /// run on slices: `gemm` with bias and residual in place (`Lin::forward_rows`), our layer
    /// norm and vectorised GELU on the pool, the attention through
    /// `attention::encoder_attention`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        kernels::on_pool(|| self.encode_here(mel))
    }

    fn encode_here(&self, mel: &Tensor) -> Result<Tensor> {
        let x = gelu(&self.conv1.forward(mel)?)?;
        let x = gelu(&self.conv2.forward(&x)?)?;
        let (b, d, t) = x.dims3()?;
        if t > self.dims.audio_ctx {
            return Err(crate::Error::internal("a Whisper window longer than 30 s"));
        }
        // `[b, d, t]` to `[b, t, d]`, plus the positions.
        let conv = x.flatten_all()?.to_vec1::<f32>()?;
        let mut x = vec![0f32; b * t * d];
        for w in 0..b {
            for (j, row) in x[w * t * d..(w + 1) * t * d]
                .chunks_exact_mut(d)
                .enumerate()
            {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = conv[(w * d + c) * t + j] + self.audio_pos[j * d + c];
                }
            }
        }
        let rows = b * t;
        for block in &self.encoder {
            let qkv = block
                .qkv
                .forward_rows(&block.attn_ln.forward(&x), rows, None)?;
            let mut y = vec![0f32; rows * d];
            attention::encoder_attention(&qkv, &mut y, (b, t, d, block.heads));
            x = block.attn_out.forward_rows(&y, rows, Some(&x))?;
            x = block.mlp.forward(&x, rows)?;
        }
        Ok(Tensor::from_vec(
            self.encoder_ln.forward(&x),
            (b, t, d),
            &Device::Cpu,
        )?)
    }

    /// A fresh decoder state over encoder states `audio` (`[1, frames, d]`): the
    /// cross-attention keys and values of every layer, computed once, on a pool thread.
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        kernels::on_pool(|| self.start_here(audio))
    }

    fn start_here(&self, audio: &Tensor) -> Result<DecoderState> {
        let (_, t, d) = audio.dims3()?;
        let heads = self.dims.decoder_heads;
        let hd = d / heads;
        let audio = audio.flatten_all()?.to_vec1::<f32>()?;
        let cross_kv = self
            .decoder
            .iter()
            .map(|b| {
                // Keys transposed, `[d][frames]` (heads after one another): `w_k · audioᵀ`
                // (the projection has no bias).
                let mut kt = vec![0f32; d * t];
                with_values(&b.cross_k.w, |w| {
                    kernels::matmul(
                        (d, d, t),
                        &mut kt,
                        kernels::View::rows(0, t),
                        w,
                        kernels::View::rows(0, d),
                        &audio,
                        kernels::View::transposed(0, d),
                        1.0,
                        false,
                        true,
                    )
                })?;
                if let Some(bias) = &b.cross_k.b {
                    let bias = bias.to_vec1::<f32>()?;
                    for (row, b) in kt.chunks_exact_mut(t).zip(bias) {
                        row.iter_mut().for_each(|x| *x += b);
                    }
                }
                // Values `[heads][frames][head_dim]`.
                let v = b.cross_v.forward_rows(&audio, t, None)?;
                let mut vh = vec![0f32; d * t];
                for (j, row) in v.chunks_exact(d).enumerate() {
                    for (h, part) in row.chunks_exact(hd).enumerate() {
                        vh[(h * t + j) * hd..][..hd].copy_from_slice(part);
                    }
                }
                Ok((
                    Tensor::from_vec(kt, (1, heads, hd, t), &Device::Cpu)?,
                    Tensor::from_vec(vh, (1, heads, t, hd), &Device::Cpu)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState {
            self_kv: vec![KvCache::default(); self.decoder.len()],
            cross_kv,
            len: 0,
            batch: 1,
            width: self.dims.d_model,
        })
    }

    /// Feeds the steps of several requests in one pass: layer norms, projections and MLPs see
    /// the rows of all of them at once (each weight matrix streams through once per layer),
    /// attention stays per request (its own self-attention cache and its own window's audio).
    /// Every row is rounded as [`WhisperNet::decode`] rounds it for a request of at most 16
    /// rows alone (`tests::shared_pass_matches_one_at_a_time`). Returns each request's final
    /// hidden states `[rows, d]`.
    pub fn decode_many(&self, steps: &mut [Step]) -> Result<Vec<Tensor>> {
        Ok(self.decoder_pass(steps, true, &[])?.0)
    }

    /// Feeds `tokens` after what `state` holds: `state.batch()` sequences of
    /// `tokens.len() / batch` tokens each, row after row. Returns the final hidden states
    /// `[tokens.len(), d]` in the same order.
    pub fn decode(&self, tokens: &[u32], state: &mut DecoderState) -> Result<Tensor> {
        Ok(self.decode_with_scores(tokens, state, &[])?.0)
    }

    /// [`WhisperNet::decode`], also returning the cross-attention scores (scaled, before the
    /// softmax) of the `(layer, head)` pairs in `heads`, each `[b, n, audio positions]`.
    pub fn decode_with_scores(
        &self,
        tokens: &[u32],
        state: &mut DecoderState,
        heads: &[(usize, usize)],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut steps = [Step { tokens, state }];
        let (mut hidden, scores) = self.decoder_pass(&mut steps, false, heads)?;
        let hidden = hidden
            .pop()
            .ok_or_else(|| crate::Error::internal("a decoder pass returned nothing"))?;
        Ok((hidden, scores))
    }

    /// The decoder over the steps of one or more requests, on a pool thread
    /// ([`kernels::on_pool`]: the products and attention heads split from there). Products
    /// stream the weights ([`StepLin::forward`]: each row rounded as alone) when `streamed` or
    /// for a request of at most [`SMALL_ROWS`] rows, else go through `gemm`. A request's
    /// cross-attention of at most [`SMALL_ROWS`] rows runs on slices, one pool task per head
    /// ([`attention::cross_attention_head`]), a longer one (a prompt) through `gemm`. Returns
    /// each request's hidden states `[rows, d]`, and the cross-attention scores of `heads`
    /// (meant for one request; by layer, then in the order given).
    fn decoder_pass(
        &self,
        steps: &mut [Step],
        streamed: bool,
        heads: &[(usize, usize)],
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        kernels::on_pool(|| self.decoder_pass_here(steps, streamed, heads))
    }

    /// [`WhisperNet::decoder_pass`] on the calling thread.
    fn decoder_pass_here(
        &self,
        steps: &mut [Step],
        streamed: bool,
        heads: &[(usize, usize)],
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        if steps.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let d = self.dims.d_model;
        let (shapes, total, mut x) = self.embed_steps(steps)?;
        // Rows streamed, and the product split, alike for all requests: a request's rows
        // come out as alone.
        let lin = |l: &StepLin, x: &[f32]| l.forward(x, total, streamed);
        let mut scores = Vec::new();
        let mut y = vec![0f32; total * d];
        for (l, block) in self.decoder.iter().enumerate() {
            let qkv = lin(&block.qkv, &block.attn_ln.forward(&x));
            self.self_attention(l, steps, &shapes, &qkv, &mut y);
            add_into(&mut x, &lin(&block.attn_out, &y));
            let q = lin(&block.cross_q, &block.cross_ln.forward(&x));
            self.cross_attention(l, steps, &shapes, &q, &mut y, (heads, &mut scores))?;
            add_into(&mut x, &lin(&block.cross_out, &y));
            // The MLP.
            let mut h = lin(&block.fc1, &block.mlp_ln.forward(&x));
            kernels::Activation::Gelu.apply(&mut h);
            add_into(&mut x, &lin(&block.fc2, &h));
        }
        let hidden = self.decoder_ln.forward(&x);
        let mut out = Vec::with_capacity(steps.len());
        for (step, &(b, n, _, first)) in steps.iter_mut().zip(&shapes) {
            step.state.len += n;
            out.push(Tensor::from_slice(
                &hidden[first * d..(first + b * n) * d],
                (b * n, d),
                &Device::Cpu,
            )?);
        }
        Ok((out, scores))
    }

    /// The shapes of the steps (sequences, tokens per sequence, positions already cached,
    /// first row: each request's rows follow the previous one's), their total rows, and their
    /// token embeddings plus positions.
    #[allow(clippy::type_complexity)]
    fn embed_steps(
        &self,
        steps: &[Step],
    ) -> Result<(Vec<(usize, usize, usize, usize)>, usize, Vec<f32>)> {
        let d = self.dims.d_model;
        // (sequences, tokens per sequence, positions already cached, first row) of each request.
        let mut shapes: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(steps.len());
        let mut total = 0;
        for s in steps.iter() {
            let (b, len) = (s.state.batch, s.state.len);
            let n = s.tokens.len() / b.max(1);
            if b * n != s.tokens.len() || len + n > self.dims.text_ctx {
                return Err(crate::Error::internal(format!(
                    "a Whisper decoder step of {} tokens for {b} sequences after {len} positions",
                    s.tokens.len()
                )));
            }
            shapes.push((b, n, len, total));
            total += b * n;
        }
        // Token embeddings plus positions.
        let mut x = vec![0f32; total * d];
        for (s, &(_, n, offset, first)) in steps.iter().zip(&shapes) {
            for (i, &token) in s.tokens.iter().enumerate() {
                if token as usize >= self.dims.vocab {
                    return Err(crate::Error::internal(format!(
                        "token {token} is outside Whisper's vocabulary"
                    )));
                }
                let row = &mut x[(first + i) * d..][..d];
                self.embed.row_into(token as usize, d, row);
                add_into(row, &self.text_pos[(offset + i % n) * d..][..d]);
            }
        }
        Ok((shapes, total, x))
    }

    /// Layer `l`'s self-attention of every request into `y`: the keys and values of `qkv`
    /// into each request's cache, then one pool task per (request, sequence, head).
    fn self_attention(
        &self,
        l: usize,
        steps: &mut [Step],
        shapes: &[(usize, usize, usize, usize)],
        qkv: &[f32],
        y: &mut [f32],
    ) {
        let d = self.dims.d_model;
        let nh = self.dims.decoder_heads;
        let hd = d / nh;
        for (step, &(b, n, offset, first)) in steps.iter_mut().zip(shapes) {
            step.state.self_kv[l].append(
                &qkv[first * 3 * d..(first + b * n) * 3 * d],
                (b, n, offset),
                d,
            );
        }
        let tasks: Vec<(usize, usize, usize)> = shapes
            .iter()
            .enumerate()
            .flat_map(|(r, &(b, ..))| (0..b * nh).map(move |t| (r, t / nh, t % nh)))
            .collect();
        let done: Vec<Vec<f32>> = {
            let steps = &*steps;
            tasks
                .par_iter()
                .map(|&(r, s, h)| {
                    let (b, n, offset, first) = shapes[r];
                    attention::self_attention_head(
                        &steps[r].state.self_kv[l],
                        &qkv[first * 3 * d..(first + b * n) * 3 * d],
                        (s, h),
                        (n, offset),
                        (d, nh),
                    )
                })
                .collect()
        };
        for (&(r, s, h), o) in tasks.iter().zip(&done) {
            let (_, n, _, first) = shapes[r];
            for i in 0..n {
                y[(first + s * n + i) * d + h * hd..][..hd].copy_from_slice(&o[i * hd..][..hd]);
            }
        }
    }

    /// Layer `l`'s cross-attention of every request's queries `q` over its window, into `y`:
    /// one pool task per (request, head) for requests of at most [`SMALL_ROWS`] rows, `gemm`
    /// for longer ones; the scores of `heads` (of layer `l`) are pushed onto `scores`.
    fn cross_attention(
        &self,
        l: usize,
        steps: &[Step],
        shapes: &[(usize, usize, usize, usize)],
        q: &[f32],
        y: &mut [f32],
        (heads, scores): (&[(usize, usize)], &mut Vec<Tensor>),
    ) -> Result<()> {
        let d = self.dims.d_model;
        let nh = self.dims.decoder_heads;
        let hd = d / nh;
        let layer_heads: Vec<usize> = heads
            .iter()
            .filter(|&&(hl, _)| hl == l)
            .map(|&(_, h)| h)
            .collect();
        let sliced: Vec<usize> = (0..steps.len())
            .filter(|&r| shapes[r].0 * shapes[r].1 <= SMALL_ROWS)
            .collect();
        let tasks: Vec<(usize, usize)> = sliced
            .iter()
            .flat_map(|&r| (0..nh).map(move |h| (r, h)))
            .collect();
        let done: Vec<(Vec<f32>, Option<Vec<f32>>)> = {
            let layer_heads = &layer_heads;
            tasks
                .par_iter()
                .map(|&(r, h)| {
                    let (b, n, _, first) = shapes[r];
                    let rows = b * n;
                    let (kt, v) = &steps[r].state.cross_kv[l];
                    let frames = kt.dim(3)?;
                    with_values(kt, |kt| {
                        with_values(v, |v| {
                            attention::cross_attention_head(
                                &q[first * d..(first + rows) * d],
                                kt,
                                v,
                                h,
                                (rows, d, nh, frames),
                                layer_heads.contains(&h),
                            )
                        })
                    })?
                })
                .collect::<Result<_>>()?
        };
        for (&(r, h), (o, _)) in tasks.iter().zip(&done) {
            let (b, n, _, first) = shapes[r];
            for i in 0..b * n {
                y[(first + i) * d + h * hd..][..hd].copy_from_slice(&o[i * hd..][..hd]);
            }
        }
        for (r, &(b, n, _, first)) in shapes.iter().enumerate() {
            let rows = b * n;
            let (kt, v) = &steps[r].state.cross_kv[l];
            let frames = kt.dim(3)?;
            if rows <= SMALL_ROWS {
                for &h in &layer_heads {
                    let kept = tasks
                        .iter()
                        .zip(&done)
                        .find(|(task, _)| **task == (r, h))
                        .and_then(|(_, (_, s))| s.as_ref());
                    if let Some(s) = kept {
                        scores.push(Tensor::from_slice(s, (b, n, frames), &Device::Cpu)?);
                    }
                }
            } else {
                let qp = Tensor::from_slice(
                    &q[first * d..(first + rows) * d],
                    (1, rows, d),
                    &Device::Cpu,
                )?;
                let keep = !layer_heads.is_empty();
                let (o, s) = mix(&qp, kt, v, nh, keep)?;
                y[first * d..(first + rows) * d]
                    .copy_from_slice(&o.flatten_all()?.to_vec1::<f32>()?);
                if let Some(s) = s {
                    for &h in &layer_heads {
                        scores.push(s.narrow(1, h, 1)?.reshape((b, n, frames))?);
                    }
                }
            }
        }
        Ok(())
    }

    /// Logits of every row of `hidden` (`[n, d]`): the embedding matrix streams through once
    /// (its columns split over the pool), and each row is rounded as alone.
    pub fn logits_rows(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
        let (n, d) = hidden.dims2()?;
        let vocab = self.dims.vocab;
        let xs = hidden.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; n * vocab];
        kernels::on_pool(|| few_rows_product(&mut out, &xs, self.embed.weights(), (n, d, vocab)));
        Ok(out.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}
