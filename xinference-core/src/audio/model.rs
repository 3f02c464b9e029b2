//! Our Whisper forward pass on candle tensors: the encoder, and a decoder that keeps a
//! self-attention KV cache and the cross-attention keys/values of its window, so each new token
//! costs one position instead of the whole sequence. Exact (erf) GELU as openai-whisper and
//! CTranslate2 use. Weights are read under the Hugging Face names.

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

    /// Attention of queries `x` over keys (split and transposed: `[b, heads, head_dim, s]`)
    /// and values (split), with an additive mask.
    fn attend(&self, x: &Tensor, kt: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.attend_scores(x, kt, v, mask, false)?.0)
    }

    /// [`Attention::attend`], also returning the scaled scores `[b, heads, t, s]` before the
    /// softmax when `keep_scores` is set.
    fn attend_scores(
        &self,
        x: &Tensor,
        kt: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        keep_scores: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (y, scores) = self.mix(
            &self.q.forward(x)?,
            kt,
            v,
            mask,
            keep_scores,
            candle_softmax,
        )?;
        Ok((self.out.forward(&y)?, scores))
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

struct Block {
    attn_ln: LayerNorm,
    attn: Attention,
    cross: Option<(LayerNorm, Attention)>,
    mlp_ln: LayerNorm,
    fc1: Lin,
    fc2: Lin,
}

impl Block {
    fn load(vb: &VarBuilder, d: usize, heads: usize, cross: bool) -> Result<Self> {
        let cross = if cross {
            Some((
                layer_norm(&vb.pp("encoder_attn_layer_norm"), d)?,
                Attention::load(&vb.pp("encoder_attn"), d, heads)?,
            ))
        } else {
            None
        };
        Ok(Block {
            attn_ln: layer_norm(&vb.pp("self_attn_layer_norm"), d)?,
            attn: Attention::load(&vb.pp("self_attn"), d, heads)?,
            cross,
            mlp_ln: layer_norm(&vb.pp("final_layer_norm"), d)?,
            fc1: linear(&vb.pp("fc1"), d, 4 * d, true)?,
            fc2: linear(&vb.pp("fc2"), 4 * d, d, true)?,
        })
    }

    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(&self.mlp_ln.forward(x)?)?.gelu_erf()?;
        Ok((x + self.fc2.forward(&h)?)?)
    }

    /// [`Block::mlp`] with [`Lin::forward_streamed`] products.
    fn mlp_streamed(&self, x: &Tensor) -> Result<Tensor> {
        let h = self
            .fc1
            .forward_streamed(&self.mlp_ln.forward(x)?)?
            .gelu_erf()?;
        Ok((x + self.fc2.forward_streamed(&h)?)?)
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
    decoder: Vec<Block>,
    decoder_ln: LayerNorm,
}

/// The decoder's state over one window: per layer, the cached self-attention keys/values of
/// each sequence of the batch (`[batch, heads, len, head_dim]`: beams, or best-of samples) and
/// the window's cross-attention keys (transposed once: `[1, heads, head_dim, 1500]`) and
/// values, which every sequence shares. Clones are cheap
/// (tensors are shared until written).
#[derive(Clone)]
pub struct DecoderState {
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    cross_kv: Vec<(Tensor, Tensor)>,
    len: usize,
    batch: usize,
}

impl DecoderState {
    /// A placeholder left behind while the state is away in a shared pass.
    pub(crate) fn placeholder() -> Self {
        DecoderState {
            self_kv: Vec::new(),
            cross_kv: Vec::new(),
            len: 0,
            batch: 1,
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
            let idx = Tensor::new(origins, &Device::Cpu)?;
            for (k, v) in self.self_kv.iter_mut().flatten() {
                *k = k.index_select(&idx, 0)?;
                *v = v.index_select(&idx, 0)?;
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

/// Softmax over the last dimension through [`kernels::softmax_rows`], rows spread over the
/// pool.
fn fast_softmax(x: &Tensor) -> Result<Tensor> {
    use rayon::prelude::*;
    let shape = x.dims().to_vec();
    let width = shape.last().copied().unwrap_or(1).max(1);
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    let rows = (1 << 16) / width + 1;
    values
        .par_chunks_mut(rows * width)
        .for_each(|c| kernels::softmax_rows(c, width));
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Exact (erf) GELU through the vectorised kernel ([`kernels::Activation::Gelu`]).
fn gelu(x: &Tensor) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    kernels::Activation::Gelu.apply(&mut values);
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// The additive causal mask of `n` new positions after `offset` cached ones (`None` for one).
fn causal_mask(n: usize, offset: usize) -> Result<Option<Tensor>> {
    if n <= 1 {
        return Ok(None);
    }
    let total = offset + n;
    let m: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(m, (n, total), &Device::Cpu)?))
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
                .map(|i| Block::load(&enc.pp(format!("layers.{i}")), d, dims.encoder_heads, false))
                .collect::<Result<_>>()?,
            encoder_ln: layer_norm(&enc.pp("layer_norm"), d)?,
            embed: dec
                .get((dims.vocab, d), "embed_tokens.weight")?
                .contiguous()?,
            text_pos: dec.get((dims.text_ctx, d), "embed_positions.weight")?,
            decoder: (0..dims.decoder_layers)
                .map(|i| Block::load(&dec.pp(format!("layers.{i}")), d, dims.decoder_heads, true))
                .collect::<Result<_>>()?,
            decoder_ln: layer_norm(&dec.pp("layer_norm"), d)?,
            dims,
        })
    }

    /// Encoder states `[b, 1500, d]` of features `[b, n_mels, 3000]` (each window of the
    /// batch computed as alone). GELU and the attention softmax go through our vectorised
    /// kernels (candle's call libm per value: a tenth of the encoder's time).
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        let x = gelu(&self.conv1.forward(mel)?)?;
        let x = gelu(&self.conv2.forward(&x)?)?.transpose(1, 2)?;
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.audio_pos.narrow(0, 0, t)?)?;
        for block in &self.encoder {
            let a = &block.attn;
            let h = block.attn_ln.forward(&x)?;
            let (k, v) = (a.split(&a.k.forward(&h)?)?, a.split(&a.v.forward(&h)?)?);
            let kt = k.transpose(2, 3)?.contiguous()?;
            let (y, _) = a.mix(&a.q.forward(&h)?, &kt, &v, None, false, fast_softmax)?;
            x = (&x + a.out.forward(&y)?)?;
            let m = gelu(&block.fc1.forward(&block.mlp_ln.forward(&x)?)?)?;
            x = (&x + block.fc2.forward(&m)?)?;
        }
        Ok(self.encoder_ln.forward(&x)?)
    }

    /// A fresh decoder state over encoder states `audio` (cross keys/values computed once).
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        let cross_kv = self
            .decoder
            .iter()
            .map(|b| {
                let (_, a) = b
                    .cross
                    .as_ref()
                    .expect("decoder blocks have cross-attention");
                Ok((
                    a.split(&a.k.forward(audio)?)?
                        .transpose(2, 3)?
                        .contiguous()?,
                    a.split(&a.v.forward(audio)?)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState {
            self_kv: vec![None; self.decoder.len()],
            cross_kv,
            len: 0,
            batch: 1,
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
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.dims.d_model;
        // (sequences, tokens per sequence, positions already cached) of each request.
        let shapes: Vec<(usize, usize, usize)> = steps
            .iter()
            .map(|s| (s.state.batch, s.tokens.len() / s.state.batch, s.state.len))
            .collect();
        let mut parts = Vec::with_capacity(steps.len());
        let mut masks = Vec::with_capacity(steps.len());
        for (s, &(b, n, offset)) in steps.iter().zip(&shapes) {
            parts.push(
                self.embed_tokens(s.tokens, b, n, offset)?
                    .reshape((b * n, d))?,
            );
            masks.push(causal_mask(n, offset)?);
        }
        let mut x = Tensor::cat(&parts, 0)?;
        for (l, block) in self.decoder.iter().enumerate() {
            let a = &block.attn;
            let h = block.attn_ln.forward(&x)?;
            let (q, k, v) = (
                a.q.forward_streamed(&h)?,
                a.k.forward_streamed(&h)?,
                a.v.forward_streamed(&h)?,
            );
            let mut ys = Vec::with_capacity(steps.len());
            let mut start = 0;
            for ((step, &(b, n, _)), mask) in steps.iter_mut().zip(&shapes).zip(&masks) {
                let part = |t: &Tensor| t.narrow(0, start, b * n)?.reshape((b, n, d));
                let (k, v) = (a.split(&part(&k)?)?, a.split(&part(&v)?)?);
                let (k, v) = match step.state.self_kv[l].take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                let kt = k.transpose(2, 3)?.contiguous()?;
                let (y, _) = a.mix(&part(&q)?, &kt, &v, mask.as_ref(), false, candle_softmax)?;
                step.state.self_kv[l] = Some((k, v));
                ys.push(y.reshape((b * n, d))?);
                start += b * n;
            }
            x = (&x + a.out.forward_streamed(&Tensor::cat(&ys, 0)?)?)?;
            let (ln, cross) = block
                .cross
                .as_ref()
                .expect("decoder blocks have cross-attention");
            let q = cross.q.forward_streamed(&ln.forward(&x)?)?;
            ys.clear();
            start = 0;
            for (step, &(b, n, _)) in steps.iter().zip(&shapes) {
                let (ck, cv) = &step.state.cross_kv[l];
                let q = q.narrow(0, start, b * n)?.reshape((1, b * n, d))?;
                let (y, _) = cross.mix(&q, ck, cv, None, false, candle_softmax)?;
                ys.push(y.reshape((b * n, d))?);
                start += b * n;
            }
            x = (&x + cross.out.forward_streamed(&Tensor::cat(&ys, 0)?)?)?;
            x = block.mlp_streamed(&x)?;
        }
        let hidden = self.decoder_ln.forward(&x)?;
        let mut out = Vec::with_capacity(steps.len());
        let mut start = 0;
        for (step, &(b, n, _)) in steps.iter_mut().zip(&shapes) {
            step.state.len += n;
            out.push(hidden.narrow(0, start, b * n)?);
            start += b * n;
        }
        Ok(out)
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
        let b = state.batch;
        let n = tokens.len() / b;
        let d = self.dims.d_model;
        let offset = state.len;
        let mut x = self.embed_tokens(tokens, b, n, offset)?;
        let mask = causal_mask(n, offset)?;
        let mut scores = Vec::new();
        for (l, block) in self.decoder.iter().enumerate() {
            let h = block.attn_ln.forward(&x)?;
            let k = block.attn.split(&block.attn.k.forward(&h)?)?;
            let v = block.attn.split(&block.attn.v.forward(&h)?)?;
            let (k, v) = match state.self_kv[l].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let kt = k.transpose(2, 3)?.contiguous()?;
            x = (&x + block.attn.attend(&h, &kt, &v, mask.as_ref())?)?;
            state.self_kv[l] = Some((k, v));
            let (ln, cross) = block
                .cross
                .as_ref()
                .expect("decoder blocks have cross-attention");
            let (ck, cv) = &state.cross_kv[l];
            // Every sequence attends to the same audio, so the batch rows are queries of one
            // sequence here: one matrix product instead of one per row.
            let q = ln.forward(&x)?.reshape((1, b * n, d))?;
            let keep = heads.iter().any(|&(hl, _)| hl == l);
            let (y, s) = cross.attend_scores(&q, ck, cv, None, keep)?;
            if let Some(s) = s {
                for &(_, head) in heads.iter().filter(|&&(hl, _)| hl == l) {
                    let t = s.dim(3)?;
                    scores.push(s.narrow(1, head, 1)?.reshape((b, n, t))?);
                }
            }
            x = (&x + y.reshape((b, n, d))?)?;
            x = block.mlp(&x)?;
        }
        state.len += n;
        let hidden = self.decoder_ln.forward(&x)?.reshape((b * n, d))?;
        Ok((hidden, scores))
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
