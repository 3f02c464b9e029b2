//! Our Whisper forward pass. The encoder: candle tensors for the projections and norms, our
//! own fused attention (`audio::encoder_attention`) on the projected matrices. The
//! decoder runs on plain slices on the compute pool: its products stream weights kept as f16
//! when the file stored them so (CTranslate2's files: exactly the same values, half the bytes
//! to read per token) with the columns split over the threads, its attention heads run as pool
//! tasks; it projects query, key and value in one product, writes keys/values into a cache it
//! keeps in place, and keeps the cross-attention keys/values of its window (computed in f32,
//! kept as f16: `CrossKv`), so each new token costs one position instead of the whole
//! sequence. Exact (erf) GELU as openai-whisper and
//! CTranslate2 use. Weights are read under the Hugging Face names.
//!
//! The layers and their weights as stored for each use are in `model/layers.rs`, the loading
//! of the weights in `model/load.rs`, the decoder step (one request's or several requests'
//! shared pass) in `model/step.rs`.

mod layers;
mod load;
#[doc(hidden)]
pub mod profile;
mod step;

use super::attention;
use super::attention::KvCache;
use super::encoder_attention::encoder_attention;
use crate::kernels::few_rows::few_rows_product;
use crate::{kernels, Result};
use candle_core::{Device, Tensor};
use candle_nn::{Conv1d, Module};
use half::f16;
use half::slice::HalfFloatSliceExt;
use layers::{Block, DecoderBlock, Norm, Stored};
use std::sync::Arc;

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

/// Rows up to which a decoder step's products stream the weights ([`StepLin`]); a request
/// with more rows in one step, a long prompt, is not batched with others: it goes through
/// `gemm` alone.
pub(crate) const SMALL_ROWS: usize = 16;

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

/// One decoder layer's cross-attention keys and values over a window's audio, computed in f32
/// and kept as f16 (half the bytes that every decoder step of every request reads: a step of
/// several requests is bound by reading them): keys transposed per head
/// (`[heads][head_dim][frames]`), values `[heads][frames][head_dim]`. Shared by clones.
#[derive(Clone)]
pub(crate) struct CrossKv {
    pub(crate) kt: Arc<[f16]>,
    pub(crate) v: Arc<[f16]>,
    pub(crate) frames: usize,
}

impl CrossKv {
    /// The keys `[1, heads, head_dim, frames]` and values `[1, heads, frames, head_dim]` as f32
    /// tensors (a prompt's cross-attention through `gemm`).
    pub(crate) fn tensors(&self, heads: usize) -> Result<(Tensor, Tensor)> {
        let hd = self.kt.len() / heads / self.frames.max(1);
        let widen = |x: &[f16]| {
            let mut out = vec![0f32; x.len()];
            x.convert_to_f32_slice(&mut out);
            out
        };
        Ok((
            Tensor::from_vec(widen(&self.kt), (1, heads, hd, self.frames), &Device::Cpu)?,
            Tensor::from_vec(widen(&self.v), (1, heads, self.frames, hd), &Device::Cpu)?,
        ))
    }
}

/// The decoder's state over one window: per layer, the cached self-attention keys/values of
/// each sequence of the batch (beams, or best-of samples; written in place) and the window's
/// cross-attention keys and values (`CrossKv`), which every sequence shares. Clones copy the
/// self-attention caches (empty in a fresh state) and share the audio's keys/values.
#[derive(Clone)]
pub struct DecoderState {
    self_kv: Vec<KvCache>,
    cross_kv: Vec<CrossKv>,
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

/// An encoder attention: `qkv` (`[b * t][3d]`) to `out` (`[b * t][d]`), dimensions
/// `(b, t, d, heads)`.
type Attend = fn(&[f32], &mut [f32], (usize, usize, usize, usize));

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

impl WhisperNet {
    /// Encoder states `[b, 1500, d]` of features `[b, n_mels, 3000]` (each window of the
    /// batch computed as alone), on a pool thread. The convolutions are candle's; the layers
    /// run on slices: `gemm` with bias and residual in place (`Lin::forward_rows`), our layer
    /// norm and vectorised GELU on the pool, the attention through
    /// `audio::encoder_attention` (fused: scores, softmax and values by blocks of 6 queries).
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        kernels::on_pool(|| self.encode_here(mel))
    }

    fn encode_here(&self, mel: &Tensor) -> Result<Tensor> {
        self.encode_with(mel, encoder_attention)
    }

    /// [`Self::encode`]'s pass with the attention `attend` (the tests compare the fused one
    /// with the `gemm` one it replaced).
    fn encode_with(&self, mel: &Tensor, attend: Attend) -> Result<Tensor> {
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
            attend(&qkv, &mut y, (b, t, d, block.heads));
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
                let mut vh = vec![f16::ZERO; d * t];
                for (j, row) in v.chunks_exact(d).enumerate() {
                    for (h, part) in row.chunks_exact(hd).enumerate() {
                        vh[(h * t + j) * hd..][..hd].convert_from_f32_slice(part);
                    }
                }
                let mut kh = vec![f16::ZERO; d * t];
                kh.convert_from_f32_slice(&kt);
                Ok(CrossKv {
                    kt: kh.into(),
                    v: vh.into(),
                    frames: t,
                })
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

/// The encoder attention through `gemm` that the fused one replaced (query blocks of 256),
/// for the comparisons of the tests.
#[cfg(test)]
fn gemm_attention(qkv: &[f32], out: &mut [f32], dims: (usize, usize, usize, usize)) {
    attention::encoder_attention_gemm(qkv, out, dims, 256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::passes::tests::tiny_en;

    /// tiny.en's encoder states of a real window (the 30 s speech fixture) with the fused
    /// attention against the `gemm` one: equal within 1e-3 (the states' values reach ~±30;
    /// measured max abs difference ~1e-5).
    #[test]
    fn fused_encoder_attention_keeps_the_encoder_states() {
        use crate::audio::mel::{log_mel, N_FRAMES};
        let model = tiny_en();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/audio/long_en.flac");
        let samples = crate::audio::input::decode_audio(&std::fs::read(path).unwrap()).unwrap();
        let (features, frames) = log_mel(&samples, 80, 160);
        let mel =
            crate::audio::decode::window_mel(&features, frames, 80, 0, N_FRAMES.min(frames - 1));
        let x = Tensor::from_slice(&mel, (1, 80, 3000), &Device::Cpu).unwrap();
        let fused = model
            .net
            .encode(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let gemm = kernels::on_pool(|| model.net.encode_with(&x, gemm_attention))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let diff = fused
            .iter()
            .zip(&gemm)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let scale = gemm.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        println!("encoder states: max abs diff {diff:e} (largest value {scale})");
        assert!(
            diff < 1e-3,
            "the fused attention moves the encoder states by {diff}"
        );
    }
}
