//! Quantized linear layers and the product path each takes: candle's kernels, the direct
//! per-format dot product that keeps activation rounding the same on every CPU, or an f32
//! product over dequantized weights for prompt rows.

use super::f32_tensor;
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::k_quants::{self, BlockQ6K, BlockQ8_0};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor, D};
use std::io::{Read, Seek};
use std::sync::Arc;

/// Products of at least this many rows run on dequantized weights (see [`prefill_rounding`]).
pub(super) const PREFILL_ROWS: usize = 8;

/// A linear layer of quantized weights, with an optional f32 bias.
#[derive(Clone)]
pub(super) struct QLinear {
    pub(super) weight: Arc<QTensor>,
    pub(super) matmul: QMatMul,
    pub(super) bias: Option<Tensor>,
}

impl QLinear {
    pub(super) fn load<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        name: &str,
        bias: bool,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let weight = Arc::new(ct.tensor(reader, &format!("{name}.weight"), &device)?);
        let bias = if bias {
            Some(f32_tensor(ct, reader, &format!("{name}.bias"))?)
        } else {
            None
        };
        Ok(QLinear {
            matmul: QMatMul::from_arc(weight.clone())?,
            weight,
            bias,
        })
    }

    /// The layer `name` whose output rows are several layers' outputs side by side (Phi-3's
    /// `attn_qkv`, the `ffn_up` of Phi-3 and GLM-4 holding gate and up), split into one
    /// layer per part of `rows[i]` output rows. A row's quantized blocks are its own, so each
    /// part computes exactly what its rows of the whole would.
    pub(super) fn load_split<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        name: &str,
        rows: &[usize],
    ) -> Result<Vec<Self>> {
        let device = Device::Cpu;
        let whole = ct.tensor(reader, &format!("{name}.weight"), &device)?;
        let (n, k) = whole.shape().dims2()?;
        if rows.iter().sum::<usize>() != n {
            return Err(crate::Error::bad_request(format!(
                "{name}.weight has {n} rows, not the {} of its parts {rows:?}",
                rows.iter().sum::<usize>()
            )));
        }
        let dtype = whole.dtype();
        let row_bytes = k / dtype.block_size() * dtype.type_size();
        let data = whole.data()?;
        let mut start = 0;
        let mut parts = Vec::with_capacity(rows.len());
        for &r in rows {
            let bytes = &data[start * row_bytes..(start + r) * row_bytes];
            let weight = Arc::new(candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtype,
                bytes,
                vec![r, k],
                &device,
            )?);
            parts.push(QLinear {
                matmul: QMatMul::from_arc(weight.clone())?,
                weight,
                bias: None,
            });
            start += r;
        }
        Ok(parts)
    }

    /// `x · wᵀ (+ bias)`, by the path `products` picks.
    pub(super) fn forward_rows(
        &self,
        x: &Tensor,
        products: Products,
    ) -> candle_core::Result<Tensor> {
        // Our kernels (`kernels::quant`) when switched on (`XINFERENCE_QUANT_KERNELS=1`):
        // every row then gets the bits it has alone, on every CPU. Off by default, because
        // these tiny models' greedy answers move with the last bits of the products (one
        // activation rounding flipped early changes the later layers' roundings) and
        // tests/llm_greedy_parity.rs's fixtures were matched on the paths below.
        if let Some(y) = crate::kernels::quant::qtensor_matmul(&self.weight, x)? {
            return match &self.bias {
                Some(bias) => y.broadcast_add(bias),
                None => Ok(y),
            };
        }
        let rows = x.elem_count() / x.dim(D::Minus1)?.max(1);
        let dtype = self.weight.dtype();
        let gemm = matches!(products, Products::Prompt(n) if n >= PREFILL_ROWS);
        let y = match (&self.matmul, prefill_rounding(dtype)) {
            (QMatMul::QTensor(_), Some(rounding)) if gemm => {
                // Rounded as the quantized kernels (and llama.cpp) round activations, so that
                // prompts land where decode steps and llama.cpp have them.
                let x = QTensor::quantize(&x.contiguous()?, rounding)?
                    .dequantize(x.device())?
                    .reshape(x.shape())?;
                let w = self.weight.dequantize(x.device())?; // [out, in]
                x.broadcast_matmul(&w.t()?)?
            }
            (QMatMul::QTensor(_), _) if dtype == GgmlDType::Q8_0 => {
                direct_product::<BlockQ8_0>(&self.weight, x)?
            }
            // candle sends Q6K products of several rows to repacked kernels that sum otherwise
            // than its one-row kernel: rows that must match their one-row result go direct.
            (QMatMul::QTensor(_), _)
                if dtype == GgmlDType::Q6K && products == Products::PerRow && rows > 1 =>
            {
                direct_product::<BlockQ6K>(&self.weight, x)?
            }
            (matmul, _) => matmul.forward(x)?,
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

/// How a pass runs its products.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Products {
    /// Every row as it would alone: the quantized kernels, which round and multiply row by
    /// row (decode steps, batched or not).
    PerRow,
    /// Rows of a prompt of this many tokens in all (fed whole or in parts, after a cached
    /// prefix or not): from [`PREFILL_ROWS`] tokens on, the dequantized GEMM, so that every
    /// part of a prompt takes the path the whole prompt would.
    Prompt(usize),
}

/// `x · wᵀ` for Q8_0 weights through the format's own dot-product kernel, which rounds the
/// activations to Q8_0 (blocks of 32) as llama.cpp does, on every CPU. candle's `QMatMul`
/// sends Q8_0 weights to its repacked x86 kernels on CPUs with AVX-512 VNNI or AVX-VNNI, and
/// those round the activations to Q8K (blocks of 256) instead: the same model then gives
/// other logits on other CPUs (0.58 apart on one product of random data). Every other type
/// keeps the activation rounding of its format on every tier, so only Q8_0 comes here.
/// The same direct call serves Q6K rows that must match their one-row products.
pub(super) fn direct_product<T: k_quants::GgmlType>(
    weight: &QTensor,
    x: &Tensor,
) -> candle_core::Result<Tensor> {
    let (n, k) = weight.shape().dims2()?;
    let x = x.contiguous()?;
    let rows = x.elem_count() / k.max(1);
    let lhs = x.flatten_all()?.to_vec1::<f32>()?;
    let data = weight.data()?;
    let block = std::mem::size_of::<T>();
    if data.len() % block != 0 || data.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
        candle_core::bail!(
            "{:?} weights of {} bytes are not whole aligned blocks",
            T::DTYPE,
            data.len()
        );
    }
    // SAFETY: the block types are `repr(C)` structs of plain numbers (no padding, every bit
    // pattern valid: BlockQ8_0 {f16, [i8; 32]}, BlockQ6K {[u8; 128], [u8; 64], [i8; 16], f16});
    // the bytes are candle's own block storage of that type, checked above to be aligned and a
    // whole number of blocks, and borrowed for as long as `data` lives.
    let blocks: &[T] =
        unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<T>(), data.len() / block) };
    let mut out = vec![0f32; rows * n];
    k_quants::matmul::<T>((rows, k, n), &lhs, blocks, &mut out)?;
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Tensor::from_vec(out, dims, x.device())
}

/// The 8-bit format the quantized kernels round activations to before their dot products
/// with weights of type `weight`, when an f32 product can reproduce them exactly: rounding
/// `x` to it and back, then multiplying by the dequantized weights, gives the kernels' result
/// up to summation order (checked: 1e-5 on Qwen2.5's Q5_0 and Q6_K matrices). `None` for
/// float weights (nothing to emulate) and for Q4_1/Q5_1, which keep the quantized kernels for
/// prompts too: their kernels also round a per-block activation sum to f16, and even a
/// product that reproduced that as well (checked per product to 1e-4 on SmolLM2's real
/// weights and activations) moved SmolLM2-135M Q4_1's logits by about 0.5 and its greedy
/// answers away from llama.cpp's within 7 tokens. The cause is not found yet.
pub(super) fn prefill_rounding(weight: GgmlDType) -> Option<GgmlDType> {
    match weight {
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => Some(GgmlDType::Q8_0),
        GgmlDType::Q2K
        | GgmlDType::Q3K
        | GgmlDType::Q4K
        | GgmlDType::Q5K
        | GgmlDType::Q6K
        | GgmlDType::Q8K => Some(GgmlDType::Q8K),
        GgmlDType::Q4_1
        | GgmlDType::Q5_1
        | GgmlDType::Q8_1
        | GgmlDType::F32
        | GgmlDType::F16
        | GgmlDType::BF16 => None,
    }
}
