//! Qwen3 MoE (`qwen3moe`: Qwen3-30B-A3B, Qwen3-235B-A22B, Qwen3-Instruct/Thinking-2507,
//! Qwen3-Coder), as llama.cpp's graph runs it: Qwen3's attention (per-head q/k RMS norms before
//! NEOX rotary, no biases) and, in every block, a mixture of SwiGLU experts routed by a softmax
//! over all experts, the `expert_used_count` most probable kept and their weights renormalised
//! to sum to one (llama.cpp always renormalises for this family).

use super::moe::{ExpertActivation, Experts, Gating, MoeSettings};
use super::{
    f32_tensor, meta_f32, meta_usize, Family, FeedForward, GgufDecoder, Layer, Rope, Shape,
};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

const ARCH: &str = "qwen3moe";

/// Whether the GGUF has Qwen3's q/k norms and a router with 3-D expert tensors.
pub(super) fn supports(ct: &Content) -> bool {
    let has = |name: &str| ct.tensor_infos.contains_key(name);
    has("blk.0.attn_q_norm.weight")
        && has("blk.0.attn_k_norm.weight")
        && has("blk.0.ffn_gate_inp.weight")
        && has("blk.0.ffn_gate_exps.weight")
        && meta_usize(ct, ARCH, "expert_used_count").is_ok_and(|n| n > 0)
}

/// Loads a Qwen3 MoE GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, ARCH)?;
    let rope_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(1_000_000.0);
    let settings = MoeSettings {
        used: meta_usize(ct, ARCH, "expert_used_count")?,
        gating: Gating::Softmax,
        normalize: true,
        scale: meta_f32(ct, ARCH, "expert_weights_scale").unwrap_or(0.0),
        activation: ExpertActivation::Silu,
        biases: false,
    };
    let mut layers = Vec::with_capacity(shape.layers);
    for i in 0..shape.layers {
        let p = format!("blk.{i}");
        let experts = Experts::load(ct, reader, &p, settings, false)?;
        let mut layer = Layer::load_with(ct, reader, i, false, FeedForward::Experts(experts))?;
        layer.q_norm = Some(f32_tensor(ct, reader, &format!("{p}.attn_q_norm.weight"))?);
        layer.k_norm = Some(f32_tensor(ct, reader, &format!("{p}.attn_k_norm.weight"))?);
        layers.push(layer);
    }
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family::standard(shape.head_dim, true),
        vec![Rope::new(shape.head_dim, rope_base, 1.0, shape.positions)?],
    )
}
