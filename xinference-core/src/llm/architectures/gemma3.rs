//! Gemma 3 (`gemma3`), as llama.cpp's graph runs it: token embeddings scaled by
//! `sqrt(hidden)`; RMS norms whose weights the GGUF already stores with Gemma's `1 +` folded
//! in (convert_hf_to_gguf adds it), so they are plain RMS norms here; q/k RMS norms per head
//! before NEOX rotary; post-attention and post-feed-forward norms before each residual sum;
//! a GELU(tanh)-gated feed-forward; queries scaled by `1/sqrt(key_length)`
//! (`1/sqrt(hidden/heads)` for the 62-layer 27B, whose `query_pre_attn_scalar` differs);
//! sliding-window attention (`gemma3.attention.sliding_window` positions) on five layers of
//! every six, each sixth global; rotary base 10 000 (or `gemma3.rope.freq_base_swa`) on the
//! local layers and `gemma3.rope.freq_base` with linear `gemma3.rope.scaling.factor` on the
//! global ones; an optional final logit soft-cap; output tied to the token table. The GELU
//! reads llama.cpp's f16 table (see `gelu.rs`): with an exact GELU, greedy answers
//! part from llama.cpp's at margins of 0.05.

use super::{
    f32_tensor, meta_f32, meta_usize, Activation, Family, GgufDecoder, Layer, Rope, Shape,
};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

const ARCH: &str = "gemma3";
/// Every `SLIDING_WINDOW_PATTERN`-th layer is global, the others slide (llama.cpp's
/// `set_swa_pattern(6)`; the GGUF does not store it).
const SLIDING_WINDOW_PATTERN: usize = 6;
/// Rotary base of the sliding-window layers (llama.cpp's `rope_freq_base_train_swa`), unless
/// the GGUF has `gemma3.rope.freq_base_swa`.
const LOCAL_ROPE_BASE: f32 = 10_000.0;

/// Whether the GGUF has Gemma 3's per-head q/k norms and post norms.
pub(super) fn supports(ct: &Content) -> bool {
    [
        "blk.0.attn_q_norm.weight",
        "blk.0.attn_k_norm.weight",
        "blk.0.post_attention_norm.weight",
        "blk.0.post_ffw_norm.weight",
        "blk.0.ffn_gate.weight",
    ]
    .iter()
    .all(|name| ct.tensor_infos.contains_key(*name))
}

/// Loads a Gemma 3 GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, ARCH)?;
    let window = meta_usize(ct, ARCH, "attention.sliding_window")
        .ok()
        .filter(|&w| w > 0);
    let global_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(1_000_000.0);
    let local_base = meta_f32(ct, ARCH, "rope.freq_base_swa").unwrap_or(LOCAL_ROPE_BASE);
    let global_scale = match meta_f32(ct, ARCH, "rope.scaling.factor") {
        Some(factor) if factor > 0.0 => 1.0 / factor,
        _ => 1.0,
    };
    let attn_scale = if shape.layers == 62 {
        1.0 / ((shape.hidden / shape.heads) as f64).sqrt()
    } else {
        1.0 / (shape.head_dim as f64).sqrt()
    };
    let mut layers = Vec::with_capacity(shape.layers);
    for i in 0..shape.layers {
        let p = format!("blk.{i}");
        let mut layer = Layer::load(ct, reader, i, false)?;
        layer.q_norm = Some(f32_tensor(ct, reader, &format!("{p}.attn_q_norm.weight"))?);
        layer.k_norm = Some(f32_tensor(ct, reader, &format!("{p}.attn_k_norm.weight"))?);
        layer.post_attn_norm = Some(f32_tensor(
            ct,
            reader,
            &format!("{p}.post_attention_norm.weight"),
        )?);
        layer.post_ffn_norm = Some(f32_tensor(
            ct,
            reader,
            &format!("{p}.post_ffw_norm.weight"),
        )?);
        // Without a window every layer is global (llama.cpp: no sliding-window attention).
        let sliding = window.is_some() && (i + 1) % SLIDING_WINDOW_PATTERN != 0;
        layer.window = if sliding { window } else { None };
        layer.rope = usize::from(sliding);
        layers.push(layer);
    }
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family {
            embed_scale: Some((shape.hidden as f64).sqrt()),
            attn_scale,
            scale_queries: true,
            activation: Activation::GeluTanh,
            neox: true,
            logit_softcap: meta_f32(ct, ARCH, "final_logit_softcapping").filter(|&c| c > 0.0),
        },
        vec![
            Rope::new(shape.head_dim, global_base, global_scale, shape.positions)?,
            Rope::new(shape.head_dim, local_base, 1.0, shape.positions)?,
        ],
    )
}
