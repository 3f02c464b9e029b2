//! Qwen3.5 (`qwen35`: the text path of Qwen3.5 / Qwen3.6), as llama.cpp's graph runs it: a
//! hybrid of Gated DeltaNet linear-attention blocks (`delta_net.rs`) and gated full-attention
//! blocks, which ones from `attention.recurrent_layers` (else every `full_attention_interval`-th
//! block is full attention). Every block: RMS norm, its mixer, the residual sum, then
//! `post_attention_norm`, the feed-forward (SwiGLU here; experts in `qwen35moe.rs`) and the
//! residual sum.
//!
//! Full attention: one projection gives each head's query and then its output gate
//! (`[q_h, gate_h]` per head), RMS norms of the query and key heads, NEOX rotary over the first
//! `rope.dimension_count` values of each head (the multi-section M-RoPE of the vision model,
//! whose sections text positions fill alike), attention over the KV cache, times
//! `sigmoid(gate)`, then the output projection. The output is tied to the token table unless
//! `output.weight` exists; the NextN (multi-token prediction) blocks a GGUF may carry are not
//! run.
//!
//! Recurrent state: each sequence's DeltaNet blocks keep theirs in the sequence's cache, beside
//! the attention blocks' keys and values, as a [`crate::llm::LayerKv::recurrent`] entry (f32, the state
//! after exactly its positions). It is handed out, batched and stored with the rest of the
//! cache; the prefix cache can resume from it only at exactly those positions
//! ([`crate::llm::KvState::usable_prefix`]), never from a shorter prefix it cannot restore.

use super::delta_net::{DeltaNet, Projected};
use super::qlinear::QLinear;
use super::{
    f32_tensor, meta, meta_f32, meta_usize, residual, silu_mul, zip_map, Family, FeedForward,
    GgufDecoder, Layer, Rope, Rows, Shape,
};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use std::io::{Read, Seek};
use std::sync::Arc;

const ARCH: &str = "qwen35";

/// How a hybrid block mixes the positions, and what it adds to the feed-forward.
#[derive(Clone)]
pub(super) struct Mixer {
    kind: Kind,
    /// Qwen3.5 MoE's shared expert, gated per row by `sigmoid(x · gate_inp)`.
    shared: Option<Arc<SharedExpert>>,
}

/// The two kinds of blocks.
#[derive(Clone)]
enum Kind {
    /// Gated full attention: the layer's `q` gives queries and output gates.
    Attention,
    /// Gated DeltaNet: the layer's `q` is the mixed q/k/v projection, `k` the output gate
    /// `z`, `v` the `b` (beta) projection, `o` the output projection; `alpha` here.
    DeltaNet { net: Arc<DeltaNet>, alpha: QLinear },
}

/// An always-on expert whose output is scaled by a per-row sigmoid gate.
pub(super) struct SharedExpert {
    gate: QLinear,
    up: QLinear,
    down: QLinear,
    /// `hidden` weights of the gate's single output.
    gate_inp: Vec<f32>,
}

/// Whether the GGUF is a Qwen3.5 of `arch` (`qwen35`, `qwen35moe`): DeltaNet sizes in its
/// metadata.
pub(super) fn supports_arch(ct: &Content, arch: &str) -> bool {
    [
        "ssm.conv_kernel",
        "ssm.state_size",
        "ssm.group_count",
        "ssm.time_step_rank",
    ]
    .iter()
    .all(|k| meta_usize(ct, arch, k).is_ok_and(|n| n > 0))
}

/// Whether the GGUF is a dense Qwen3.5.
pub(super) fn supports(ct: &Content) -> bool {
    supports_arch(ct, ARCH) && ct.tensor_infos.contains_key("blk.0.ffn_gate.weight")
}

/// Which blocks are recurrent (DeltaNet).
fn recurrent_layers(ct: &Content, arch: &str, layers: usize) -> Vec<bool> {
    if let Ok(Value::Array(flags)) = meta(ct, arch, "attention.recurrent_layers") {
        let flags: Vec<bool> = flags
            .iter()
            .map(|v| matches!(v, Value::Bool(true)))
            .collect();
        if flags.len() >= layers {
            return flags[..layers].to_vec();
        }
    }
    let interval = meta_usize(ct, arch, "full_attention_interval")
        .unwrap_or(4)
        .max(1);
    (0..layers).map(|i| (i + 1) % interval != 0).collect()
}

/// A GGUF tensor's values as f32.
fn values<R: Read + Seek>(ct: &Content, reader: &mut R, name: &str) -> Result<Vec<f32>> {
    Ok(f32_tensor(ct, reader, name)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Block `p`'s DeltaNet weights, as a layer whose `q`/`k`/`v`/`o` are its projections.
fn delta_net_layer<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    arch: &str,
    p: &str,
    eps: f32,
    ffn: FeedForward,
) -> Result<(Layer, Kind)> {
    let linear =
        |reader: &mut R, name: &str| QLinear::load(ct, reader, &format!("{p}.{name}"), false);
    let net = DeltaNet {
        key_heads: meta_usize(ct, arch, "ssm.group_count")?,
        value_heads: meta_usize(ct, arch, "ssm.time_step_rank")?,
        head_dim: meta_usize(ct, arch, "ssm.state_size")?,
        taps: meta_usize(ct, arch, "ssm.conv_kernel")?,
        conv: values(ct, reader, &format!("{p}.ssm_conv1d.weight"))?,
        dt_bias: values(ct, reader, &format!("{p}.ssm_dt.bias"))?,
        a: values(ct, reader, &format!("{p}.ssm_a"))?,
        norm: values(ct, reader, &format!("{p}.ssm_norm.weight"))?,
        eps,
    };
    let inner = meta_usize(ct, arch, "ssm.inner_size")?;
    if net.key_heads == 0
        || !net.value_heads.is_multiple_of(net.key_heads)
        || net.taps < 2
        || inner != net.value_heads * net.head_dim
        || net.conv.len() != net.channels() * net.taps
        || net.dt_bias.len() != net.value_heads
        || net.a.len() != net.value_heads
        || net.norm.len() != net.head_dim
    {
        return Err(Error::bad_request(format!(
            "the GGUF's {p} Gated DeltaNet sizes do not agree"
        )));
    }
    let layer = Layer {
        attn_norm: f32_tensor(ct, reader, &format!("{p}.attn_norm.weight"))?,
        q: linear(reader, "attn_qkv")?,
        k: linear(reader, "attn_gate")?,
        v: linear(reader, "ssm_beta")?,
        o: linear(reader, "ssm_out")?,
        q_norm: None,
        k_norm: None,
        post_attn_norm: None,
        ffn_norm: f32_tensor(ct, reader, &format!("{p}.post_attention_norm.weight"))?,
        ffn,
        post_ffn_norm: None,
        window: None,
        sinks: None,
        rope: 0,
        mixer: None,
    };
    let alpha = linear(reader, "ssm_alpha")?;
    Ok((
        layer,
        Kind::DeltaNet {
            net: Arc::new(net),
            alpha,
        },
    ))
}

/// Block `p`'s gated full attention.
fn attention_layer<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    p: &str,
    ffn: FeedForward,
) -> Result<Layer> {
    let linear =
        |reader: &mut R, name: &str| QLinear::load(ct, reader, &format!("{p}.{name}"), false);
    Ok(Layer {
        attn_norm: f32_tensor(ct, reader, &format!("{p}.attn_norm.weight"))?,
        q: linear(reader, "attn_q")?,
        k: linear(reader, "attn_k")?,
        v: linear(reader, "attn_v")?,
        o: linear(reader, "attn_output")?,
        q_norm: Some(f32_tensor(ct, reader, &format!("{p}.attn_q_norm.weight"))?),
        k_norm: Some(f32_tensor(ct, reader, &format!("{p}.attn_k_norm.weight"))?),
        post_attn_norm: None,
        ffn_norm: f32_tensor(ct, reader, &format!("{p}.post_attention_norm.weight"))?,
        ffn,
        post_ffn_norm: None,
        window: None,
        sinks: None,
        rope: 0,
        mixer: None,
    })
}

/// Block `i`'s shared expert (`ffn_{gate,up,down}_shexp`, `ffn_gate_inp_shexp`), if it has
/// one.
pub(super) fn shared_expert<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    i: usize,
) -> Result<Option<Arc<SharedExpert>>> {
    let p = format!("blk.{i}");
    if !ct
        .tensor_infos
        .contains_key(&format!("{p}.ffn_gate_shexp.weight"))
    {
        return Ok(None);
    }
    let linear =
        |reader: &mut R, name: &str| QLinear::load(ct, reader, &format!("{p}.{name}"), false);
    Ok(Some(Arc::new(SharedExpert {
        gate: linear(reader, "ffn_gate_shexp")?,
        up: linear(reader, "ffn_up_shexp")?,
        down: linear(reader, "ffn_down_shexp")?,
        gate_inp: values(ct, reader, &format!("{p}.ffn_gate_inp_shexp.weight"))?,
    })))
}

/// Loads a Qwen3.5 GGUF of `arch` whose block `i` has the feed-forward `ffn(i)` and the
/// shared expert `shared(i)` (none for the dense model).
pub(super) fn load_hybrid<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    arch: &str,
    mut ffn: impl FnMut(&mut R, usize) -> Result<FeedForward>,
    mut shared: impl FnMut(&mut R, usize) -> Result<Option<Arc<SharedExpert>>>,
) -> Result<GgufDecoder> {
    let mut shape = Shape::read(ct, arch)?;
    // NextN blocks come after the trunk and are not run.
    let nextn = meta_usize(ct, arch, "nextn_predict_layers").unwrap_or(0);
    shape.layers = shape.layers.saturating_sub(nextn);
    let recurrent = recurrent_layers(ct, arch, shape.layers);
    let rope_base = meta_f32(ct, arch, "rope.freq_base").unwrap_or(10_000_000.0);
    let rotated = meta_usize(ct, arch, "rope.dimension_count").unwrap_or(shape.head_dim / 4);
    let mut layers = Vec::with_capacity(shape.layers);
    for (i, &is_recurrent) in recurrent.iter().enumerate() {
        let p = format!("blk.{i}");
        let block_ffn = ffn(reader, i)?;
        let (mut layer, kind) = if is_recurrent {
            delta_net_layer(ct, reader, arch, &p, shape.eps, block_ffn)?
        } else {
            (attention_layer(ct, reader, &p, block_ffn)?, Kind::Attention)
        };
        layer.mixer = Some(Mixer {
            kind,
            shared: shared(reader, i)?,
        });
        layers.push(layer);
    }
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family::standard(shape.head_dim, true),
        vec![Rope::new(rotated, rope_base, 1.0, shape.positions)?],
    )
}

/// Loads a dense Qwen3.5 GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    load_hybrid(
        ct,
        reader,
        ARCH,
        |reader, i| {
            let p = format!("blk.{i}");
            let linear = |reader: &mut R, name: &str| {
                QLinear::load(ct, reader, &format!("{p}.{name}"), false)
            };
            Ok(FeedForward::Gated {
                gate: linear(reader, "ffn_gate")?,
                up: linear(reader, "ffn_up")?,
                down: linear(reader, "ffn_down")?,
            })
        },
        |_, _| Ok(None),
    )
}

/// The `n` projections of `layers` over `x`, each as its values.
fn project(layers: &[&QLinear], x: &Tensor) -> Result<Vec<Vec<f32>>> {
    QLinear::forward_together(layers, x)?
        .iter()
        .map(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?))
        .collect()
}

impl Mixer {
    /// Block `i` (`layer`) over the rows `h` of `seqs` (`x`: `h` after the block's input
    /// norm): the mixer, the residual sum, the feed-forward and its residual sum. Returns the
    /// new `h`.
    pub(super) fn block(
        &self,
        decoder: &GgufDecoder,
        layer: &Layer,
        i: usize,
        x: &Tensor,
        h: &Tensor,
        seqs: &mut [Rows<'_>],
    ) -> Result<Tensor> {
        let mixed = match &self.kind {
            Kind::Attention => self.attention(decoder, layer, i, x, seqs)?,
            Kind::DeltaNet { net, alpha } => Self::delta_net(net, alpha, layer, i, x, seqs)?,
        };
        let h = residual(&mixed, h)?;
        let x = decoder.rms(&h, &layer.ffn_norm)?;
        let mut y = match &layer.ffn {
            FeedForward::Gated { gate, up, down } => {
                let [gate, up]: [Tensor; 2] = QLinear::forward_together(&[gate, up], &x)?
                    .try_into()
                    .map_err(|_| Error::internal("two projections gave another count"))?;
                down.forward_rows(&silu_mul(&gate, &up)?)?
            }
            FeedForward::Experts(experts) => experts.forward(&x)?,
        };
        if let Some(shared) = &self.shared {
            y = residual(&shared.forward(&x)?, &y)?;
        }
        Ok(residual(&y, &h)?)
    }

    /// Gated full attention of each sequence's rows over its KV cache, then the output
    /// projection.
    fn attention(
        &self,
        decoder: &GgufDecoder,
        layer: &Layer,
        i: usize,
        x: &Tensor,
        seqs: &mut [Rows<'_>],
    ) -> Result<Tensor> {
        let [qg, k, v]: [Tensor; 3] =
            QLinear::forward_together(&[&layer.q, &layer.k, &layer.v], x)?
                .try_into()
                .map_err(|_| Error::internal("three projections gave another count"))?;
        let rows = x.dim(1)?;
        let (heads, hd) = (decoder.heads, decoder.head_dim);
        // Per head its query, then its gate.
        let qg = qg.reshape((1, rows, heads, 2, hd))?;
        let q = qg
            .narrow(3, 0, 1)?
            .reshape((1, rows, heads * hd))?
            .contiguous()?;
        let gate = qg
            .narrow(3, 1, 1)?
            .reshape((1, rows, heads * hd))?
            .contiguous()?;
        let mut attended = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for seq in seqs.iter_mut() {
            let part = |t: &Tensor| t.narrow(1, offset, seq.len);
            attended.push(decoder.attend(
                layer,
                &part(&q)?,
                &part(&k)?,
                &part(&v)?,
                seq.position,
                &mut seq.cache[i],
            )?);
            offset += seq.len;
        }
        let attended = Tensor::cat(&attended, 1)?;
        let gated = zip_map(&attended, &gate, |a, g| a * (1.0 / (1.0 + (-g).exp())))?;
        Ok(layer.o.forward_rows(&gated)?)
    }

    /// Gated DeltaNet of each sequence's rows over its recurrent state, then the output
    /// projection.
    fn delta_net(
        net: &DeltaNet,
        alpha: &QLinear,
        layer: &Layer,
        i: usize,
        x: &Tensor,
        seqs: &mut [Rows<'_>],
    ) -> Result<Tensor> {
        let rows = x.dim(1)?;
        let projected = project(&[&layer.q, &layer.k, &layer.v, alpha], x)?;
        let [mixed, z, b, a] = &projected[..] else {
            return Err(Error::internal("four projections gave another count"));
        };
        let (channels, heads, hd) = (net.channels(), net.value_heads, net.head_dim);
        if mixed.len() != rows * channels
            || z.len() != rows * heads * hd
            || b.len() != rows * heads
            || a.len() != rows * heads
        {
            return Err(Error::bad_request(
                "the GGUF's Gated DeltaNet projections do not match its sizes",
            ));
        }
        let mut out = vec![0f32; rows * heads * hd];
        let mut offset = 0;
        for seq in seqs.iter_mut() {
            let (from, to) = (offset, offset + seq.len);
            net.run(
                &Projected {
                    mixed: &mixed[from * channels..to * channels],
                    z: &z[from * heads * hd..to * heads * hd],
                    b: &b[from * heads..to * heads],
                    alpha: &a[from * heads..to * heads],
                },
                seq.len,
                seq.position,
                &mut seq.cache[i],
                &mut out[from * heads * hd..to * heads * hd],
            )?;
            offset = to;
        }
        let out = Tensor::from_vec(out, (1, rows, heads * hd), &Device::Cpu)?;
        Ok(layer.o.forward_rows(&out)?)
    }
}

impl SharedExpert {
    /// `down(silu(gate x) * up x) * sigmoid(x · gate_inp)` of `x` (`[1, rows, hidden]`).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [gate, up]: [Tensor; 2] = QLinear::forward_together(&[&self.gate, &self.up], x)?
            .try_into()
            .map_err(|_| Error::internal("two projections gave another count"))?;
        let y = self.down.forward_rows(&silu_mul(&gate, &up)?)?;
        let (_, rows, hidden) = x.dims3()?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let gates: Vec<f32> = xs
            .chunks(hidden)
            .map(|row| {
                let s: f32 = row.iter().zip(&self.gate_inp).map(|(a, b)| a * b).sum();
                1.0 / (1.0 + (-s).exp())
            })
            .collect();
        let gates = Tensor::from_vec(gates, (1, rows, 1), &Device::Cpu)?;
        Ok(y.broadcast_mul(&gates)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::model::{CausalLm, KvState};
    use crate::llm::prefix_cache::PrefixCache;

    /// The tiny Qwen3.5 fixture of `arch` (Q8_0).
    fn tiny(arch: &str) -> GgufDecoder {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../tests/fixtures/tiny-gguf/{arch}/tiny-Q8_0.gguf"));
        let mut file = std::fs::File::open(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/fixtures/make_tiny_ggufs.py {arch})",
                path.display()
            )
        });
        let ct = Content::read(&mut file).unwrap();
        assert!(GgufDecoder::supports(&ct, arch), "{arch}");
        GgufDecoder::load(&ct, &mut file, arch).unwrap()
    }

    fn prompt() -> Vec<u32> {
        (0..30u32).map(|t| (t * 37 + 5) % 512).collect()
    }

    /// A prompt fed in chunks gives the bits of the whole prompt, and so does the next step:
    /// each token is one step of the recurrence either way.
    #[test]
    fn prompt_chunks_equal_the_whole_prompt() {
        for arch in ["qwen35", "qwen35moe"] {
            let decoder = tiny(arch);
            let prompt = prompt();
            let mut whole = decoder.clone();
            let expected = whole.forward(&prompt, 0).unwrap();
            let next = whole.forward(&[9], prompt.len()).unwrap();
            for cuts in [vec![1], vec![7, 8, 20]] {
                let mut d = decoder.clone();
                d.clear_cache();
                let (mut start, mut logits) = (0, Vec::new());
                for end in cuts.iter().copied().chain([prompt.len()]) {
                    logits = d.forward(&prompt[start..end], start).unwrap();
                    start = end;
                }
                assert_eq!(logits, expected, "{arch}: prompt cut at {cuts:?}");
                let step = d.forward(&[9], prompt.len()).unwrap();
                assert_eq!(step, next, "{arch}: step after a cut at {cuts:?}");
            }
        }
    }

    /// A stored state continues a sequence exactly where it was computed, and only there: a
    /// shorter prefix of it is refused (a recurrent state cannot be cut back), and so the
    /// prefix cache reuses it for a prompt that extends it, never for one that shares only
    /// part of it.
    #[test]
    fn recurrent_state_resumes_only_where_it_was_computed() {
        let decoder = tiny("qwen35");
        let prompt = prompt();
        let mut first = decoder.clone();
        first.forward(&prompt[..20], 0).unwrap();
        let state: KvState = first.kv_state(20).unwrap();
        assert!(state
            .layers
            .iter()
            .flatten()
            .any(|l| l.is_recurrent() && l.recurrent_state().is_some()));
        assert_eq!(state.usable_prefix(20), 20);
        assert_eq!(state.usable_prefix(12), 0);

        let mut whole = decoder.clone();
        let expected = whole.forward(&prompt, 0).unwrap();
        let mut resumed = decoder.clone();
        assert!(resumed.load_kv(&state, 20).unwrap());
        assert_eq!(resumed.forward(&prompt[20..], 20).unwrap(), expected);
        // The stored state itself is unchanged by the resumed sequence's steps.
        let mut again = decoder.clone();
        assert!(again.load_kv(&state, 20).unwrap());
        assert_eq!(again.forward(&prompt[20..], 20).unwrap(), expected);
        let mut cut = decoder.clone();
        assert!(!cut.load_kv(&state, 12).unwrap());

        let cache = PrefixCache::new(64 << 20);
        cache.insert(&prompt[..20], state);
        let hit = cache.lookup(&prompt).expect("the stored prompt extends");
        assert_eq!(hit.len, 20);
        let mut other = prompt[..12].to_vec();
        other.extend([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert!(cache.lookup(&other).is_none(), "only 12 tokens shared");
    }
}
