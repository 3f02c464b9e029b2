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
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::io::{Read, Seek};
use std::sync::Arc;

/// A linear layer of quantized weights, with an optional f32 bias.
#[derive(Clone)]
pub(super) struct QLinear {
    pub(super) weight: Arc<QTensor>,
    pub(super) matmul: QMatMul,
    pub(super) bias: Option<Tensor>,
    /// Float weights (f32, f16, bf16) multiply unrounded f32 activations on
    /// `kernels::float` (safetensors: transformers' f32 compute), without candle's f32 copy of
    /// them; `false`: llama.cpp's rounding (see [`QLinear::forward_with_candle`]).
    pub(super) exact: bool,
}

/// Whether the weights come from a source whose float products are exact f32
/// (`loading/safetensors`, which marks its view with [`EXACT_KEY`]).
pub(super) fn exact_products(ct: &Content) -> bool {
    ct.metadata.contains_key(EXACT_KEY)
}

/// The metadata key that marks a GGUF view of safetensors weights (f32 compute throughout).
pub const EXACT_KEY: &str = "xinference.exact_f32";

/// candle's product of `weight`, without the f32 copy it makes of float weights when they
/// run on `kernels::float` instead (`exact`).
fn matmul_of(weight: &Arc<QTensor>, exact: bool) -> candle_core::Result<QMatMul> {
    if exact && float_type(weight).is_some() {
        Ok(QMatMul::QTensor(weight.clone()))
    } else {
        QMatMul::from_arc(weight.clone())
    }
}

/// The float type of float weights.
fn float_type(weight: &QTensor) -> Option<crate::kernels::float::FloatType> {
    use crate::kernels::float::FloatType;
    match weight.dtype() {
        GgmlDType::F32 => Some(FloatType::F32),
        GgmlDType::F16 => Some(FloatType::F16),
        GgmlDType::BF16 => Some(FloatType::Bf16),
        _ => None,
    }
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
        let exact = exact_products(ct);
        Ok(QLinear {
            matmul: matmul_of(&weight, exact)?,
            weight,
            bias,
            exact,
        })
    }

    /// A layer of the weights `weight`, without bias (a tied output layer: the token table);
    /// `exact` as [`QLinear::exact`].
    pub(super) fn from_weight(weight: Arc<QTensor>, exact: bool) -> Result<Self> {
        Ok(QLinear {
            matmul: matmul_of(&weight, exact)?,
            weight,
            bias: None,
            exact,
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
        let exact = exact_products(ct);
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
                matmul: matmul_of(&weight, exact)?,
                weight,
                bias: None,
                exact,
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
        let exact = layers
            .iter()
            .all(|l| l.exact && float_type(&l.weight).is_some());
        let ys = if exact {
            layers
                .iter()
                .map(|l| l.forward_float(x))
                .collect::<candle_core::Result<Vec<_>>>()?
        } else {
            match crate::kernels::quant::qtensor_matmuls(&weights, x)? {
                Some(ys) => ys,
                None => layers
                    .iter()
                    .map(|l| l.forward_with_candle(x))
                    .collect::<candle_core::Result<_>>()?,
            }
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
    /// `x · wᵀ` of float weights on `kernels::float`, in f32 (the `exact` products).
    fn forward_float(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let ty = float_type(&self.weight)
            .ok_or_else(|| candle_core::Error::Msg("exact products of quantized weights".into()))?;
        let (n, k) = self.weight.shape().dims2()?;
        if x.dims().last() != Some(&k) {
            candle_core::bail!("a product of {k}-wide weights with {:?}", x.shape());
        }
        let bytes = self.weight.data()?;
        let x = x.contiguous()?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; xs.len() / k.max(1) * n];
        crate::kernels::float::matmul(ty, &bytes, n, k, &xs, &mut out);
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        Tensor::from_vec(out, dims, x.device())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// An exact layer of bf16 weights keeps only the bf16 bytes (no f32 copy for candle) and
    /// multiplies unrounded f32 inputs: its products equal the f32 product of the widened
    /// weights within f32 rounding.
    #[test]
    fn exact_half_weights_stay_half_and_multiply_in_f32() {
        let device = candle_core::Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (24, 40), &device).unwrap();
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::BF16).unwrap());
        let layer = QLinear::from_weight(q.clone(), true).unwrap();
        assert!(
            matches!(layer.matmul, QMatMul::QTensor(_)),
            "an f32 copy was made"
        );
        let x = Tensor::randn(0f32, 1.0, (1, 3, 40), &device).unwrap();
        let got: Vec<f32> = layer
            .forward_rows(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let widened = q.dequantize(&device).unwrap();
        let want: Vec<f32> = x
            .broadcast_matmul(&widened.t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
        // Not exact (a GGUF): candle's product as before.
        let gguf = QLinear::from_weight(q, false).unwrap();
        assert!(!matches!(gguf.matmul, QMatMul::QTensor(_)));
    }
}
