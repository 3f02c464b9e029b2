//! GLM-4 (`glm4`: GLM-4-9B-0414, GLM-4-32B-0414, GLM-Z1), as llama.cpp's graph runs it:
//! pre-norm blocks with q/k/v biases, interleaved rotary over the first
//! `glm4.rope.dimension_count` values of each head (half of it: `partial_rotary_factor`), the
//! rest passing unchanged; RMS norms of the attention output and of the feed-forward output
//! (`post_attention_norm`, `post_ffw_norm`) before each residual sum; a fused `ffn_up` (gate
//! rows, then up rows) with SwiGLU; a separate output layer. The vision variants' multi-section
//! rotary (`glm4.rope.dimension_sections`) is not run.

use super::{f32_tensor, meta_f32, meta_usize, Family, GgufDecoder, Layer, Rope, Shape};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

const ARCH: &str = "glm4";

/// Whether the GGUF is a text GLM-4 (post norms, no multi-section rotary).
pub(super) fn supports(ct: &Content) -> bool {
    let has = |name: &str| ct.tensor_infos.contains_key(name);
    has("blk.0.attn_q.weight")
        && has("blk.0.post_attention_norm.weight")
        && has("blk.0.post_ffw_norm.weight")
        && has("blk.0.ffn_up.weight")
        && !ct
            .metadata
            .contains_key(&format!("{ARCH}.rope.dimension_sections"))
}

/// Loads a GLM-4 GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, ARCH)?;
    let rope_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(10_000.0);
    let rotated = meta_usize(ct, ARCH, "rope.dimension_count").unwrap_or(shape.head_dim / 2);
    let bias = ct.tensor_infos.contains_key("blk.0.attn_q.bias");
    let mut layers = Vec::with_capacity(shape.layers);
    for i in 0..shape.layers {
        let p = format!("blk.{i}");
        let mut layer = Layer::load(ct, reader, i, bias)?;
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
        layers.push(layer);
    }
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family::standard(shape.head_dim, false),
        vec![Rope::new(rotated, rope_base, 1.0, shape.positions)?],
    )
}
