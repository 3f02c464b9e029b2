//! Phi-3 (`phi3`), as llama.cpp's graph runs it: pre-norm blocks with a fused `attn_qkv` and a
//! fused `ffn_up` (gate rows, then up rows; split on loading), NEOX rotary over
//! `phi3.rope.dimension_count` values of each head, SwiGLU feed-forward, no biases, a separate
//! output layer. llama.cpp turns Phi-3's sliding window off, and so does this. The LongRoPE
//! models (128k context: `rope_factors_long` / `rope_factors_short`) are not run yet.

use super::{meta_f32, meta_usize, Family, GgufDecoder, Layer, Rope, Shape};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

const ARCH: &str = "phi3";

/// Whether the GGUF is a dense Phi-3 without LongRoPE factors.
pub(super) fn supports(ct: &Content) -> bool {
    let has = |name: &str| ct.tensor_infos.contains_key(name);
    (has("blk.0.attn_qkv.weight") || has("blk.0.attn_q.weight"))
        && has("blk.0.ffn_up.weight")
        && !has("blk.0.ffn_gate_inp.weight")
        && !has("rope_factors_long.weight")
}

/// Loads a Phi-3 GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, ARCH)?;
    let rope_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(10_000.0);
    let rotated = meta_usize(ct, ARCH, "rope.dimension_count").unwrap_or(shape.head_dim);
    let layers = (0..shape.layers)
        .map(|i| Layer::load(ct, reader, i, false))
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
