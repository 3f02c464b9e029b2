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

    /// `x · wᵀ (+ bias)`: our kernels where they cover the weights' format, else candle's.
    pub(super) fn forward_rows(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match crate::kernels::quant::qtensor_matmul(&self.weight, x)? {
            Some(y) => y,
            None => self.matmul.forward(x)?,
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}
