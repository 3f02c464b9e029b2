//! The token-embedding table kept as the GGUF stores it (quantized): a step dequantizes only
//! the rows of its own tokens, with candle's block dequantization (the same values the whole
//! table dequantized would hold). A tied output layer reads the same bytes through the
//! quantized product kernels (one copy of the table in memory).
//!
//! Dequantizing the whole table to f32 held 113 MB for SmolLM2-135M (a 98 MB file) and 545 MB
//! for Qwen2.5-0.5B (491 MB): most of the memory above the file.

use crate::{Error, Result};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// The token table `[vocab, hidden]`, in its GGUF format.
#[derive(Clone)]
pub(super) struct TokenTable {
    weight: Arc<QTensor>,
    vocab: usize,
    hidden: usize,
}

impl TokenTable {
    /// The table of `weight` (`[vocab, hidden]`, any GGUF type).
    pub(super) fn new(weight: Arc<QTensor>) -> Result<Self> {
        let (vocab, hidden) = weight.shape().dims2()?;
        if !hidden.is_multiple_of(weight.dtype().block_size()) {
            return Err(Error::bad_request(format!(
                "token_embd.weight rows of {hidden} values are not whole {:?} blocks",
                weight.dtype()
            )));
        }
        Ok(TokenTable {
            weight,
            vocab,
            hidden,
        })
    }

    /// The quantized table (for a tied output layer).
    pub(super) fn weight(&self) -> &Arc<QTensor> {
        &self.weight
    }

    /// The rows of `ids`, dequantized: `[ids.len(), hidden]` f32.
    pub(super) fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        let dtype = self.weight.dtype();
        let row_bytes = self.hidden / dtype.block_size() * dtype.type_size();
        let data = self.weight.data()?;
        let mut picked = Vec::with_capacity(ids.len() * row_bytes);
        for &id in ids {
            let id = id as usize;
            if id >= self.vocab {
                return Err(Error::bad_request(format!(
                    "token id {id} is outside the model's {} tokens",
                    self.vocab
                )));
            }
            picked.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
        }
        let device = Device::Cpu;
        let rows = candle_core::quantized::ggml_file::qtensor_from_ggml(
            dtype,
            &picked,
            vec![ids.len(), self.hidden],
            &device,
        )?;
        Ok(rows.dequantize(&device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::IndexOp;

    /// Rows looked up in the quantized table are bit for bit the rows of the whole table
    /// dequantized (what the decoder held before), for the types token tables come in.
    #[test]
    fn looked_up_rows_are_the_dequantized_table_rows() {
        let device = Device::Cpu;
        let (vocab, hidden) = (37, 512);
        let w = Tensor::randn(0f32, 1.0, (vocab, hidden), &device).unwrap();
        let ids = [0u32, 36, 5, 5, 17];
        for dtype in [
            GgmlDType::F32,
            GgmlDType::F16,
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let whole = q.dequantize(&device).unwrap();
            let table = TokenTable::new(q).unwrap();
            let rows = table.rows(&ids).unwrap();
            assert_eq!(rows.dims(), &[ids.len(), hidden]);
            for (i, &id) in ids.iter().enumerate() {
                let got: Vec<f32> = rows.i(i).unwrap().to_vec1().unwrap();
                let want: Vec<f32> = whole.i(id as usize).unwrap().to_vec1().unwrap();
                assert!(got == want, "{dtype:?}: row {id} differs");
            }
        }
        // An id past the vocabulary is a clear error, not a panic.
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap());
        let e = TokenTable::new(q).unwrap().rows(&[37]).err().unwrap();
        assert!(e.to_string().contains("outside"), "{e}");
    }
}
