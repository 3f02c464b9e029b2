//! Qwen3 (`qwen3`), as llama.cpp's graph runs it: the Llama layout without q/k/v biases, with an
//! RMS norm over each query and key head (`attn_q_norm`, `attn_k_norm`) before NEOX rotary,
//! SwiGLU feed-forward, and the output tied to the token table unless `output.weight` exists.

use super::{f32_tensor, meta_f32, Family, GgufDecoder, Layer, Rope, Shape};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

const ARCH: &str = "qwen3";

/// Whether the GGUF is a dense Qwen3 (the per-head q/k norms and a gated feed-forward).
pub(super) fn supports(ct: &Content) -> bool {
    [
        "blk.0.attn_q_norm.weight",
        "blk.0.attn_k_norm.weight",
        "blk.0.ffn_gate.weight",
    ]
    .iter()
    .all(|name| ct.tensor_infos.contains_key(*name))
}

/// Loads a Qwen3 GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, ARCH)?;
    let rope_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(1_000_000.0);
    let mut layers = Vec::with_capacity(shape.layers);
    for i in 0..shape.layers {
        let p = format!("blk.{i}");
        let mut layer = Layer::load(ct, reader, i, false)?;
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
