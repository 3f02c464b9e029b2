//! Our reader of CTranslate2's `model.bin` (the folder faster-whisper loads), and the mapping of
//! its Whisper variables onto the Hugging Face names that the Whisper forward pass reads.
//!
//! Layout (little-endian): u32 version, str spec name, u32 revision, u32 variable count, then per
//! variable: str name, u8 rank, u32 `dims[rank]`, u8 dtype, u32 byte count, bytes; then u32 alias
//! count and (alias, target) string pairs. A str is a u16 length that counts the trailing NUL.

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The variables of a `model.bin`, by CTranslate2 name (aliases resolved to their targets).
pub struct Ct2Model {
    /// The spec name (`WhisperSpec` for Whisper).
    pub spec: String,
    /// Every tensor, weights dequantised to f32.
    pub variables: HashMap<String, Tensor>,
}

/// A bounds-checked cursor over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| Error::bad_request("CTranslate2 model.bin is truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::bad_request("CTranslate2 model.bin has a name that is not UTF-8"))
    }
}

/// Element size of a CTranslate2 dtype code, and its name.
fn dtype_info(code: u8) -> Result<(usize, &'static str)> {
    Ok(match code {
        0 => (4, "f32"),
        1 => (1, "i8"),
        2 => (2, "i16"),
        3 => (4, "i32"),
        4 => (2, "f16"),
        5 => (2, "bf16"),
        other => {
            return Err(Error::bad_request(format!(
                "CTranslate2 model.bin: unknown dtype code {other}"
            )))
        }
    })
}

/// Converts raw little-endian values of a dtype code to f32.
fn to_f32(code: u8, raw: &[u8]) -> Vec<f32> {
    match code {
        0 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        1 => raw.iter().map(|&b| b as i8 as f32).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        3 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        4 => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

impl Ct2Model {
    /// Reads `model.bin` at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::bad_request(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&bytes)
    }

    /// Parses the bytes of a `model.bin`. Int8 weights are multiplied back by their per-row
    /// `<name>_scale` variable (CTranslate2 stores `round(w * scale)`).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut c = Cursor { bytes, at: 0 };
        let version = c.u32()?;
        if !(1..=6).contains(&version) {
            return Err(Error::bad_request(format!(
                "not a CTranslate2 model.bin (version {version})"
            )));
        }
        let spec = if version >= 2 {
            c.string()?
        } else {
            String::new()
        };
        let _revision = if version >= 2 { c.u32()? } else { 1 };
        let count = c.u32()? as usize;
        let mut raw: HashMap<String, (Vec<usize>, u8, &[u8])> = HashMap::with_capacity(count);
        for _ in 0..count {
            let name = c.string()?;
            let rank = c.u8()? as usize;
            let dims = (0..rank)
                .map(|_| c.u32().map(|d| d as usize))
                .collect::<Result<Vec<_>>>()?;
            let code = c.u8()?;
            let (size, _) = dtype_info(code)?;
            let n_bytes = c.u32()? as usize;
            let elements: usize = dims.iter().product();
            if elements * size != n_bytes {
                return Err(Error::bad_request(format!(
                    "CTranslate2 model.bin: variable {name} has {n_bytes} bytes for shape {dims:?}"
                )));
            }
            raw.insert(name, (dims, code, c.take(n_bytes)?));
        }
        let mut aliases = Vec::new();
        if version >= 3 && c.at < bytes.len() {
            let n = c.u32()? as usize;
            for _ in 0..n {
                aliases.push((c.string()?, c.string()?));
            }
        }
        let mut variables = HashMap::with_capacity(raw.len() + aliases.len());
        for (name, (dims, code, data)) in &raw {
            if name.ends_with("_scale") && raw.contains_key(name.trim_end_matches("_scale")) {
                continue;
            }
            let mut values = to_f32(*code, data);
            if *code == 1 {
                if let Some((sdims, scode, sdata)) = raw.get(&format!("{name}_scale")) {
                    let scales = to_f32(*scode, sdata);
                    let rows = sdims.iter().product::<usize>().max(1);
                    let per_row = values.len() / rows;
                    for (row, chunk) in values.chunks_mut(per_row.max(1)).enumerate() {
                        let s = scales[row.min(scales.len() - 1)];
                        chunk.iter_mut().for_each(|v| *v /= s);
                    }
                }
            }
            let tensor = Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?;
            variables.insert(name.clone(), tensor);
        }
        for (alias, target) in aliases {
            if let Some(t) = variables.get(&target).cloned() {
                variables.insert(alias, t);
            }
        }
        Ok(Ct2Model { spec, variables })
    }

    fn get(&self, name: &str) -> Result<&Tensor> {
        self.variables.get(name).ok_or_else(|| {
            Error::bad_request(format!("CTranslate2 model.bin has no variable {name}"))
        })
    }

    /// A scalar integer variable (`encoder/num_heads`), when present.
    pub fn scalar(&self, name: &str) -> Option<usize> {
        let t = self.variables.get(name)?;
        let v = t.flatten_all().ok()?.to_vec1::<f32>().ok()?;
        v.first().map(|x| *x as usize)
    }

    /// Number of `<prefix>/layer_N` blocks.
    pub fn layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.variables
                    .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }

    /// The Whisper variables under the Hugging Face names (`model.encoder.layers.0.fc1.weight`,
    /// ...), as f32 tensors: fused q/k/v and k/v projections are split.
    pub fn whisper_tensors(&self) -> Result<HashMap<String, Tensor>> {
        if self.spec != "WhisperSpec" {
            return Err(Error::bad_request(format!(
                "CTranslate2 model.bin holds a {} model, not Whisper",
                self.spec
            )));
        }
        let mut out = HashMap::new();
        for side in ["encoder", "decoder"] {
            let hf = format!("model.{side}");
            for i in 0..self.layers(side) {
                self.put_whisper_layer(side, i, &mut out)?;
            }
            self.put_layer_norm(
                &format!("{side}/layer_norm"),
                &format!("{hf}.layer_norm"),
                &mut out,
            )?;
        }
        for (src, dst) in [
            ("encoder/conv1", "model.encoder.conv1"),
            ("encoder/conv2", "model.encoder.conv2"),
        ] {
            self.put_linear(src, dst, &mut out)?;
        }
        for (src, dst) in [
            (
                "decoder/embeddings/weight",
                "model.decoder.embed_tokens.weight",
            ),
            (
                "encoder/position_encodings/encodings",
                "model.encoder.embed_positions.weight",
            ),
            (
                "decoder/position_encodings/encodings",
                "model.decoder.embed_positions.weight",
            ),
        ] {
            out.insert(dst.to_owned(), self.get(src)?.clone());
        }
        Ok(out)
    }

    /// Puts layer `i` of `side` (`encoder` or `decoder`) into `out` under the Hugging Face
    /// names: self-attention, cross-attention (decoder only) and feed-forward block.
    fn put_whisper_layer(
        &self,
        side: &str,
        i: usize,
        out: &mut HashMap<String, Tensor>,
    ) -> Result<()> {
        let src = format!("{side}/layer_{i}");
        let dst = format!("model.{side}.layers.{i}");
        self.put_layer_norm(
            &format!("{src}/self_attention/layer_norm"),
            &format!("{dst}.self_attn_layer_norm"),
            out,
        )?;
        self.put_split(
            &format!("{src}/self_attention/linear_0"),
            &[
                &format!("{dst}.self_attn.q_proj"),
                &format!("{dst}.self_attn.k_proj"),
                &format!("{dst}.self_attn.v_proj"),
            ],
            out,
        )?;
        self.put_linear(
            &format!("{src}/self_attention/linear_1"),
            &format!("{dst}.self_attn.out_proj"),
            out,
        )?;
        if side == "decoder" {
            self.put_layer_norm(
                &format!("{src}/attention/layer_norm"),
                &format!("{dst}.encoder_attn_layer_norm"),
                out,
            )?;
            self.put_linear(
                &format!("{src}/attention/linear_0"),
                &format!("{dst}.encoder_attn.q_proj"),
                out,
            )?;
            self.put_split(
                &format!("{src}/attention/linear_1"),
                &[
                    &format!("{dst}.encoder_attn.k_proj"),
                    &format!("{dst}.encoder_attn.v_proj"),
                ],
                out,
            )?;
            self.put_linear(
                &format!("{src}/attention/linear_2"),
                &format!("{dst}.encoder_attn.out_proj"),
                out,
            )?;
        }
        self.put_layer_norm(
            &format!("{src}/ffn/layer_norm"),
            &format!("{dst}.final_layer_norm"),
            out,
        )?;
        self.put_linear(&format!("{src}/ffn/linear_0"), &format!("{dst}.fc1"), out)?;
        self.put_linear(&format!("{src}/ffn/linear_1"), &format!("{dst}.fc2"), out)
    }

    /// Puts the layer norm `src` (`gamma`, `beta`) into `out` as `dst.weight`, `dst.bias`.
    fn put_layer_norm(
        &self,
        src: &str,
        dst: &str,
        out: &mut HashMap<String, Tensor>,
    ) -> Result<()> {
        out.insert(
            format!("{dst}.weight"),
            self.get(&format!("{src}/gamma"))?.clone(),
        );
        out.insert(
            format!("{dst}.bias"),
            self.get(&format!("{src}/beta"))?.clone(),
        );
        Ok(())
    }

    /// Puts the linear layer `src` into `out` as `dst.weight` and, when it has one, `dst.bias`.
    fn put_linear(&self, src: &str, dst: &str, out: &mut HashMap<String, Tensor>) -> Result<()> {
        out.insert(
            format!("{dst}.weight"),
            self.get(&format!("{src}/weight"))?.clone(),
        );
        if let Some(b) = self.variables.get(&format!("{src}/bias")) {
            out.insert(format!("{dst}.bias"), b.clone());
        }
        Ok(())
    }

    /// Splits the fused projection `src` (rows stacked) into the named parts `dsts` of `out`;
    /// keys (`*k_proj`) carry no bias.
    fn put_split(&self, src: &str, dsts: &[&str], out: &mut HashMap<String, Tensor>) -> Result<()> {
        let w = self.get(&format!("{src}/weight"))?;
        let b = self.get(&format!("{src}/bias"))?;
        let n = w.dim(0)? / dsts.len();
        for (i, dst) in dsts.iter().enumerate() {
            out.insert(format!("{dst}.weight"), w.narrow(0, i * n, n)?);
            if !dst.ends_with("k_proj") {
                out.insert(format!("{dst}.bias"), b.narrow(0, i * n, n)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(out: &mut Vec<u8>, text: &str) {
        out.extend(((text.len() + 1) as u16).to_le_bytes());
        out.extend(text.as_bytes());
        out.push(0);
    }

    #[test]
    fn reads_variables_int8_scales_and_aliases() {
        let mut b = Vec::new();
        b.extend(6u32.to_le_bytes());
        s(&mut b, "WhisperSpec");
        b.extend(3u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        s(&mut b, "w");
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        b.push(1);
        b.extend(4u32.to_le_bytes());
        b.extend([2u8, 4, 6, 8]);
        s(&mut b, "w_scale");
        b.push(1);
        b.extend(2u32.to_le_bytes());
        b.push(0);
        b.extend(8u32.to_le_bytes());
        b.extend(2f32.to_le_bytes());
        b.extend(4f32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        s(&mut b, "alias");
        s(&mut b, "w");
        let m = Ct2Model::parse(&b).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        let w = m.variables["w"].to_vec2::<f32>().unwrap();
        assert_eq!(w, vec![vec![1.0, 2.0], vec![1.5, 2.0]]);
        assert!(m.variables.contains_key("alias"));
        assert!(!m.variables.contains_key("w_scale"));
        assert!(Ct2Model::parse(&b[..b.len() - 3]).is_err());
    }
}
