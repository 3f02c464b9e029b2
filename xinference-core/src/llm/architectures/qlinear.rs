//! Quantized linear layers: our kernels (`kernels::quant`) for every quantized format they
//! cover, candle's `QMatMul` for float weights (and for everything when the kernels are
//! switched off with `XINFERENCE_QUANT_KERNELS=0`, for A/B benchmarks).
//!
//! Our kernels round the activations to 8 bits and sum exactly as llama.cpp's x86 CPU backend
//! does, on every CPU, and compute each row independently of the rows beside it: a prompt fed
//! whole or in parts, and a decode step alone or batched with others, give the same bits.

use super::f32_tensor;
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::io::{Read, Seek};
use std::sync::Arc;

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

    /// A layer of the weights `weight`, without bias (a tied output layer: the token table).
    pub(super) fn from_weight(weight: Arc<QTensor>) -> Result<Self> {
        Ok(QLinear {
            matmul: QMatMul::from_arc(weight.clone())?,
            weight,
            bias: None,
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

    /// `x · wᵀ (+ bias)`: our kernels where they cover the weights' format, else candle's.
    pub(super) fn forward_rows(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(Self::forward_together(&[self], x)?.remove(0))
    }

    /// [`QLinear::forward_rows`] of each of `layers` over the same `x` (q, k and v; gate and
    /// up): the input is rounded once per activation format and the products share one pass
    /// over the threads. Each result is the bits the layer gives alone.
    pub(super) fn forward_together(
        layers: &[&QLinear],
        x: &Tensor,
    ) -> candle_core::Result<Vec<Tensor>> {
        let weights: Vec<&QTensor> = layers.iter().map(|l| &*l.weight).collect();
        let ys = match crate::kernels::quant::qtensor_matmuls(&weights, x)? {
            Some(ys) => ys,
            None => layers
                .iter()
                .map(|l| l.forward_with_candle(x))
                .collect::<candle_core::Result<_>>()?,
        };
        ys.into_iter()
            .zip(layers)
            .map(|(y, l)| match &l.bias {
                Some(bias) => add_bias(&y, bias),
                None => Ok(y),
            })
            .collect()
    }
}

impl QLinear {
    /// candle's product, for the weight formats our kernels do not cover. f16 weights:
    /// llama.cpp rounds the activations to f16 too (its `vec_dot_type`), then sums exact f16
    /// products in f32, so the input is rounded the same way first.
    fn forward_with_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.weight.dtype() == candle_core::quantized::GgmlDType::F16 {
            let x = x.to_dtype(candle_core::DType::F16)?.to_dtype(x.dtype())?;
            self.matmul.forward(&x)
        } else {
            self.matmul.forward(x)
        }
    }
}

/// `y + bias` broadcast over `y`'s rows (candle's `broadcast_add`: the same bits), on the
/// calling thread rather than candle's spinning pool.
fn add_bias(y: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let bias = bias.to_vec1::<f32>()?;
    let n = bias.len();
    if y.dims().last() != Some(&n) {
        candle_core::bail!("a bias of {n} values for outputs {:?}", y.dims());
    }
    let mut out = y.flatten_all()?.to_vec1::<f32>()?;
    for row in out.chunks_exact_mut(n) {
        for (o, b) in row.iter_mut().zip(&bias) {
            *o += b;
        }
    }
    Tensor::from_vec(out, y.dims(), y.device())
}
