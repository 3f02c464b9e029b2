//! Our own quantized decoder for GGUF files: one file per family for its configuration and weights
//! (`llama.rs`: `llama`, `mistral`, `qwen2`; `qwen3.rs`; `gemma3.rs`; `smollm3.rs`; `phi3.rs`;
//! `glm4.rs`; `qwen3moe.rs`; `glm4moe.rs`; `gpt_oss.rs`; `qwen35.rs`, `qwen35moe.rs`), and here what they share: quantized linear layers
//! (fused ones split on loading, `fused.rs`), mixtures of experts (`moe.rs`, MXFP4 experts in
//! `mxfp4.rs`), RMS norms, rotary
//! attention (whole or partial heads, or none) with grouped KV heads, optional sliding windows and
//! a per-sequence KV cache, a gated feed-forward.
//!
//! Safetensors checkpoints load through the same family files from a GGUF view of the checkpoint
//! (`loading/safetensors/gguf_view.rs`), marked with [`EXACT_KEY`]: their float weights stay as
//! stored and everything runs in f32 as transformers does (`exact`: products on
//! `kernels::float`, exact GELU, f32 attention), instead of llama.cpp's roundings.
//!
//! Why not candle's `quantized_llama` / `quantized_qwen2`: their matrix products go through
//! candle's quantized kernels, which round activations otherwise than llama.cpp on some CPUs, reach
//! a quarter of llama.cpp's prefill speed, and sum batched rows otherwise than single ones. Here
//! every quantized product runs on our kernels (`kernels::quant`, see `qlinear.rs`): llama.cpp's
//! rounding on every CPU, and each row independent of the rows beside it. Owning the model also
//! gives Qwen2 shareable weights (`Clone` copies only the cache), which candle's lacks, so Qwen2
//! GGUFs serve several sequences at once like the other families. candle's `quantized_gemma3` gates
//! its feed-forward with SiLU where Gemma uses GELU(tanh), which is why its greedy answers left
//! llama.cpp's; `gemma3.rs` follows llama.cpp's graph.

use crate::kernels::norm_rope::Rounding;
use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, IndexOp, Tensor};
use std::io::{Read, Seek};

mod attention;
mod batch;
mod delta_net;
mod fused;
mod gelu;
mod gemma3;
mod gemma4;
mod glm4;
mod glm4moe;
mod gpt_oss;
mod llama;
mod moe;
mod mxfp4;
mod phi3;
mod qlinear;
mod qwen3;
mod qwen35;
mod qwen35moe;
mod qwen3moe;
mod rope;
mod smollm3;
mod token_table;

use crate::llm::model::LayerKv;
use gelu::gelu_f16_mul;
pub use gemma4::Gemma4Decoder;
use qlinear::QLinear;
pub use qlinear::EXACT_KEY;
use rope::Rope;
use token_table::TokenTable;

/// A GGUF tensor read as f32 (norm weights, biases, the token table).
fn f32_tensor<R: Read + Seek>(ct: &Content, reader: &mut R, name: &str) -> Result<Tensor> {
    let device = Device::Cpu;
    Ok(ct.tensor(reader, name, &device)?.dequantize(&device)?)
}

/// The gated feed-forward's activation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Activation {
    /// SwiGLU (Llama, Mistral, Qwen2).
    Silu,
    /// GELU with the tanh approximation (Gemma).
    GeluTanh,
}

/// What a family's forward pass does differently, beyond which weights it has.
#[derive(Clone, Debug)]
struct Family {
    /// Multiplies the token embeddings (Gemma: `sqrt(hidden)`).
    embed_scale: Option<f64>,
    /// Multiplies the query-key products.
    attn_scale: f64,
    /// The scale multiplies the queries before they are rounded for the product (Gemma, as
    /// llama.cpp's graph does), not the products.
    scale_queries: bool,
    /// The gated feed-forward's activation.
    activation: Activation,
    /// NEOX rotary (pairs `i`, `i + d/2`: Qwen2, Gemma) rather than interleaved (Llama, Mistral).
    neox: bool,
    /// Final logits become `cap * tanh(logits / cap)`.
    logit_softcap: Option<f32>,
}

impl Family {
    /// The common settings: no embedding scale, `1/sqrt(head_dim)` attention scale, SwiGLU, no
    /// logit soft-capping; `neox` says which rotary pairing the family uses.
    fn standard(head_dim: usize, neox: bool) -> Self {
        Family {
            embed_scale: None,
            attn_scale: 1.0 / (head_dim as f64).sqrt(),
            scale_queries: false,
            activation: Activation::Silu,
            neox,
            logit_softcap: None,
        }
    }
}

/// One decoder block. The optional norms are Gemma's (and `None` for the Llama layout).
#[derive(Clone)]
struct Layer {
    attn_norm: Tensor,
    q: QLinear,
    k: QLinear,
    v: QLinear,
    o: QLinear,
    /// RMS norm of each query / key head before the rotary embedding.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    /// RMS norm of the attention output before the residual sum.
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    ffn: FeedForward,
    /// RMS norm of the feed-forward output before the residual sum.
    post_ffn_norm: Option<Tensor>,
    /// A query sees only the last `window` positions (itself included); `None`: all.
    window: Option<usize>,
    /// Per head, a learned logit that joins each query's softmax without a value (gpt-oss's
    /// attention sinks): the attention weights then sum to less than one.
    sinks: Option<Tensor>,
    /// Index into [`GgufDecoder::ropes`].
    rope: usize,
    /// A block that runs its own mixer and feed-forward (Qwen3.5's hybrid blocks,
    /// `qwen35.rs`); `None`: the attention and feed-forward here.
    mixer: Option<qwen35::Mixer>,
}

/// A block's feed-forward.
#[derive(Clone)]
enum FeedForward {
    /// `down(act(gate(x)) * up(x))`.
    Gated {
        gate: QLinear,
        up: QLinear,
        down: QLinear,
    },
    /// A mixture of experts (`moe.rs`).
    Experts(moe::Experts),
}

impl Layer {
    /// The weights of block `i` common to every family (`bias`: q/k/v have biases). A fused
    /// `attn_qkv` (Phi-3) is split into q, k and v; an `ffn_up` without `ffn_gate` holds the
    /// gate's rows, then the up rows (Phi-3, GLM-4), and is split in two.
    fn load<R: Read + Seek>(ct: &Content, reader: &mut R, i: usize, bias: bool) -> Result<Self> {
        let p = format!("blk.{i}");
        let [gate, up] = fused::feed_forward(ct, reader, &p)?;
        let ffn = FeedForward::Gated {
            gate,
            up,
            down: QLinear::load(ct, reader, &format!("{p}.ffn_down"), false)?,
        };
        Self::load_with(ct, reader, i, bias, ffn)
    }

    /// Block `i`'s attention and norms around the feed-forward `ffn`.
    fn load_with<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        i: usize,
        bias: bool,
        ffn: FeedForward,
    ) -> Result<Self> {
        let p = format!("blk.{i}");
        let [q, k, v] = fused::attention(ct, reader, &p, bias)?;
        Ok(Layer {
            attn_norm: f32_tensor(ct, reader, &format!("{p}.attn_norm.weight"))?,
            q,
            k,
            v,
            o: QLinear::load(ct, reader, &format!("{p}.attn_output"), false)?,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            ffn_norm: f32_tensor(ct, reader, &format!("{p}.ffn_norm.weight"))?,
            ffn,
            post_ffn_norm: None,
            window: None,
            sinks: None,
            rope: 0,
            mixer: None,
        })
    }
}

/// The attention shape read from a GGUF's `{architecture}.*` metadata.
struct Shape {
    heads: usize,
    kv_heads: usize,
    hidden: usize,
    head_dim: usize,
    layers: usize,
    positions: usize,
    eps: f32,
}

impl Shape {
    fn read(ct: &Content, architecture: &str) -> Result<Self> {
        let heads = meta_usize(ct, architecture, "attention.head_count")?;
        let kv_heads = meta_usize(ct, architecture, "attention.head_count_kv").unwrap_or(heads);
        let hidden = meta_usize(ct, architecture, "embedding_length")?;
        let head_dim =
            meta_usize(ct, architecture, "attention.key_length").unwrap_or(hidden / heads.max(1));
        let layers = meta_usize(ct, architecture, "block_count")?;
        let positions = meta_usize(ct, architecture, "context_length")
            .unwrap_or(4096)
            .clamp(1, 1 << 17);
        let eps = meta(ct, architecture, "attention.layer_norm_rms_epsilon")?.to_f32()?;
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::bad_request(format!(
                "the GGUF has {heads} attention heads and {kv_heads} key/value heads"
            )));
        }
        Ok(Shape {
            heads,
            kv_heads,
            hidden,
            head_dim,
            layers,
            positions,
            eps,
        })
    }
}

/// The metadata value `{architecture}.{key}`.
fn meta<'a>(
    ct: &'a Content,
    architecture: &str,
    key: &str,
) -> Result<&'a candle_core::quantized::gguf_file::Value> {
    ct.metadata
        .get(&format!("{architecture}.{key}"))
        .ok_or_else(|| Error::bad_request(format!("the GGUF has no {architecture}.{key}")))
}

/// The integer metadata value `{architecture}.{key}`.
fn meta_usize(ct: &Content, architecture: &str, key: &str) -> Result<usize> {
    value_usize(meta(ct, architecture, key)?)
}

/// A non-negative integer metadata value of any integer type (llama.cpp reads them alike: the
/// converter writes per-layer arrays of Python ints as I32).
pub(crate) fn value_usize(value: &candle_core::quantized::gguf_file::Value) -> Result<usize> {
    use candle_core::quantized::gguf_file::Value as V;
    let n: i128 = match value {
        V::U8(v) => (*v).into(),
        V::I8(v) => (*v).into(),
        V::U16(v) => (*v).into(),
        V::I16(v) => (*v).into(),
        V::U32(v) => (*v).into(),
        V::I32(v) => (*v).into(),
        V::U64(v) => (*v).into(),
        V::I64(v) => (*v).into(),
        other => {
            return Err(Error::bad_request(format!(
                "a GGUF metadata value is {other:?}, not an integer"
            )))
        }
    };
    usize::try_from(n)
        .map_err(|_| Error::bad_request(format!("a GGUF metadata value is {n}, not a count")))
}

/// The float metadata value `{architecture}.{key}`, if there is one.
fn meta_f32(ct: &Content, architecture: &str, key: &str) -> Option<f32> {
    meta(ct, architecture, key).ok()?.to_f32().ok()
}

/// The output layer: `output.weight`, or the token table's own bytes when the embeddings are
/// tied (one copy in memory).
fn load_output<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    table: &TokenTable,
) -> Result<QLinear> {
    if ct.tensor_infos.contains_key("output.weight") {
        QLinear::load(ct, reader, "output", false)
    } else {
        QLinear::from_weight(table.weight().clone(), qlinear::exact_products(ct))
    }
}

/// `f` of `x`'s values (contiguous f32 on the CPU), read in place.
fn with_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the decoder runs on the CPU");
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("a non-contiguous tensor".into()))?;
    Ok(f(&cpu.as_slice::<f32>()?[start..end]))
}

/// `a` with `g(a_i, b_i)` in place of each value, for `b` of `a`'s shape, on the calling
/// thread. candle's element-wise ops of a prompt's size wake its spinning pool, whose waits
/// took a tenth of a SmolLM2 prompt's time; one pass here costs less, and a decode step's
/// few values need no pool at all.
fn zip_map(a: &Tensor, b: &Tensor, g: impl Fn(f32, f32) -> f32) -> candle_core::Result<Tensor> {
    if a.dims() != b.dims() {
        candle_core::bail!("element-wise op of {:?} and {:?}", a.dims(), b.dims());
    }
    let mut out = a.flatten_all()?.to_vec1::<f32>()?;
    with_values(b, |b| {
        for (o, b) in out.iter_mut().zip(b) {
            *o = g(*o, *b);
        }
    })?;
    Tensor::from_vec(out, a.dims(), &Device::Cpu)
}

/// `silu(gate) * up` in one pass over the values (candle's `silu` then `mul`: the same float
/// operations, the same bits, without the tensor between them).
fn silu_mul(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    zip_map(gate, up, |g, u| g / (1.0 + (-g).exp()) * u)
}

/// `silu(gate) * up` as llama.cpp's `swiglu` computes it (the GGUF path; see
/// [`crate::kernels::silu_mul_ggml`]), rows of `gate`'s last dimension.
fn silu_mul_ggml(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    if gate.dims() != up.dims() {
        candle_core::bail!("swiglu of {:?} and {:?}", gate.dims(), up.dims());
    }
    let width = gate.dims().last().copied().unwrap_or(1);
    let mut out = gate.flatten_all()?.to_vec1::<f32>()?;
    with_values(up, |up| crate::kernels::silu_mul_ggml(&mut out, up, width))?;
    Tensor::from_vec(out, gate.dims(), &Device::Cpu)
}

/// The residual sum `y + h` (candle's `add`: the same bits).
fn residual(y: &Tensor, h: &Tensor) -> candle_core::Result<Tensor> {
    zip_map(y, h, |y, h| y + h)
}

/// A decoder loaded from GGUF: the Llama layout (`llama.rs`) or Gemma 3 (`gemma3.rs`).
/// Cloning shares the weights and copies the cache.
#[derive(Clone)]
pub struct GgufDecoder {
    embeddings: TokenTable,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QLinear,
    eps: f32,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    family: Family,
    /// Rotary tables; each layer names its own (Gemma's local and global layers differ).
    ropes: Vec<Rope>,
    /// Per layer, the keys and values (f16) of the positions it still needs (all of them, or
    /// at least the last `window` for a sliding-window layer).
    cache: Vec<Option<LayerKv>>,
    /// f32 throughout, as transformers computes (safetensors weights): exact GELU, attention
    /// over an f32-precise cache (`attention.rs`), products of float weights in f32, and RMS
    /// norms and rotary as candle computes them; otherwise (GGUF) all as llama.cpp's CPU
    /// backend rounds them (see [`GgufDecoder::rounding`]).
    exact: bool,
    /// Sliding-window layers keep every position ([`crate::llm::CausalLm::keep_whole_windows`]).
    whole_windows: bool,
}

impl GgufDecoder {
    /// A decoder from what a family file loaded: the attention sizes from `shape`, the token
    /// table, the blocks, the final norm, the output layer, the family's settings and its
    /// rotary tables.
    fn assemble(
        shape: &Shape,
        embeddings: TokenTable,
        layers: Vec<Layer>,
        norm: Tensor,
        output: QLinear,
        family: Family,
        ropes: Vec<Rope>,
    ) -> Self {
        GgufDecoder {
            embeddings,
            layers,
            norm,
            output,
            eps: shape.eps,
            heads: shape.heads,
            kv_heads: shape.kv_heads,
            head_dim: shape.head_dim,
            family,
            ropes,
            cache: Vec::new(),
            exact: false,
            whole_windows: false,
        }
    }

    /// [`GgufDecoder::assemble`] with the tensors every family has read from the file: the
    /// token table (`token_embd`), the final norm (`output_norm`) and the output layer.
    fn with_common_tensors<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        shape: &Shape,
        layers: Vec<Layer>,
        family: Family,
        ropes: Vec<Rope>,
    ) -> Result<Self> {
        let embeddings = TokenTable::new(std::sync::Arc::new(ct.tensor(
            reader,
            "token_embd.weight",
            &Device::Cpu,
        )?))?;
        let norm = f32_tensor(ct, reader, "output_norm.weight")?;
        let output = load_output(ct, reader, &embeddings)?;
        let mut decoder = Self::assemble(shape, embeddings, layers, norm, output, family, ropes);
        decoder.exact = qlinear::exact_products(ct);
        if decoder.rounding() == Rounding::Ggml {
            decoder.ropes.iter_mut().for_each(Rope::round_as_llama_cpp);
        }
        Ok(decoder)
    }

    /// Whose roundings the RMS norms and the rotary follow: candle's on the f32 path compared
    /// with transformers (`exact`), llama.cpp's CPU backend's on the GGUF path, for every
    /// family, as llama.cpp runs them all through the same `ggml_rms_norm` and `ggml_rope`.
    /// candle's `rms_norm` (an f32 sum, `x / sqrt(mean + eps) · w`) differs from ggml's in the
    /// last bits of most values; Gemma 3 270M's activations reach 1e5 beside values near 1e-3,
    /// and that was enough, at layer 13 of the `<bos>` step, to move the f16 scale of one Q8_0
    /// activation block across a rounding boundary, which its post-feed-forward norm then
    /// amplified into logits 0.09 from llama.cpp's there and 1.5 further on.
    fn rounding(&self) -> Rounding {
        Rounding::exact_or_ggml(self.exact)
    }

    /// RMS norm of each row of `xs` (rows of `w`'s length) times `w`, in place
    /// ([`crate::kernels::norm_rope::rms_norm`], rounded as [`GgufDecoder::rounding`] says).
    fn rms_in_place(&self, xs: &mut [f32], w: &Tensor) -> candle_core::Result<()> {
        let rounding = self.rounding();
        with_values(w, |w| {
            if w.is_empty() || !xs.len().is_multiple_of(w.len()) {
                candle_core::bail!("rms_norm of {} values by a weight of {}", xs.len(), w.len());
            }
            crate::kernels::norm_rope::rms_norm(xs, w, self.eps, rounding);
            Ok(())
        })?
    }

    /// RMS norm of `x`'s rows (its last dimension) times `w`, into a new tensor.
    fn rms(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let mut out = x.flatten_all()?.to_vec1::<f32>()?;
        self.rms_in_place(&mut out, w)?;
        Tensor::from_vec(out, x.dims(), &Device::Cpu)
    }

    /// The residual sum `h + norm(y)`, `norm` the RMS norm by `w` when there is one (Gemma's
    /// and GLM-4's post-attention and post-feed-forward norms): one copy of `y`'s values,
    /// normed and summed in place.
    fn add_normed(
        &self,
        h: &Tensor,
        y: &Tensor,
        w: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        if h.dims() != y.dims() {
            candle_core::bail!("residual sum of {:?} and {:?}", h.dims(), y.dims());
        }
        let mut out = y.flatten_all()?.to_vec1::<f32>()?;
        if let Some(w) = w {
            self.rms_in_place(&mut out, w)?;
        }
        with_values(h, |h| out.iter_mut().zip(h).for_each(|(y, h)| *y += h))?;
        Tensor::from_vec(out, h.dims(), &Device::Cpu)
    }

    /// Whether this decoder runs the GGUF's architecture.
    pub fn supports(ct: &Content, architecture: &str) -> bool {
        match architecture {
            "gemma3" => gemma3::supports(ct),
            "gpt-oss" => gpt_oss::supports(ct),
            "qwen3" => qwen3::supports(ct),
            "smollm3" => smollm3::supports(ct),
            "phi3" => phi3::supports(ct),
            "glm4" => glm4::supports(ct),
            "glm4moe" => glm4moe::supports(ct),
            "qwen3moe" => qwen3moe::supports(ct),
            "qwen35" => qwen35::supports(ct),
            "qwen35moe" => qwen35moe::supports(ct),
            _ => llama::supports(ct, architecture),
        }
    }

    /// Loads the weights of a GGUF whose architecture [`GgufDecoder::supports`].
    pub fn load<R: Read + Seek>(ct: &Content, reader: &mut R, architecture: &str) -> Result<Self> {
        match architecture {
            "gemma3" => gemma3::load(ct, reader),
            "gpt-oss" => gpt_oss::load(ct, reader),
            "qwen3" => qwen3::load(ct, reader),
            "smollm3" => smollm3::load(ct, reader),
            "phi3" => phi3::load(ct, reader),
            "glm4" => glm4::load(ct, reader),
            "glm4moe" => glm4moe::load(ct, reader),
            "qwen3moe" => qwen3moe::load(ct, reader),
            "qwen35" => qwen35::load(ct, reader),
            "qwen35moe" => qwen35moe::load(ct, reader),
            _ => llama::load(ct, reader, architecture),
        }
    }

    /// Forgets every position.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Logits of the last of `tokens`, fed at `position` (0 starts a new sequence). A prompt
    /// fed in parts gives the bits it gives whole: every product row is computed on its own.
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>> {
        if position == 0 {
            self.clear_cache();
        }
        let mut cache = std::mem::take(&mut self.cache);
        let result = self.forward_rows(
            tokens,
            &mut [Rows {
                len: tokens.len(),
                position,
                cache: &mut cache,
            }],
        );
        self.cache = cache;
        Ok(result?.pop().unwrap_or_default())
    }

    /// One pass over the rows of several sequences at once (`tokens` holds each sequence's
    /// rows in turn, `seqs` their lengths, positions and caches): the linear layers run over
    /// all rows together (one read of the weights), attention per sequence over its own
    /// cache. Returns each sequence's last-row logits, each as the sequence would have alone.
    /// The pass runs on a compute thread ([`crate::kernels::on_pool`]).
    fn forward_rows(&self, tokens: &[u32], seqs: &mut [Rows<'_>]) -> Result<Vec<Vec<f32>>> {
        crate::kernels::on_pool(|| self.forward_rows_here(tokens, seqs))
    }

    /// [`GgufDecoder::forward_rows`] on the calling thread.
    fn forward_rows_here(&self, tokens: &[u32], seqs: &mut [Rows<'_>]) -> Result<Vec<Vec<f32>>> {
        let positions = self.ropes[0].positions();
        for seq in seqs.iter_mut() {
            let (s, position) = (seq.len, seq.position);
            if s == 0 || position + s > positions {
                return Err(Error::bad_request(format!(
                    "{s} tokens at position {position} do not fit the model's {positions} positions"
                )));
            }
            if seq.cache.len() != self.layers.len() {
                seq.cache.resize(self.layers.len(), None);
            }
        }
        let mut h = self.embeddings.rows(tokens)?.unsqueeze(0)?; // [1, rows, hidden]
        if let Some(scale) = self.family.embed_scale {
            h = (h * scale)?;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let x = self.rms(&h, &layer.attn_norm)?;
            if let Some(mixer) = &layer.mixer {
                h = mixer.block(self, layer, i, &x, &h, seqs)?;
                continue;
            }
            let [q, k, v]: [Tensor; 3] =
                QLinear::forward_together(&[&layer.q, &layer.k, &layer.v], &x)?
                    .try_into()
                    .map_err(|_| Error::internal("three projections gave another count"))?;
            let mut attended = Vec::with_capacity(seqs.len());
            // Each sequence's rows start at `offset`.
            let mut offset = 0;
            let mut work = Vec::with_capacity(seqs.len());
            for seq in seqs.iter_mut() {
                work.push((offset, seq));
                offset += work.last().map_or(0, |(_, s)| s.len);
            }
            let one = |(offset, seq): &mut (usize, &mut Rows<'_>)| -> Result<Tensor> {
                let rows = |t: &Tensor| t.narrow(1, *offset, seq.len);
                let cache = &mut seq.cache[i];
                self.attend(
                    layer,
                    &rows(&q)?,
                    &rows(&k)?,
                    &rows(&v)?,
                    seq.position,
                    cache,
                )
            };
            if work.len() > 1 {
                // Each sequence's attention on its own compute thread (the same operations
                // as alone, so the same bits).
                use rayon::prelude::*;
                let done: Vec<Result<Tensor>> = work.par_iter_mut().map(one).collect();
                for a in done {
                    attended.push(a?);
                }
            } else {
                for w in work.iter_mut() {
                    attended.push(one(w)?);
                }
            }
            let attended = if attended.len() == 1 {
                attended.remove(0)
            } else {
                Tensor::cat(&attended, 1)?
            };
            let attended = layer.o.forward_rows(&attended)?;
            h = self.add_normed(&h, &attended, layer.post_attn_norm.as_ref())?;
            let x = self.rms(&h, &layer.ffn_norm)?;
            let y = match &layer.ffn {
                FeedForward::Gated { gate, up, down } => {
                    let [gate, up]: [Tensor; 2] = QLinear::forward_together(&[gate, up], &x)?
                        .try_into()
                        .map_err(|_| Error::internal("two projections gave another count"))?;
                    let gated = match self.family.activation {
                        Activation::Silu if self.exact => silu_mul(&gate, &up)?,
                        Activation::Silu => silu_mul_ggml(&gate, &up)?,
                        Activation::GeluTanh if self.exact => (gate.gelu()? * up)?,
                        Activation::GeluTanh => gelu_f16_mul(&gate, &up)?,
                    };
                    down.forward_rows(&gated)?
                }
                FeedForward::Experts(experts) => experts.forward(&x)?,
            };
            h = self.add_normed(&h, &y, layer.post_ffn_norm.as_ref())?;
        }
        // The last row of each sequence.
        let mut last_rows = Vec::with_capacity(seqs.len());
        let mut end = 0;
        for seq in seqs.iter() {
            end += seq.len;
            last_rows.push(h.i((.., end - 1, ..))?);
        }
        let last = if last_rows.len() == 1 {
            last_rows.remove(0)
        } else {
            Tensor::cat(&last_rows, 0)?
        };
        let last = self.rms(&last, &self.norm)?;
        // One row per sequence, each as alone (a prompt's last row too, as it always was).
        let mut logits = self.output.forward_rows(&last)?; // [seqs, vocab]
        if let Some(cap) = self.family.logit_softcap {
            logits = ((logits / cap as f64)?.tanh()? * cap as f64)?;
        }
        Ok(logits.to_vec2()?)
    }
}

/// One sequence's share of a [`GgufDecoder::forward_rows`] pass.
struct Rows<'a> {
    /// Rows (tokens) of this sequence in the pass.
    len: usize,
    /// The position of its first row.
    position: usize,
    /// Its keys and values per layer.
    cache: &'a mut Vec<Option<LayerKv>>,
}

#[cfg(test)]
mod tests;
