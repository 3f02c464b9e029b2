//! GLM-4.5 / GLM-4.6 / GLM-4.5-Air (`glm4moe`), as llama.cpp's graph runs it: q/k/v with
//! biases, optional per-head q/k RMS norms (GLM-4.5 and 4.6; 4.5-Air has none), NEOX rotary over
//! the first `glm4moe.rope.dimension_count` values of each head (half of it), the rest passing
//! unchanged; the residual sum, then `post_attention_norm` before the feed-forward. The first
//! `leading_dense_block_count` blocks have a plain SwiGLU feed-forward; the others a mixture of
//! SwiGLU experts chosen by sigmoid plus a per-expert selection bias (`exp_probs_b`), weighted by
//! the unbiased sigmoid, renormalised (`expert_weights_norm`) and scaled
//! (`expert_weights_scale`: `routed_scaling_factor`), beside an always-on shared expert. The
//! GGUF's `block_count` also counts the NextN (multi-token prediction) blocks
//! (`nextn_predict_layers`, the last ones), which llama.cpp skips when it generates, as here.
//! The vision variant's multi-section rotary (`rope.dimension_sections`) is not run.

use super::fused;
use super::moe::{ExpertActivation, Experts, Gating, MoeSettings};
use super::qlinear::QLinear;
use super::{
    f32_tensor, meta, meta_f32, meta_usize, Family, FeedForward, GgufDecoder, Layer, Rope, Shape,
};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use std::io::{Read, Seek};

const ARCH: &str = "glm4moe";

/// Whether the GGUF is a text GLM-4.5 (experts with a selection bias, no multi-section rotary).
pub(super) fn supports(ct: &Content) -> bool {
    let blocks = meta_usize(ct, ARCH, "block_count").unwrap_or(0);
    let dense = meta_usize(ct, ARCH, "leading_dense_block_count").unwrap_or(0);
    let has = |name: String| ct.tensor_infos.contains_key(&name);
    dense < blocks
        && has(format!("blk.{dense}.ffn_gate_inp.weight"))
        && has(format!("blk.{dense}.ffn_gate_exps.weight"))
        && has(format!("blk.{dense}.post_attention_norm.weight"))
        && meta_usize(ct, ARCH, "expert_used_count").is_ok_and(|n| n > 0)
        && !ct
            .metadata
            .contains_key(&format!("{ARCH}.rope.dimension_sections"))
}

/// llama.cpp's `llama_expert_gating_func_type` (`expert_gating_func`; none given: sigmoid).
fn gating(ct: &Content) -> Result<Gating> {
    match meta_usize(ct, ARCH, "expert_gating_func").unwrap_or(0) {
        0 | 2 => Ok(Gating::Sigmoid),
        1 => Ok(Gating::Softmax),
        3 => Ok(Gating::SoftmaxWeight),
        other => Err(Error::bad_request(format!(
            "the GGUF's {ARCH}.expert_gating_func {other} is not one this build runs"
        ))),
    }
}

/// Block `i`: attention, then the dense feed-forward or the experts.
fn load_layer<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    i: usize,
    dense: bool,
    settings: MoeSettings,
) -> Result<Layer> {
    let p = format!("blk.{i}");
    let bias = ct.tensor_infos.contains_key(&format!("{p}.attn_q.bias"));
    let [q, k, v] = fused::attention(ct, reader, &p, bias)?;
    let optional = |reader: &mut R, name: String| -> Result<Option<candle_core::Tensor>> {
        if ct.tensor_infos.contains_key(&name) {
            Ok(Some(f32_tensor(ct, reader, &name)?))
        } else {
            Ok(None)
        }
    };
    let ffn = if dense {
        let [gate, up] = fused::feed_forward(ct, reader, &p)?;
        FeedForward::Gated {
            gate,
            up,
            down: QLinear::load(ct, reader, &format!("{p}.ffn_down"), false)?,
        }
    } else {
        let shared = ct
            .tensor_infos
            .contains_key(&format!("{p}.ffn_gate_shexp.weight"));
        FeedForward::Experts(Experts::load(ct, reader, &p, settings, shared)?)
    };
    Ok(Layer {
        attn_norm: f32_tensor(ct, reader, &format!("{p}.attn_norm.weight"))?,
        q,
        k,
        v,
        o: QLinear::load(ct, reader, &format!("{p}.attn_output"), false)?,
        q_norm: optional(reader, format!("{p}.attn_q_norm.weight"))?,
        k_norm: optional(reader, format!("{p}.attn_k_norm.weight"))?,
        post_attn_norm: None,
        // llama.cpp's `attn_post_norm`: the norm before the feed-forward.
        ffn_norm: f32_tensor(ct, reader, &format!("{p}.post_attention_norm.weight"))?,
        ffn,
        post_ffn_norm: None,
        window: None,
        sinks: None,
        rope: 0,
        mixer: None,
    })
}

/// Loads a GLM-4.5 GGUF (its NextN blocks left out).
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let mut shape = Shape::read(ct, ARCH)?;
    let nextn = meta_usize(ct, ARCH, "nextn_predict_layers").unwrap_or(0);
    if nextn >= shape.layers {
        return Err(Error::bad_request(format!(
            "the GGUF has {} blocks, {nextn} of them NextN blocks",
            shape.layers
        )));
    }
    shape.layers -= nextn;
    let dense = meta_usize(ct, ARCH, "leading_dense_block_count").unwrap_or(0);
    let rope_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(1_000_000.0);
    let rotated = meta_usize(ct, ARCH, "rope.dimension_count").unwrap_or(shape.head_dim / 2);
    let normalize = matches!(meta(ct, ARCH, "expert_weights_norm"), Ok(Value::Bool(true)));
    let settings = MoeSettings {
        used: meta_usize(ct, ARCH, "expert_used_count")?,
        gating: gating(ct)?,
        normalize,
        scale: meta_f32(ct, ARCH, "expert_weights_scale").unwrap_or(0.0),
        activation: ExpertActivation::Silu,
        biases: false,
    };
    let layers = (0..shape.layers)
        .map(|i| load_layer(ct, reader, i, i < dense, settings))
        .collect::<Result<Vec<_>>>()?;
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family::standard(shape.head_dim, true),
        vec![Rope::new(rotated, rope_base, 1.0, shape.positions)?],
    )
}
