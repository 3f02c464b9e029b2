//! Our Whisper forward pass: candle tensors for the projections and norms, our own attention
//! (`audio::attention`) for the rest. The encoder attends by blocks of queries on the
//! projected matrices; the decoder projects query, key and value in one product, writes
//! keys/values into a cache it keeps in place, and keeps the cross-attention keys/values of
//! its window, so each new token costs one position instead of the whole sequence. Exact
//! (erf) GELU as openai-whisper and CTranslate2 use. Weights are read under the Hugging Face
//! names.

use super::attention::{self, KvCache};
use crate::{kernels, Result};
use candle_core::{Device, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear, Module, VarBuilder};

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

/// A linear layer. Products of a few rows (decoder steps: one token per sequence) run through
/// [`kernels::linear`], which streams the weights once instead of packing them for `gemm`;
/// longer inputs (the encoder, prompts) go through candle's matmul.
struct Lin {
    w: Tensor,
    b: Option<Tensor>,
}

/// Rows up to which [`Lin`] uses the small-product kernel (a request with more rows in one
/// decoder step, a long prompt, is not batched with others: it goes through `gemm` alone).
pub(crate) const SMALL_ROWS: usize = 16;

impl Lin {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = x.dim(x.rank() - 1)?;
        if x.elem_count() / k.max(1) <= SMALL_ROWS {
            return few_rows_product(x, &self.w, self.b.as_ref());
        }
        Ok(Linear::new(self.w.clone(), self.b.clone()).forward(x)?)
    }

    /// [`Lin::forward`] through the few-rows kernel whatever the number of rows, so that each
    /// row is rounded as it is alone (the rows of several requests' decoder steps).
    fn forward_streamed(&self, x: &Tensor) -> Result<Tensor> {
        few_rows_product(x, &self.w, self.b.as_ref())
    }
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

/// `x · wᵀ + b` for `x` of a few rows (`[..., k]`) and `w` stored `[n, k]`.
fn few_rows_product(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let mut shape = x.dims().to_vec();
    let k = shape.last().copied().unwrap_or(0);
    let rows = x.elem_count() / k.max(1);
    let (n, _) = w.dims2()?;
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let bias = b.map(|b| b.to_vec1::<f32>()).transpose()?;
    let mut out = Vec::new();
    with_values(w, |w| {
        kernels::linear_streamed(&xs, w, bias.as_deref(), &mut out, (rows, k, n))
    })?;
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
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

fn layer_norm(vb: &VarBuilder, d: usize) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(d, "weight")?,
        vb.get(d, "bias")?,
        1e-5,
    ))
}

struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    out: Lin,
    heads: usize,
}

impl Attention {
    fn load(vb: &VarBuilder, d: usize, heads: usize) -> Result<Self> {
        Ok(Attention {
            q: linear(&vb.pp("q_proj"), d, d, true)?,
            k: linear(&vb.pp("k_proj"), d, d, false)?,
            v: linear(&vb.pp("v_proj"), d, d, true)?,
            out: linear(&vb.pp("out_proj"), d, d, true)?,
            heads,
        })
    }

    /// `[b, t, d]` -> `[b, heads, t, d / heads]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        Ok(x.reshape((b, t, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// The attention of projected queries `q` (`[b, t, d]`) over keys (split and transposed,
    /// contiguous) and values (split), before the output projection: `[b, t, d]`, and the
    /// scaled scores when `keep_scores` is set.
    fn mix(
        &self,
        q: &Tensor,
        kt: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        keep_scores: bool,
        softmax: fn(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t, d) = q.dims3()?;
        let hd = d / self.heads;
        let q = (self.split(q)? * (1.0 / (hd as f64).sqrt()))?;
        let mut w = q.matmul(kt)?;
        if let Some(m) = mask {
            w = w.broadcast_add(m)?;
        }
        let scores = keep_scores.then(|| w.clone());
        let w = softmax(&w)?;
        Ok((w.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?, scores))
    }
}

/// The feed-forward half of a layer, with its norm and residual.
struct Mlp {
    ln: LayerNorm,
    fc1: Lin,
    fc2: Lin,
}

impl Mlp {
    fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Mlp {
            ln: layer_norm(&vb.pp("final_layer_norm"), d)?,
            fc1: linear(&vb.pp("fc1"), d, 4 * d, true)?,
            fc2: linear(&vb.pp("fc2"), 4 * d, d, true)?,
        })
    }

    /// `x + fc2(gelu(fc1(ln(x))))`, the products through [`Lin::forward_streamed`] when
    /// `streamed`, GELU through `gelu`.
    fn forward(
        &self,
        x: &Tensor,
        streamed: bool,
        gelu: fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let lin = |l: &Lin, x: &Tensor| {
            if streamed {
                l.forward_streamed(x)
            } else {
                l.forward(x)
            }
        };
        let h = gelu(&lin(&self.fc1, &self.ln.forward(x)?)?)?;
        Ok((x + lin(&self.fc2, &h)?)?)
    }
}

/// An encoder layer.
struct Block {
    attn_ln: LayerNorm,
    attn: Attention,
    mlp: Mlp,
}

impl Block {
    fn load(vb: &VarBuilder, d: usize, heads: usize) -> Result<Self> {
        Ok(Block {
            attn_ln: layer_norm(&vb.pp("self_attn_layer_norm"), d)?,
            attn: Attention::load(&vb.pp("self_attn"), d, heads)?,
            mlp: Mlp::load(vb, d)?,
        })
    }
}

/// A decoder layer: self-attention with its query, key and value projections fused into one
/// `[3d, d]` product, cross-attention over the window's audio, and the MLP.
struct DecoderBlock {
    attn_ln: LayerNorm,
    qkv: Lin,
    attn_out: Lin,
    cross_ln: LayerNorm,
    cross: Attention,
    mlp: Mlp,
}

impl DecoderBlock {
    fn load(vb: &VarBuilder, d: usize, heads: usize) -> Result<Self> {
        let a = Attention::load(&vb.pp("self_attn"), d, heads)?;
        let bias = |l: &Lin| match &l.b {
            Some(b) => Ok(b.clone()),
            None => Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu),
        };
        let qkv = Lin {
            w: Tensor::cat(&[&a.q.w, &a.k.w, &a.v.w], 0)?.contiguous()?,
            b: Some(Tensor::cat(&[bias(&a.q)?, bias(&a.k)?, bias(&a.v)?], 0)?),
        };
        Ok(DecoderBlock {
            attn_ln: layer_norm(&vb.pp("self_attn_layer_norm"), d)?,
            qkv,
            attn_out: a.out,
            cross_ln: layer_norm(&vb.pp("encoder_attn_layer_norm"), d)?,
            cross: Attention::load(&vb.pp("encoder_attn"), d, heads)?,
            mlp: Mlp::load(vb, d)?,
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
    audio_pos: Tensor,
    encoder: Vec<Block>,
    encoder_ln: LayerNorm,
    embed: Tensor,
    text_pos: Tensor,
    decoder: Vec<DecoderBlock>,
    decoder_ln: LayerNorm,
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

/// candle's softmax over the last dimension.
fn candle_softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax_last_dim(x)?)
}

/// candle's exact (erf) GELU (libm per value: the decoder's few rows).
fn candle_gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu_erf()?)
}

/// Exact (erf) GELU through the vectorised kernel ([`kernels::Activation::Gelu`]).
fn gelu(x: &Tensor) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    kernels::Activation::Gelu.apply(&mut values);
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
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
        };
        Ok(WhisperNet {
            conv1: conv("model.encoder.conv1", dims.n_mels, 1)?,
            conv2: conv("model.encoder.conv2", d, 2)?,
            audio_pos,
            encoder: (0..dims.encoder_layers)
                .map(|i| Block::load(&enc.pp(format!("layers.{i}")), d, dims.encoder_heads))
                .collect::<Result<_>>()?,
            encoder_ln: layer_norm(&enc.pp("layer_norm"), d)?,
            embed: dec
                .get((dims.vocab, d), "embed_tokens.weight")?
                .contiguous()?,
            text_pos: dec.get((dims.text_ctx, d), "embed_positions.weight")?,
            decoder: (0..dims.decoder_layers)
                .map(|i| DecoderBlock::load(&dec.pp(format!("layers.{i}")), d, dims.decoder_heads))
                .collect::<Result<_>>()?,
            decoder_ln: layer_norm(&dec.pp("layer_norm"), d)?,
            dims,
        })
    }

    /// Encoder states `[b, 1500, d]` of features `[b, n_mels, 3000]` (each window of the
    /// batch computed as alone). GELU goes through our vectorised kernel (candle's calls libm
    /// per value), the attention through `attention::encoder_attention`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        let x = gelu(&self.conv1.forward(mel)?)?;
        let x = gelu(&self.conv2.forward(&x)?)?.transpose(1, 2)?;
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.audio_pos.narrow(0, 0, t)?)?;
        for block in &self.encoder {
            let a = &block.attn;
            let h = block.attn_ln.forward(&x)?;
            let (q, k, v) = (a.q.forward(&h)?, a.k.forward(&h)?, a.v.forward(&h)?);
            let (b, t, d) = q.dims3()?;
            let mut y = vec![0f32; b * t * d];
            with_values(&q, |q| {
                with_values(&k, |k| {
                    with_values(&v, |v| {
                        attention::encoder_attention(q, k, v, &mut y, (b, t, d, a.heads))
                    })
                })
            })???;
            x = (&x
                + a.out
                    .forward(&Tensor::from_vec(y, (b, t, d), &Device::Cpu)?)?)?;
            x = block.mlp.forward(&x, false, gelu)?;
        }
        Ok(self.encoder_ln.forward(&x)?)
    }

    /// A fresh decoder state over encoder states `audio` (cross keys/values computed once).
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        let cross_kv = self
            .decoder
            .iter()
            .map(|b| {
                let a = &b.cross;
                Ok((
                    a.split(&a.k.forward(audio)?)?
                        .transpose(2, 3)?
                        .contiguous()?,
                    a.split(&a.v.forward(audio)?)?,
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

    /// Token embeddings plus positions `offset..offset + n`: `[b, n, d]`.
    fn embed_tokens(&self, tokens: &[u32], b: usize, n: usize, offset: usize) -> Result<Tensor> {
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let x = self
            .embed
            .index_select(&ids, 0)?
            .reshape((b, n, self.dims.d_model))?;
        Ok(x.broadcast_add(&self.text_pos.narrow(0, offset, n)?)?)
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

    /// The decoder over the steps of one or more requests. Products go through
    /// [`Lin::forward_streamed`] when `streamed` (each row rounded as alone), else through
    /// [`Lin::forward`]. A request's cross-attention of at most [`SMALL_ROWS`] rows runs on
    /// slices ([`attention::cross_attention`]), a longer one (a prompt) through `gemm`.
    /// Returns each request's hidden states `[rows, d]`, and the cross-attention scores of
    /// `heads` (meant for one request; by layer, then in the order given).
    fn decoder_pass(
        &self,
        steps: &mut [Step],
        streamed: bool,
        heads: &[(usize, usize)],
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        if steps.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let d = self.dims.d_model;
        let nh = self.dims.decoder_heads;
        // (sequences, tokens per sequence, positions already cached) of each request.
        let shapes: Vec<(usize, usize, usize)> = steps
            .iter()
            .map(|s| (s.state.batch, s.tokens.len() / s.state.batch, s.state.len))
            .collect();
        let total: usize = shapes.iter().map(|&(b, n, _)| b * n).sum();
        let mut parts = Vec::with_capacity(steps.len());
        for (s, &(b, n, offset)) in steps.iter().zip(&shapes) {
            parts.push(
                self.embed_tokens(s.tokens, b, n, offset)?
                    .reshape((b * n, d))?,
            );
        }
        let mut x = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Tensor::cat(&parts, 0)?
        };
        let lin = |l: &Lin, x: &Tensor| {
            if streamed {
                l.forward_streamed(x)
            } else {
                l.forward(x)
            }
        };
        let mut scores = Vec::new();
        let mut y = vec![0f32; total * d];
        for (l, block) in self.decoder.iter().enumerate() {
            let qkv = lin(&block.qkv, &block.attn_ln.forward(&x)?)?;
            with_values(&qkv, |qkv| {
                let mut start = 0;
                for (step, &(b, n, offset)) in steps.iter_mut().zip(&shapes) {
                    let rows = start..start + b * n;
                    attention::self_attention(
                        &mut step.state.self_kv[l],
                        &qkv[rows.start * 3 * d..rows.end * 3 * d],
                        &mut y[rows.start * d..rows.end * d],
                        (b, n, offset),
                        (d, nh),
                    );
                    start = rows.end;
                }
            })?;
            let mixed = Tensor::from_slice(&y, (total, d), &Device::Cpu)?;
            x = (&x + lin(&block.attn_out, &mixed)?)?;
            let q = lin(&block.cross.q, &block.cross_ln.forward(&x)?)?;
            let layer_heads: Vec<usize> = heads
                .iter()
                .filter(|&&(hl, _)| hl == l)
                .map(|&(_, h)| h)
                .collect();
            let mut start = 0;
            for (step, &(b, n, _)) in steps.iter().zip(&shapes) {
                let rows = b * n;
                let (kt, v) = &step.state.cross_kv[l];
                let frames = kt.dim(3)?;
                let out = &mut y[start * d..(start + rows) * d];
                if rows <= SMALL_ROWS {
                    let mut kept: Vec<(usize, Vec<f32>)> = Vec::new();
                    with_values(&q, |q| {
                        with_values(kt, |kt| {
                            with_values(v, |v| {
                                attention::cross_attention(
                                    &q[start * d..(start + rows) * d],
                                    kt,
                                    v,
                                    out,
                                    (rows, d, nh, frames),
                                    &|h| layer_heads.contains(&h),
                                    &mut |h, s| kept.push((h, s.to_vec())),
                                )
                            })
                        })
                    })???;
                    for &h in &layer_heads {
                        if let Some((_, s)) = kept.iter().find(|(kh, _)| *kh == h) {
                            scores.push(Tensor::from_slice(s, (b, n, frames), &Device::Cpu)?);
                        }
                    }
                } else {
                    let qp = q.narrow(0, start, rows)?.reshape((1, rows, d))?;
                    let keep = !layer_heads.is_empty();
                    let (o, s) = block.cross.mix(&qp, kt, v, None, keep, candle_softmax)?;
                    out.copy_from_slice(&o.flatten_all()?.to_vec1::<f32>()?);
                    if let Some(s) = s {
                        for &h in &layer_heads {
                            scores.push(s.narrow(1, h, 1)?.reshape((b, n, frames))?);
                        }
                    }
                }
                start += rows;
            }
            let mixed = Tensor::from_slice(&y, (total, d), &Device::Cpu)?;
            x = (&x + lin(&block.cross.out, &mixed)?)?;
            x = block.mlp.forward(&x, streamed, candle_gelu)?;
        }
        let hidden = self.decoder_ln.forward(&x)?;
        let mut out = Vec::with_capacity(steps.len());
        let mut start = 0;
        for (step, &(b, n, _)) in steps.iter_mut().zip(&shapes) {
            step.state.len += n;
            out.push(hidden.narrow(0, start, b * n)?);
            start += b * n;
        }
        Ok((out, scores))
    }

    /// Logits `[vocab]` of hidden state row `i` of `hidden` (`[n, d]`).
    pub fn logits(&self, hidden: &Tensor, i: usize) -> Result<Vec<f32>> {
        let h = hidden.narrow(0, i, 1)?.contiguous()?;
        Ok(few_rows_product(&h, &self.embed, None)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// Logits of every row of `hidden` (`[n, d]`): the embedding matrix streams through once,
    /// and each row is rounded as [`WhisperNet::logits`] rounds it alone.
    pub fn logits_rows(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
        let (n, d) = hidden.dims2()?;
        let vocab = self.dims.vocab;
        let xs = hidden.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::new();
        with_values(&self.embed, |w| {
            kernels::linear_streamed(&xs, w, None, &mut out, (n, d, vocab))
        })?;
        Ok(out.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}
