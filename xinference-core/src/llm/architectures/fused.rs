//! Fused projections, split into the separate layers the decoder runs: Phi-3's `attn_qkv`
//! (q, k and v rows one after the other) and the `ffn_up` of Phi-3 and GLM-4 that holds the
//! gate's rows, then the up rows (llama.cpp's `LLM_FFN_SWIGLU`: `silu(first half) * second`).

use super::{f32_tensor, QLinear, Shape};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek};

/// q, k and v of block `p` (`blk.{i}`): `attn_qkv` split by the heads of the GGUF's
/// architecture, or the separate `attn_q`, `attn_k`, `attn_v` (with biases when `bias`).
pub(super) fn attention<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    p: &str,
    bias: bool,
) -> Result<[QLinear; 3]> {
    let name = format!("{p}.attn_qkv");
    if !ct.tensor_infos.contains_key(&format!("{name}.weight")) {
        return Ok([
            QLinear::load(ct, reader, &format!("{p}.attn_q"), bias)?,
            QLinear::load(ct, reader, &format!("{p}.attn_k"), bias)?,
            QLinear::load(ct, reader, &format!("{p}.attn_v"), bias)?,
        ]);
    }
    let architecture = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| Error::bad_request("the GGUF file has no general.architecture"))?;
    let shape = Shape::read(ct, architecture)?;
    let rows = [
        shape.heads * shape.head_dim,
        shape.kv_heads * shape.head_dim,
        shape.kv_heads * shape.head_dim,
    ];
    let mut parts = QLinear::load_split(ct, reader, &name, &rows)?;
    if ct.tensor_infos.contains_key(&format!("{name}.bias")) {
        let whole = f32_tensor(ct, reader, &format!("{name}.bias"))?;
        let mut start = 0;
        for (part, r) in parts.iter_mut().zip(rows) {
            part.bias = Some(whole.narrow(0, start, r)?.contiguous()?);
            start += r;
        }
    }
    let [q, k, v]: [QLinear; 3] = parts
        .try_into()
        .map_err(|_| Error::internal("attn_qkv did not split in three"))?;
    Ok([q, k, v])
}

/// The gate and up projections of block `p`: `ffn_gate` and `ffn_up`, or an `ffn_up` of twice
/// the rows split in half when there is no `ffn_gate`.
pub(super) fn feed_forward<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    p: &str,
) -> Result<[QLinear; 2]> {
    let up = format!("{p}.ffn_up");
    if ct
        .tensor_infos
        .contains_key(&format!("{p}.ffn_gate.weight"))
    {
        return Ok([
            QLinear::load(ct, reader, &format!("{p}.ffn_gate"), false)?,
            QLinear::load(ct, reader, &up, false)?,
        ]);
    }
    let info = ct
        .tensor_infos
        .get(&format!("{up}.weight"))
        .ok_or_else(|| Error::bad_request(format!("the GGUF has no {up}.weight")))?;
    let rows = info.shape.dims()[0];
    if rows % 2 != 0 {
        return Err(Error::bad_request(format!(
            "{up}.weight has {rows} rows: not a gate and an up projection of equal size"
        )));
    }
    let parts = QLinear::load_split(ct, reader, &up, &[rows / 2, rows / 2])?;
    let [gate, up]: [QLinear; 2] = parts
        .try_into()
        .map_err(|_| Error::internal("ffn_up did not split in two"))?;
    Ok([gate, up])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// A fused `ffn_up` of Q8_0 rows splits into a gate and an up layer whose products are
    /// exactly the whole product's first and second halves.
    #[test]
    fn a_fused_projection_splits_into_exact_parts() {
        let device = Device::Cpu;
        let whole = Tensor::randn(0f32, 1.0, (6, 64), &device).unwrap();
        let q = QTensor::quantize(&whole, GgmlDType::Q8_0).unwrap();
        let mut file = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut file, &[], &[("blk.0.ffn_up.weight", &q)]).unwrap();
        file.set_position(0);
        let ct = Content::read(&mut file).unwrap();
        let [gate, up] = feed_forward(&ct, &mut file, "blk.0").unwrap();
        let whole = QLinear::load(&ct, &mut file, "blk.0.ffn_up", false).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 3, 64), &device).unwrap();
        let all: Vec<f32> = whole
            .forward_rows(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let parts = Tensor::cat(
            &[gate.forward_rows(&x).unwrap(), up.forward_rows(&x).unwrap()],
            2,
        )
        .unwrap();
        let parts: Vec<f32> = parts.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(parts, all);
        // Rows that do not halve are a clear error.
        let odd = QTensor::quantize(
            &Tensor::zeros((5, 64), candle_core::DType::F32, &device).unwrap(),
            GgmlDType::Q8_0,
        )
        .unwrap();
        let mut file = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut file, &[], &[("blk.0.ffn_up.weight", &odd)]).unwrap();
        file.set_position(0);
        let ct = Content::read(&mut file).unwrap();
        let e = feed_forward(&ct, &mut file, "blk.0").err().unwrap();
        assert!(e.to_string().contains("5 rows"), "{e}");
    }
}
