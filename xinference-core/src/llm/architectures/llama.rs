//! The Llama layout (`llama`, `mistral`, `qwen2`): pre-norm blocks, rotary attention with
//! grouped KV heads (Qwen2: q/k/v biases and NEOX rotary; Llama 3.1+: the frequency factors of
//! `rope_freqs.weight`), SwiGLU feed-forward.

use super::{f32_tensor, meta_f32, Family, GgufDecoder, Layer, Rope, Shape};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

/// Whether this is a plain Llama-layout model (mixtures of experts and partial rotary stay with
/// candle's models).
pub(super) fn supports(ct: &Content, architecture: &str) -> bool {
    let int = |key: &str| {
        ct.metadata
            .get(&format!("{architecture}.{key}"))
            .and_then(|v| v.to_u32().ok())
    };
    let head_dim = match (int("embedding_length"), int("attention.head_count")) {
        (Some(e), Some(h)) if h > 0 => int("attention.key_length").unwrap_or(e / h),
        _ => return false,
    };
    matches!(architecture, "llama" | "mistral" | "qwen2")
        && int("expert_count").unwrap_or(0) <= 1
        && int("rope.dimension_count").is_none_or(|d| d == head_dim)
        && ct.tensor_infos.contains_key("blk.0.ffn_gate.weight")
}

/// Loads a Llama-layout GGUF.
pub(super) fn load<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    architecture: &str,
) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, architecture)?;
    let rope_base = meta_f32(ct, architecture, "rope.freq_base").unwrap_or(10_000.0);
    let qwen2 = architecture == "qwen2";
    // Llama 3.1+: per-frequency divisors of its long-context rotary scaling.
    let freq_factors = if ct.tensor_infos.contains_key("rope_freqs.weight") {
        Some(f32_tensor(ct, reader, "rope_freqs.weight")?.to_vec1::<f32>()?)
    } else {
        None
    };
    let layers = (0..shape.layers)
        .map(|i| Layer::load(ct, reader, i, qwen2))
        .collect::<Result<Vec<_>>>()?;
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family::standard(shape.head_dim, qwen2),
        vec![Rope::with_freq_factors(
            shape.head_dim,
            rope_base,
            1.0,
            shape.positions,
            freq_factors.as_deref(),
        )?],
    )
}
