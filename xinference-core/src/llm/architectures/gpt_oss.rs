//! gpt-oss (`gpt-oss`: gpt-oss-20b, gpt-oss-120b), as llama.cpp's `openai-moe` graph runs it:
//! q/k/v and output projections with biases; NEOX rotary with YaRN scaling (the frequencies
//! between the extrapolated and the `1 / factor`-interpolated ones by llama.cpp's ramp, cos and
//! sin scaled by `1 + 0.1 ln(factor)`); a per-head attention sink in every softmax; sliding-window
//! attention (`attention.sliding_window` positions) on the even layers, full attention on the
//! odd ones; then `post_attention_norm` and a mixture of experts with biases, routed by a softmax
//! over the `expert_used_count` highest router scores, gated by the clamped SwiGLU
//! (`alpha` 1.702, `limit` 7); output not tied. Experts stored as MXFP4 (the released weights)
//! are read by `mxfp4.rs`.

use super::moe::{ExpertActivation, Experts, Gating, MoeSettings};
use super::qlinear::QLinear;
use super::{
    f32_tensor, meta, meta_f32, meta_usize, Family, FeedForward, GgufDecoder, Layer, Rope, Shape,
};
use crate::Result;
use candle_core::quantized::gguf_file::Content;

use std::io::{Read, Seek};

const ARCH: &str = "gpt-oss";
/// Every `SLIDING_WINDOW_PATTERN`-th layer (counting from 1) is global, the others slide
/// (llama.cpp's `load_swa_pattern(ml, 2)`, unless the GGUF has a pattern).
const SLIDING_WINDOW_PATTERN: usize = 2;

/// Whether the GGUF has gpt-oss's attention sinks and a router with 3-D expert tensors.
pub(super) fn supports(ct: &Content) -> bool {
    // The experts may be MXFP4, which only `loading/gguf_header.rs` notes.
    let has = |name: &str| crate::llm::loading::has_tensor(ct, name);
    has("blk.0.attn_sinks.weight")
        && has("blk.0.ffn_gate_inp.weight")
        && has("blk.0.ffn_gate_exps.weight")
        && has("blk.0.post_attention_norm.weight")
        && meta_usize(ct, ARCH, "expert_used_count").is_ok_and(|n| n > 0)
}

/// YaRN's rotary tables as llama.cpp computes them (`rope_yarn`, `ggml_rope_yarn_corr_dims`,
/// with `ext_factor` 1 and the attention factor that cancels to `1 + 0.1 ln(factor)`).
fn yarn_rope(ct: &Content, head_dim: usize, positions: usize) -> Result<Rope> {
    let base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(150_000.0);
    let yarn = meta(ct, ARCH, "rope.scaling.type")
        .ok()
        .and_then(|v| v.to_string().ok())
        .is_some_and(|t| t == "yarn");
    let factor = meta_f32(ct, ARCH, "rope.scaling.factor").unwrap_or(1.0);
    if !yarn || factor <= 1.0 {
        return Rope::new(head_dim, base, 1.0, positions);
    }
    let original = meta_usize(ct, ARCH, "rope.scaling.original_context_length").unwrap_or(4096);
    let beta_fast = meta_f32(ct, ARCH, "rope.scaling.yarn_beta_fast").unwrap_or(32.0);
    let beta_slow = meta_f32(ct, ARCH, "rope.scaling.yarn_beta_slow").unwrap_or(1.0);
    let dims = head_dim as f32;
    let corr_dim = |rotations: f32| {
        dims * (original as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln() / (2.0 * base.ln())
    };
    // llama.cpp rounds the correction range outwards; transformers only when `truncate` (the
    // released gpt-oss config says false; safetensors views pass it on).
    let truncate = !matches!(
        meta(ct, ARCH, "rope.scaling.yarn_truncate"),
        Ok(candle_core::quantized::gguf_file::Value::Bool(false))
    );
    let (low, high) = (corr_dim(beta_fast), corr_dim(beta_slow));
    let (low, high) = if truncate {
        (low.floor(), high.ceil())
    } else {
        (low, high)
    };
    let (low, high) = (low.max(0.0), high.min(dims - 1.0));
    let freq_scale = 1.0 / factor;
    let mscale = 1.0 + 0.1 * factor.ln();
    let inv_freq: Vec<f32> = (0..head_dim / 2)
        .map(|i| {
            let extrapolated = base.powf(-2.0 * i as f32 / dims);
            let y = (i as f32 - low) / (high - low).max(0.001);
            let ramp = 1.0 - y.clamp(0.0, 1.0);
            freq_scale * extrapolated * (1.0 - ramp) + extrapolated * ramp
        })
        .collect();
    Ok(Rope::with_inv_freq(inv_freq, positions, Some(mscale)))
}

/// Block `i` of a gpt-oss GGUF.
fn load_layer<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    i: usize,
    settings: MoeSettings,
    window: Option<usize>,
) -> Result<Layer> {
    let p = format!("blk.{i}");
    let linear =
        |reader: &mut R, name: &str| QLinear::load(ct, reader, &format!("{p}.{name}"), true);
    let sliding = window.is_some() && !(i + 1).is_multiple_of(SLIDING_WINDOW_PATTERN);
    Ok(Layer {
        attn_norm: f32_tensor(ct, reader, &format!("{p}.attn_norm.weight"))?,
        q: linear(reader, "attn_q")?,
        k: linear(reader, "attn_k")?,
        v: linear(reader, "attn_v")?,
        o: linear(reader, "attn_output")?,
        q_norm: None,
        k_norm: None,
        post_attn_norm: None,
        // llama.cpp's `attn_post_norm`: the norm before the experts.
        ffn_norm: f32_tensor(ct, reader, &format!("{p}.post_attention_norm.weight"))?,
        ffn: FeedForward::Experts(Experts::load(ct, reader, &p, settings, false)?),
        post_ffn_norm: None,
        window: if sliding { window } else { None },
        sinks: Some(f32_tensor(ct, reader, &format!("{p}.attn_sinks.weight"))?),
        rope: 0,
        mixer: None,
    })
}

/// Loads a gpt-oss GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, ARCH)?;
    let window = meta_usize(ct, ARCH, "attention.sliding_window")
        .ok()
        .filter(|&w| w > 0);
    let settings = MoeSettings {
        used: meta_usize(ct, ARCH, "expert_used_count")?,
        gating: Gating::SoftmaxWeight,
        normalize: false,
        scale: meta_f32(ct, ARCH, "expert_weights_scale").unwrap_or(0.0),
        activation: ExpertActivation::SwigluOai {
            alpha: 1.702,
            limit: 7.0,
        },
        biases: true,
    };
    let layers = (0..shape.layers)
        .map(|i| load_layer(ct, reader, i, settings, window))
        .collect::<Result<Vec<_>>>()?;
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family::standard(shape.head_dim, true),
        vec![yarn_rope(ct, shape.head_dim, shape.positions)?],
    )
}
