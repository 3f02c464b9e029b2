//! Expert matrices stored as MXFP4 (GGUF type 39: the released gpt-oss GGUFs), which candle
//! cannot hold: the bytes are read as they are (`loading/gguf_header.rs` notes where) and the
//! products run on `kernels::mxfp4` (llama.cpp's MXFP4 x Q8_0 arithmetic).

use super::f32_tensor;
use super::qlinear::QLinear;
use crate::kernels::mxfp4::{Mxfp4Matrix, BLOCK_BYTES};
use crate::llm::loading::{mxfp4_bytes, mxfp4_tensor};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::Tensor;
use std::io::{Read, Seek};
use std::sync::Arc;

/// One expert's matrix `[n, k]` inside the bytes of the 3-D tensor of all experts.
#[derive(Clone)]
pub(super) struct Mxfp4Linear {
    bytes: Arc<Vec<u8>>,
    /// Where this expert's rows start in `bytes`.
    start: usize,
    n: usize,
    k: usize,
    bias: Option<Tensor>,
}

impl Mxfp4Linear {
    /// `x · wᵀ (+ bias)` for `x` `[.., k]`.
    fn forward_rows(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let len = self.n * self.k / 32 * BLOCK_BYTES;
        let matrix = Mxfp4Matrix::new(&self.bytes[self.start..self.start + len], self.n, self.k)
            .ok_or_else(|| candle_core::Error::Msg("MXFP4 matrix of the wrong size".into()))?;
        let x = x.contiguous()?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let rows = xs.len() / self.k;
        let mut out = vec![0f32; rows * self.n];
        matrix.matmul(&xs, &mut out);
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.n;
        }
        let y = Tensor::from_vec(out, dims, x.device())?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// An expert's linear layer: a candle quantized tensor, or MXFP4.
#[derive(Clone)]
pub(super) enum ExpertLinear {
    /// Any type candle reads (`qlinear.rs`).
    Quant(QLinear),
    /// MXFP4.
    Mxfp4(Mxfp4Linear),
}

impl ExpertLinear {
    /// `x · wᵀ (+ bias)`.
    pub(super) fn forward_rows(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            ExpertLinear::Quant(l) => l.forward_rows(x),
            ExpertLinear::Mxfp4(l) => l.forward_rows(x),
        }
    }
}

/// The experts of the 3-D MXFP4 tensor `{name}.weight` (`[experts, rows, cols]`), with the
/// matching rows of `{name}.bias` when `bias`; `None` when that tensor is not MXFP4.
pub(super) fn load_experts<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    name: &str,
    bias: bool,
) -> Result<Option<Vec<ExpertLinear>>> {
    let Some((bytes, [count, n, k])) = expert_tensor(ct, reader, name)? else {
        return Ok(None);
    };
    let biases = if bias {
        Some(f32_tensor(ct, reader, &format!("{name}.bias"))?)
    } else {
        None
    };
    let [experts] = expert_parts(&bytes, count, n, k)?;
    experts
        .into_iter()
        .enumerate()
        .map(|(e, mut linear)| {
            if let Some(b) = &biases {
                linear.bias = Some(b.get(e)?);
            }
            Ok(ExpertLinear::Mxfp4(linear))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The gate and up experts of a fused MXFP4 tensor `{name}.weight` (`[experts, 2 * ff, cols]`,
/// each expert's gate rows first; Gemma 4's `ffn_gate_up_exps`); `None` when it is not MXFP4.
pub(super) fn load_gate_up_experts<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    name: &str,
) -> Result<Option<[Vec<ExpertLinear>; 2]>> {
    let Some((bytes, [count, n, k])) = expert_tensor(ct, reader, name)? else {
        return Ok(None);
    };
    let parts = expert_parts::<2>(&bytes, count, n, k)?;
    Ok(Some(
        parts.map(|p| p.into_iter().map(ExpertLinear::Mxfp4).collect()),
    ))
}

/// An MXFP4 tensor of experts: its bytes and dimensions (`[experts, rows, cols]`).
type ExpertTensor = (Arc<Vec<u8>>, [usize; 3]);

/// The bytes and dimensions (`[experts, rows, cols]`) of the 3-D MXFP4 tensor
/// `{name}.weight`; `None` when that tensor is not MXFP4.
fn expert_tensor<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    name: &str,
) -> Result<Option<ExpertTensor>> {
    let weight = format!("{name}.weight");
    let Some(info) = mxfp4_tensor(ct, &weight) else {
        return Ok(None);
    };
    let [count, n, k] = info.dims[..] else {
        return Err(Error::bad_request(format!(
            "the GGUF's MXFP4 tensor {weight} has dimensions {:?}, not [experts, rows, cols]",
            info.dims
        )));
    };
    let bytes = Arc::new(mxfp4_bytes(ct, reader, &weight, &info)?);
    Ok(Some((bytes, [count, n, k])))
}

/// The `[n, k]` matrices of `count` experts in `bytes`, each cut by rows into `N` equal parts:
/// part `i` of every expert in the `i`-th list.
fn expert_parts<const N: usize>(
    bytes: &Arc<Vec<u8>>,
    count: usize,
    n: usize,
    k: usize,
) -> Result<[Vec<Mxfp4Linear>; N]> {
    if !n.is_multiple_of(N)
        || !k.is_multiple_of(32)
        || bytes.len() != count * n * k / 32 * BLOCK_BYTES
    {
        return Err(Error::bad_request(format!(
            "an MXFP4 tensor of {} bytes is not {count} experts of {N} [{n} / {N}, {k}] parts",
            bytes.len()
        )));
    }
    let part = n / N * k / 32 * BLOCK_BYTES;
    Ok(std::array::from_fn(|i| {
        (0..count)
            .map(|e| Mxfp4Linear {
                bytes: bytes.clone(),
                start: (e * N + i) * part,
                n: n / N,
                k,
                bias: None,
            })
            .collect()
    }))
}
