//! SmolLM3 (`smollm3`), as llama.cpp's graph runs it: the Llama layout (no biases, SwiGLU,
//! interleaved rotary, output tied to the token table unless `output.weight` exists), except
//! that every fourth block (`(i + 1) % 4 == 0`, llama.cpp's fixed `n_no_rope_layer_step`; the
//! GGUF does not store it) attends without any positional encoding (NoPE).

use super::{meta_f32, Family, GgufDecoder, Layer, Rope, Shape};
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

const ARCH: &str = "smollm3";
/// Every `NO_ROPE_LAYER_STEP`-th block has no rotary embedding.
const NO_ROPE_LAYER_STEP: usize = 4;

/// Whether the GGUF is a dense SmolLM3 (separate q/k/v and a gated feed-forward).
pub(super) fn supports(ct: &Content) -> bool {
    ["blk.0.attn_q.weight", "blk.0.ffn_gate.weight"]
        .iter()
        .all(|name| ct.tensor_infos.contains_key(*name))
}

/// Loads a SmolLM3 GGUF.
pub(super) fn load<R: Read + Seek>(ct: &Content, reader: &mut R) -> Result<GgufDecoder> {
    let shape = Shape::read(ct, ARCH)?;
    let rope_base = meta_f32(ct, ARCH, "rope.freq_base").unwrap_or(5_000_000.0);
    let mut layers = Vec::with_capacity(shape.layers);
    for i in 0..shape.layers {
        let mut layer = Layer::load(ct, reader, i, false)?;
        // Rope 1 is the identity: the NoPE blocks.
        layer.rope = usize::from((i + 1) % NO_ROPE_LAYER_STEP == 0);
        layers.push(layer);
    }
    GgufDecoder::with_common_tensors(
        ct,
        reader,
        &shape,
        layers,
        Family::standard(shape.head_dim, false),
        vec![
            Rope::new(shape.head_dim, rope_base, 1.0, shape.positions)?,
            Rope::identity(shape.head_dim, shape.positions)?,
        ],
    )
}
