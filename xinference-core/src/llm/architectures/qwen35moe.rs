//! Qwen3.5 MoE (`qwen35moe`: Qwen3.5-35B-A3B, -122B-A10B, -397B-A17B, Qwen3.6's MoE), as
//! llama.cpp's graph runs it: Qwen3.5's hybrid blocks (`qwen35.rs`: Gated DeltaNet and gated
//! full attention) with, in every block, a mixture of SwiGLU experts routed by a softmax over
//! all experts, the `expert_used_count` most probable kept and renormalised to sum to one, plus
//! a shared SwiGLU expert scaled per row by `sigmoid(x · ffn_gate_inp_shexp)`.

use super::moe::{ExpertActivation, Experts, Gating, MoeSettings};
use super::qwen35::{load_hybrid, shared_expert, supports_arch};
use super::{meta_f32, meta_usize, FeedForward, GgufDecoder};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

const ARCH: &str = "qwen35moe";

/// Whether the GGUF is a Qwen3.5 MoE (DeltaNet sizes, a router with 3-D expert tensors).
pub(super) fn supports(ct: &Content) -> bool {
    let has = |name: &str| ct.tensor_infos.contains_key(name);
    supports_arch(ct, ARCH)
        && has("blk.0.ffn_gate_inp.weight")
        && has("blk.0.ffn_gate_exps.weight")
        && meta_usize(ct, ARCH, "expert_used_count").is_ok_and(|n| n > 0)
}

/// Loads a Qwen3.5 MoE GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let settings = MoeSettings {
        used: meta_usize(ct, ARCH, "expert_used_count")?,
        gating: Gating::Softmax,
        normalize: true,
        scale: meta_f32(ct, ARCH, "expert_weights_scale").unwrap_or(0.0),
        activation: ExpertActivation::Silu,
        biases: false,
    };
    load_hybrid(
        ct,
        reader,
        ARCH,
        |reader, i| {
            let experts = Experts::load(ct, reader, &format!("blk.{i}"), settings, false)?;
            Ok(FeedForward::Experts(experts))
        },
        |reader, i| shared_expert(ct, reader, i),
    )
}
