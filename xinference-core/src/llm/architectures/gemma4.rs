//! Gemma 4 (`gemma4`, the text path of Gemma 4 E2B / E4B / 31B), as llama.cpp's graph
//! (`src/models/gemma4.cpp`) runs it:
//! - token embeddings scaled by `sqrt(hidden)`;
//! - per-layer embeddings (PLE, `gemma4.embedding_length_per_layer_input` values per layer): a
//!   second token table (`per_layer_token_embd`, scaled by `sqrt(width)`) plus a projection of
//!   the scaled embeddings (`per_layer_model_proj`, scaled by `1/sqrt(hidden)`, RMS-normed per
//!   layer by `per_layer_proj_norm`), summed and scaled by `1/sqrt(2)`; after each block's
//!   feed-forward, `proj(gelu(inp_gate(h)) * ple_input)`, RMS-normed by `post_norm`, joins the
//!   residual;
//! - two head sizes: `attention.key_length_swa` on the sliding-window layers
//!   (`attention.sliding_window_pattern`), `attention.key_length` on the global ones, whose
//!   rotary ("proportional") turns only part of each head: `rope_freqs` divides the other
//!   frequencies by 1e30, so they stay put; rotary bases `rope.freq_base_swa` / `rope.freq_base`;
//! - q/k RMS norms per head, values RMS-normed without weights, attention scale 1;
//! - the last `attention.shared_kv_layers` layers compute no keys or values: each attends over
//!   the cache of the last earlier layer of its own kind (sliding or global), which is
//!   llama.cpp's `n_layer_kv_from_start - (swa ? 2 : 1)` for the released layer patterns;
//! - a layer without `attn_v` uses its keys (before their norm) as values (`attention_k_eq_v`);
//! - post-attention and post-feed-forward norms, GELU(tanh)-gated feed-forward (llama.cpp's f16
//!   GELU table, see `gelu.rs`), a per-layer output scale (`layer_output_scale`), a final logit
//!   soft-cap, output tied to the token table unless `output.weight` exists.
//!
//! Safetensors checkpoints (`loading/safetensors/families_gemma4.rs`) run the same graph in f32
//! as transformers does (`exact`: candle's norms and rotary, the exact GELU, attention in f32).
//! On GGUF, RMS norms and rotary round as llama.cpp's CPU backend does ([`Rounding::Ggml`], as
//! the other GGUF families' decoder): with candle's, the tiny fixture's F16 logits stood up to
//! 6e-2 from llama.cpp's ten greedy steps in, enough to turn one of its near-ties.
//!
//! The mixture-of-experts blocks of Gemma 4 26B-A4B (`ffn_gate_inp`) add routed experts beside
//! the dense feed-forward (`gemma4/moe.rs`). Keys and values are cached in f16 and attention
//! rounds as llama.cpp's CPU path does (`attention.rs`'s `attend_group`). The cache is handed out for prompt-prefix reuse, and
//! decode steps of several sequences run in one pass (`gemma4/batch.rs`).

use super::attention::{attend_group, attend_group_exact, split_exact, visible, WidenedKv};
use super::{
    f32_tensor, gelu_f16_mul, load_output, meta, meta_f32, meta_usize, residual, value_usize,
    with_values, QLinear, Rope, Rows, TokenTable,
};
use crate::kernels::norm_rope::{self, Rounding};

mod batch;
mod moe;
use crate::llm::model::LayerKv;
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use std::io::{Read, Seek};

const ARCH: &str = "gemma4";
/// The rotary tables cover at most this many positions (Gemma 4 trains 128k-256k; a table of
/// 512-value heads for all of them would take half a gigabyte).
const MAX_POSITIONS: usize = 1 << 15;

/// A block's key and value projections (absent on the KV-sharing layers).
#[derive(Clone)]
struct KeysValues {
    k: QLinear,
    /// `None`: the keys (before their norm) are the values.
    v: Option<QLinear>,
    k_norm: Tensor,
}

/// A block's share of the per-layer embeddings.
#[derive(Clone)]
struct PerLayerBlock {
    gate: QLinear,
    proj: QLinear,
    norm: Tensor,
}

/// One decoder block.
#[derive(Clone)]
struct Block {
    attn_norm: Tensor,
    q: QLinear,
    q_norm: Tensor,
    kv: Option<KeysValues>,
    /// The block whose cache this one attends over (itself unless it shares).
    kv_block: usize,
    o: QLinear,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
    post_ffn_norm: Tensor,
    /// Routed experts beside the dense feed-forward (26B-A4B).
    experts: Option<moe::BlockExperts>,
    per_layer: Option<PerLayerBlock>,
    out_scale: Option<f32>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
    /// Index into [`Gemma4Decoder::ropes`]: 0 global, 1 sliding.
    rope: usize,
}

/// The inputs of the per-layer embeddings.
#[derive(Clone)]
struct PerLayerInputs {
    table: TokenTable,
    projection: QLinear,
    norm: Tensor,
    /// Values per layer.
    width: usize,
}

/// A Gemma 4 decoder loaded from GGUF. Cloning shares the weights and copies the cache.
#[derive(Clone)]
pub struct Gemma4Decoder {
    embeddings: TokenTable,
    per_layer: Option<PerLayerInputs>,
    blocks: Vec<Block>,
    norm: Tensor,
    output: QLinear,
    eps: f32,
    hidden: usize,
    softcap: Option<f32>,
    ropes: Vec<Rope>,
    /// Per block, its keys and values (f16); `None` for the sharing blocks.
    cache: Vec<Option<LayerKv>>,
    /// Sliding-window blocks keep every position ([`crate::llm::CausalLm::keep_whole_windows`]).
    whole_windows: bool,
    /// f32 throughout, as transformers computes (safetensors weights): candle's roundings of
    /// the norms and the rotary, the exact GELU, attention over an f32-exact cache; otherwise
    /// llama.cpp's CPU backend's (GGUF).
    exact: bool,
}

/// `{ARCH}.{key}` per layer: an array of `layers` values, or one value for all.
fn per_layer_usize(ct: &Content, key: &str, layers: usize) -> Result<Vec<usize>> {
    let values = match meta(ct, ARCH, key)? {
        Value::Array(items) => items.iter().map(value_usize).collect::<Result<Vec<_>>>()?,
        v => vec![value_usize(v)?; layers],
    };
    if values.len() != layers {
        return Err(Error::bad_request(format!(
            "the GGUF's {ARCH}.{key} has {} values for {layers} layers",
            values.len()
        )));
    }
    Ok(values)
}

/// RMS norm of `x`'s rows (its last dimension, `w`'s length) times `w`, into a new tensor,
/// rounded as `rounding` says ([`Gemma4Decoder::rounding`]).
fn rms_norm(x: &Tensor, w: &Tensor, eps: f32, rounding: Rounding) -> candle_core::Result<Tensor> {
    let mut out = x.flatten_all()?.to_vec1::<f32>()?;
    with_values(w, |w| {
        if w.is_empty() || !out.len().is_multiple_of(w.len()) {
            candle_core::bail!(
                "rms_norm of {} values by a weight of {}",
                out.len(),
                w.len()
            );
        }
        norm_rope::rms_norm(&mut out, w, eps, rounding);
        Ok(())
    })??;
    Tensor::from_vec(out, x.dims(), &Device::Cpu)
}

/// Which layers slide (`attention.sliding_window_pattern`).
fn sliding_layers(ct: &Content, layers: usize) -> Result<Vec<bool>> {
    let pattern = match meta(ct, ARCH, "attention.sliding_window_pattern")? {
        Value::Array(items) => items
            .iter()
            .map(|v| Ok(v.to_bool()?))
            .collect::<Result<Vec<bool>>>()?,
        _ => {
            return Err(Error::bad_request(format!(
                "the GGUF's {ARCH}.attention.sliding_window_pattern is not an array"
            )))
        }
    };
    if pattern.len() != layers {
        return Err(Error::bad_request(format!(
            "the GGUF's sliding-window pattern has {} layers of {layers}",
            pattern.len()
        )));
    }
    Ok(pattern)
}

/// The block each block attends over: itself below the first sharing one, then the last
/// earlier non-sharing block of the same kind.
fn kv_blocks(sliding: &[bool], shared: usize) -> Result<Vec<usize>> {
    let first_shared = sliding.len().saturating_sub(shared);
    (0..sliding.len())
        .map(|i| {
            if i < first_shared {
                return Ok(i);
            }
            (0..first_shared)
                .rev()
                .find(|&j| sliding[j] == sliding[i])
                .ok_or_else(|| {
                    Error::bad_request(format!(
                        "Gemma 4 layer {i} shares keys and values, but no earlier layer of its kind has them"
                    ))
                })
        })
        .collect()
}

/// A block's attention shape.
struct BlockKind {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    sliding: bool,
}

/// Loads block `i`, which attends over block `kv_block`'s cache (its own when equal), with
/// per-layer embeddings of `width` values (0: none).
fn load_block<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    i: usize,
    kv_block: usize,
    width: usize,
    kind: BlockKind,
    window: Option<usize>,
) -> Result<Block> {
    let p = format!("blk.{i}");
    let has = |name: &str| ct.tensor_infos.contains_key(&format!("{p}.{name}.weight"));
    let tensor = |reader: &mut R, name: &str| f32_tensor(ct, reader, &format!("{p}.{name}.weight"));
    let linear =
        |reader: &mut R, name: &str| QLinear::load(ct, reader, &format!("{p}.{name}"), false);
    let kv = if kv_block == i {
        Some(KeysValues {
            k: linear(reader, "attn_k")?,
            v: if has("attn_v") {
                Some(linear(reader, "attn_v")?)
            } else {
                None
            },
            k_norm: tensor(reader, "attn_k_norm")?,
        })
    } else {
        None
    };
    let per_layer_block = if width > 0 {
        Some(PerLayerBlock {
            gate: linear(reader, "inp_gate")?,
            proj: linear(reader, "proj")?,
            norm: tensor(reader, "post_norm")?,
        })
    } else {
        None
    };
    let out_scale = if has("layer_output_scale") {
        Some(
            tensor(reader, "layer_output_scale")?
                .flatten_all()?
                .to_vec1::<f32>()?[0],
        )
    } else {
        None
    };
    Ok(Block {
        attn_norm: tensor(reader, "attn_norm")?,
        q: linear(reader, "attn_q")?,
        q_norm: tensor(reader, "attn_q_norm")?,
        kv,
        kv_block,
        o: linear(reader, "attn_output")?,
        post_attn_norm: tensor(reader, "post_attention_norm")?,
        ffn_norm: tensor(reader, "ffn_norm")?,
        gate: linear(reader, "ffn_gate")?,
        up: linear(reader, "ffn_up")?,
        down: linear(reader, "ffn_down")?,
        post_ffn_norm: tensor(reader, "post_ffw_norm")?,
        experts: moe::BlockExperts::load(ct, reader, &p)?,
        per_layer: per_layer_block,
        out_scale,
        heads: kind.heads,
        kv_heads: kind.kv_heads,
        head_dim: kind.head_dim,
        window: if kind.sliding { window } else { None },
        rope: usize::from(kind.sliding),
    })
}

impl Gemma4Decoder {
    /// Loads a Gemma 4 GGUF.
    pub fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<Self> {
        let n = meta_usize(ct, ARCH, "block_count")?;
        let hidden = meta_usize(ct, ARCH, "embedding_length")?;
        let heads = per_layer_usize(ct, "attention.head_count", n)?;
        let kv_heads = per_layer_usize(ct, "attention.head_count_kv", n)?;
        let global_dim = meta_usize(ct, ARCH, "attention.key_length")?;
        let sliding_dim = meta_usize(ct, ARCH, "attention.key_length_swa")?;
        let sliding = sliding_layers(ct, n)?;
        let window = meta_usize(ct, ARCH, "attention.sliding_window")
            .ok()
            .filter(|&w| w > 0);
        let shared = meta_usize(ct, ARCH, "attention.shared_kv_layers").unwrap_or(0);
        let kv_block = kv_blocks(&sliding, shared)?;
        let eps = meta(ct, ARCH, "attention.layer_norm_rms_epsilon")?.to_f32()?;
        let positions = meta_usize(ct, ARCH, "context_length")
            .unwrap_or(8192)
            .clamp(1, MAX_POSITIONS);
        for i in 0..n {
            if heads[i] == 0 || kv_heads[i] == 0 || heads[i] % kv_heads[i] != 0 {
                return Err(Error::bad_request(format!(
                    "Gemma 4 layer {i} has {} attention heads and {} key/value heads",
                    heads[i], kv_heads[i]
                )));
            }
        }
        let width = meta_usize(ct, ARCH, "embedding_length_per_layer_input").unwrap_or(0);
        let per_layer = if width > 0 {
            Some(PerLayerInputs {
                table: TokenTable::new(std::sync::Arc::new(ct.tensor(
                    reader,
                    "per_layer_token_embd.weight",
                    &Device::Cpu,
                )?))?,
                projection: QLinear::load(ct, reader, "per_layer_model_proj", false)?,
                norm: f32_tensor(ct, reader, "per_layer_proj_norm.weight")?,
                width,
            })
        } else {
            None
        };
        let blocks = (0..n)
            .map(|i| {
                let kind = BlockKind {
                    heads: heads[i],
                    kv_heads: kv_heads[i],
                    head_dim: if sliding[i] { sliding_dim } else { global_dim },
                    sliding: sliding[i],
                };
                load_block(ct, reader, i, kv_block[i], width, kind, window)
            })
            .collect::<Result<Vec<_>>>()?;
        let factors = if ct.tensor_infos.contains_key("rope_freqs.weight") {
            Some(f32_tensor(ct, reader, "rope_freqs.weight")?.to_vec1::<f32>()?)
        } else {
            None
        };
        let global_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(1_000_000.0);
        let sliding_base = meta_f32(ct, ARCH, "rope.freq_base_swa").unwrap_or(10_000.0);
        let mut ropes = vec![
            Rope::with_freq_factors(global_dim, global_base, 1.0, positions, factors.as_deref())?,
            Rope::new(sliding_dim, sliding_base, 1.0, positions)?,
        ];
        let exact = super::qlinear::exact_products(ct);
        if !exact {
            ropes.iter_mut().for_each(Rope::round_as_llama_cpp);
        }
        let embeddings = TokenTable::new(std::sync::Arc::new(ct.tensor(
            reader,
            "token_embd.weight",
            &Device::Cpu,
        )?))?;
        let norm = f32_tensor(ct, reader, "output_norm.weight")?;
        let output = load_output(ct, reader, &embeddings)?;
        Ok(Gemma4Decoder {
            embeddings,
            per_layer,
            blocks,
            norm,
            output,
            eps,
            hidden,
            softcap: meta_f32(ct, ARCH, "final_logit_softcapping").filter(|&c| c > 0.0),
            ropes,
            cache: Vec::new(),
            whole_windows: false,
            exact,
        })
    }

    /// Whose roundings the RMS norms and the rotary follow: candle's when [`Self::exact`],
    /// llama.cpp's CPU backend's otherwise.
    fn rounding(&self) -> Rounding {
        Rounding::exact_or_ggml(self.exact)
    }

    /// RMS norm of `x`'s rows times `w`, rounded as [`Self::rounding`] says.
    fn rms(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        rms_norm(x, w, self.eps, self.rounding())
    }

    /// `gelu(gate) * up` (tanh GELU): llama.cpp's f16 table on the GGUF path, candle's exact
    /// one when [`Self::exact`].
    fn gelu_mul(&self, gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
        if self.exact {
            gate.gelu()? * up
        } else {
            gelu_f16_mul(gate, up)
        }
    }

    /// The per-layer embedding inputs of `tokens` (embedded and scaled as `h`):
    /// `[1, s, layers * width]`, layer `l`'s values at `l * width`.
    fn per_layer_inputs(&self, tokens: &[u32], h: &Tensor) -> Result<Option<Tensor>> {
        let Some(ple) = &self.per_layer else {
            return Ok(None);
        };
        let (s, layers) = (tokens.len(), self.blocks.len());
        // The scales as llama.cpp computes them, in f32.
        let from_tokens = (ple.table.rows(tokens)? * (ple.width as f32).sqrt() as f64)?;
        let projected =
            (ple.projection.forward_rows(h)? * (1.0 / (self.hidden as f32).sqrt()) as f64)?;
        let projected = projected.reshape((s, layers, ple.width))?;
        let projected = self.rms(&projected, &ple.norm)?;
        let sum = residual(&projected, &from_tokens.reshape((s, layers, ple.width))?)?;
        Ok(Some((sum * (1.0 / 2f32.sqrt()) as f64)?.reshape((
            1,
            s,
            layers * ple.width,
        ))?))
    }

    /// One pass over the rows of several sequences (`tokens`: each sequence's rows in turn,
    /// `seqs` their positions and caches) on the calling thread: the last row's logits of
    /// each. Every product is row by row and each sequence attends over its own cache, so a
    /// sequence gets the same bits batched as alone.
    fn forward_rows_here(&self, tokens: &[u32], seqs: &mut [Rows<'_>]) -> Result<Vec<Vec<f32>>> {
        let positions = self.ropes[0].positions();
        for seq in seqs.iter_mut() {
            let (s, position) = (seq.len, seq.position);
            if s == 0 || position + s > positions {
                return Err(Error::bad_request(format!(
                    "{s} tokens at position {position} do not fit the model's {positions} positions"
                )));
            }
            if position == 0 || seq.cache.len() != self.blocks.len() {
                *seq.cache = vec![None; self.blocks.len()];
            }
        }
        let mut h =
            (self.embeddings.rows(tokens)?.unsqueeze(0)? * (self.hidden as f32).sqrt() as f64)?;
        let per_layer = self.per_layer_inputs(tokens, &h)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let x = self.rms(&h, &block.attn_norm)?;
            let attended = self.attend_rows(block, i, &x, seqs)?;
            let y = self.rms(&block.o.forward_rows(&attended)?, &block.post_attn_norm)?;
            h = residual(&y, &h)?;
            let x = self.rms(&h, &block.ffn_norm)?;
            let [gate, up]: [Tensor; 2] = QLinear::forward_together(&[&block.gate, &block.up], &x)?
                .try_into()
                .map_err(|_| Error::internal("two projections gave another count"))?;
            let mut y = block.down.forward_rows(&self.gelu_mul(&gate, &up)?)?;
            if let Some(experts) = &block.experts {
                y = experts.forward(&h, &y, self.eps, self.rounding())?;
            }
            let y = self.rms(&y, &block.post_ffn_norm)?;
            h = residual(&y, &h)?;
            if let (Some(inputs), Some(ple)) = (&per_layer, &block.per_layer) {
                let width = inputs.dim(2)? / self.blocks.len();
                let gated = self.gelu_mul(
                    &ple.gate.forward_rows(&h)?,
                    &inputs.narrow(2, i * width, width)?,
                )?;
                let y = self.rms(&ple.proj.forward_rows(&gated)?, &ple.norm)?;
                h = residual(&y, &h)?;
            }
            if let Some(scale) = block.out_scale {
                h = (h * scale as f64)?;
            }
        }
        // The sliding-window caches drop what no later query sees, once every block that reads
        // them has run (unless they keep it all for prompt-prefix reuse).
        for seq in seqs.iter_mut().filter(|_| !self.whole_windows) {
            for (block, kv) in self.blocks.iter().zip(seq.cache.iter_mut()) {
                if let (Some(w), Some(kv)) = (block.window, kv.as_mut()) {
                    kv.trim_to(w);
                }
            }
        }
        // The last row of each sequence, each as alone.
        let mut last_rows = Vec::with_capacity(seqs.len());
        let mut end = 0;
        for seq in seqs.iter() {
            end += seq.len;
            last_rows.push(h.narrow(1, end - 1, 1)?.squeeze(1)?);
        }
        let last = Tensor::cat(&last_rows, 0)?;
        let last = self.rms(&last, &self.norm)?;
        let mut logits = self.output.forward_rows(&last)?;
        if let Some(cap) = self.softcap {
            logits = ((logits / cap as f64)?.tanh()? * cap as f64)?;
        }
        Ok(logits.to_vec2()?)
    }

    /// Block `i`'s attention for every sequence of the pass, each over its own cache (each on
    /// its own compute thread when there are several: the same operations as alone).
    fn attend_rows(
        &self,
        block: &Block,
        i: usize,
        x: &Tensor,
        seqs: &mut [Rows<'_>],
    ) -> Result<Tensor> {
        if let [seq] = seqs {
            return self.attend(block, i, x, seq.position, seq.cache);
        }
        let mut work = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for seq in seqs.iter_mut() {
            let len = seq.len;
            work.push((offset, seq));
            offset += len;
        }
        use rayon::prelude::*;
        let done: Vec<Result<Tensor>> = work
            .par_iter_mut()
            .map(|(offset, seq)| {
                let rows = x.narrow(1, *offset, seq.len)?;
                self.attend(block, i, &rows, seq.position, seq.cache)
            })
            .collect();
        let attended = done.into_iter().collect::<Result<Vec<Tensor>>>()?;
        Ok(Tensor::cat(&attended, 1)?)
    }

    /// Attention of block `i` over `x` (`[1, s, hidden]`, normed) at `position`: its own keys
    /// and values join its cache, or it reads its source block's.
    fn attend(
        &self,
        block: &Block,
        i: usize,
        x: &Tensor,
        position: usize,
        cache: &mut [Option<LayerKv>],
    ) -> Result<Tensor> {
        let (heads, kv_heads, hd) = (block.heads, block.kv_heads, block.head_dim);
        let s = x.dim(1)?;
        let rope = &self.ropes[block.rope];
        // `[s][n][hd]` rows as the projection gave them: each head RMS-normed, then rotated
        // (NEOX pairs), in place.
        let heads_of = |t: &Tensor, n: usize, w: &[f32], turn: bool| -> Result<Vec<f32>> {
            let mut x = t.flatten_all()?.to_vec1::<f32>()?;
            if w.is_empty() || !x.len().is_multiple_of(w.len()) {
                return Err(Error::internal("a Gemma 4 head norm of another width"));
            }
            norm_rope::rms_norm(&mut x, w, self.eps, self.rounding());
            if turn {
                rope.rotate(&mut x, (n, hd), position, true)?;
            }
            Ok(x)
        };
        let values = |t: &Tensor| with_values(t, <[f32]>::to_vec);
        // An exact cache holds each value as two f16 halves (`attention::split_exact`).
        let width = kv_heads * hd * if self.exact { 2 } else { 1 };
        if let Some(kv) = &block.kv {
            let k = kv.k.forward_rows(x)?;
            let v = match &kv.v {
                Some(v) => v.forward_rows(x)?,
                None => k.clone(),
            };
            let k = heads_of(&k, kv_heads, &values(&kv.k_norm)?, true)?;
            // Values normed without a weight (`ggml_rms_norm` alone: times 1 is exact).
            let v = heads_of(&v, kv_heads, &vec![1.0; hd], false)?;
            let entry = &mut cache[i];
            if !matches!(entry, Some(held) if position > 0 && held.held() <= position && held.row() == width)
            {
                *entry = Some(LayerKv::new(width));
            }
            if let Some(held) = entry.as_mut() {
                if self.exact {
                    held.append(
                        &split_exact(&k, kv_heads * hd),
                        &split_exact(&v, kv_heads * hd),
                    );
                } else {
                    held.append(&k, &v);
                }
            }
        }
        let held = cache[block.kv_block]
            .as_ref()
            .ok_or_else(|| Error::internal("a Gemma 4 block reads a cache not yet written"))?;
        if held.row() != width {
            return Err(Error::bad_request(format!(
                "Gemma 4 layer {i} shares keys of another size ({} values a position, not {width})",
                held.row(),
            )));
        }
        let mut q = heads_of(
            &block.q.forward_rows(x)?,
            heads,
            &values(&block.q_norm)?,
            true,
        )?;
        if !self.exact {
            for v in q.iter_mut() {
                *v = half::f16::from_f32(*v).to_f32();
            }
        }
        // Keys held: positions first..position + s.
        let first = position + s - held.held();
        let group = heads / kv_heads;
        let mut out = vec![0f32; s * heads * hd];
        // The first query sees the earliest keys any query of the pass sees.
        let from = visible(position, first, block.window).start - first;
        let widened = self.exact.then(|| WidenedKv::of(held, from, kv_heads, hd));
        let item = |(index, out): (usize, &mut [f32])| {
            let (row, g) = (index / kv_heads, index % kv_heads);
            let keys = visible(position + row, first, block.window);
            let keys = keys.start - first..keys.end - first;
            let queries = &q[(row * heads + g * group) * hd..][..group * hd];
            match &widened {
                Some(kv) => attend_group_exact(kv, g, keys, queries, 1.0, None, out),
                None => attend_group(held, (g * hd, hd), keys, queries, 1.0, None, out),
            }
        };
        // Spread over the compute threads from the size `attention.rs` does.
        if s * heads * hd * held.held() >= 1 << 17 && crate::kernels::threads() > 1 {
            use rayon::prelude::*;
            out.par_chunks_mut(group * hd).enumerate().for_each(item);
        } else {
            out.chunks_mut(group * hd).enumerate().for_each(item);
        }
        Ok(Tensor::from_vec(out, (1, s, heads * hd), &Device::Cpu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::kv_blocks;

    /// Sharing blocks read the last earlier non-sharing block of their kind (Gemma 4 E2B: 35
    /// layers, the last 20 sharing, every fifth global).
    #[test]
    fn shared_blocks_read_the_last_block_of_their_kind() {
        assert_eq!(
            kv_blocks(&[true, false, true, false], 2).unwrap(),
            vec![0, 1, 0, 1]
        );
        let e2b: Vec<bool> = (0..35).map(|i| (i + 1) % 5 != 0).collect();
        let blocks = kv_blocks(&e2b, 20).unwrap();
        assert_eq!(&blocks[..15], &(0..15).collect::<Vec<_>>()[..]);
        // llama.cpp: n_layer_kv_from_start - (swa ? 2 : 1).
        for (i, &b) in blocks.iter().enumerate().skip(15) {
            assert_eq!(b, if e2b[i] { 13 } else { 14 });
        }
        assert!(kv_blocks(&[false, true], 1).is_err());
    }
}
