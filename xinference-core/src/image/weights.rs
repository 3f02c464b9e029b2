//! A `VarBuilder` over safetensors files read tensor by tensor, not memory-mapped.
//!
//! Every image component copies its weights out of the files at load (the UNet and the VAE
//! pack them for their products, candle's CLIP converts them into tensors of its own). Read
//! through a memory map, each file's pages stayed in the process's resident set until the
//! component was built, beside the copies: the UNet's load peaked at twice its weights. Read
//! with `pread`, the file's pages live only in the page cache, which is not the process's.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Where one tensor lies.
struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in its file.
    start: u64,
    len: usize,
}

/// Tensors of one or more safetensors files, read on demand.
pub struct ReadSafetensors {
    files: Vec<File>,
    entries: HashMap<String, Entry>,
}

fn dtype(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "U8" => DType::U8,
        "U32" => DType::U32,
        "I64" => DType::I64,
        _ => return None,
    })
}

fn bad(path: &std::path::Path, what: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{}: {what}", path.display()))
}

impl ReadSafetensors {
    /// Reads the headers of `paths` (tensor names, types, shapes and byte ranges).
    pub fn open(paths: &[PathBuf]) -> candle_core::Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let file = File::open(path)?;
            let size = file.metadata()?.len();
            let mut n = [0u8; 8];
            file.read_exact_at(&mut n, 0)?;
            let header_len = u64::from_le_bytes(n);
            if header_len > 100_000_000 || 8 + header_len > size {
                return Err(bad(path, "not a safetensors file (header size)"));
            }
            let mut header = vec![0u8; header_len as usize];
            file.read_exact_at(&mut header, 8)?;
            let header: HashMap<String, Value> =
                serde_json::from_slice(&header).map_err(|e| bad(path, e))?;
            let data_start = 8 + header_len;
            for (name, info) in header {
                if name == "__metadata__" {
                    continue;
                }
                let dtype_name = info["dtype"].as_str().unwrap_or("");
                let dtype = dtype(dtype_name)
                    .ok_or_else(|| bad(path, format!("{name}: unsupported dtype {dtype_name}")))?;
                let shape: Vec<usize> = info["shape"]
                    .as_array()
                    .and_then(|dims| {
                        dims.iter()
                            .map(|d| d.as_u64().map(|d| d as usize))
                            .collect::<Option<_>>()
                    })
                    .ok_or_else(|| bad(path, format!("{name}: bad shape")))?;
                let range = info["data_offsets"]
                    .as_array()
                    .and_then(|r| Some((r.first()?.as_u64()?, r.get(1)?.as_u64()?)))
                    .ok_or_else(|| bad(path, format!("{name}: bad data_offsets")))?;
                let want = shape
                    .iter()
                    .try_fold(dtype.size_in_bytes(), |acc, d| acc.checked_mul(*d));
                let (start, end) = (data_start + range.0, data_start + range.1);
                if range.1 < range.0 || end > size || want != Some((range.1 - range.0) as usize) {
                    return Err(bad(
                        path,
                        format!("{name}: byte range does not fit its shape"),
                    ));
                }
                entries.insert(
                    name,
                    Entry {
                        file: index,
                        dtype,
                        shape,
                        start,
                        len: (end - start) as usize,
                    },
                );
            }
            files.push(file);
        }
        Ok(ReadSafetensors { files, entries })
    }

    /// A `VarBuilder` over the files, converting to `dtype` on `device`.
    pub fn var_builder(
        paths: &[PathBuf],
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<VarBuilder<'static>> {
        let backend: Box<dyn SimpleBackend> = Box::new(Self::open(paths)?);
        Ok(VarBuilder::from_backend(backend, dtype, device.clone()))
    }
}

impl SimpleBackend for ReadSafetensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, dev)?;
        if tensor.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: tensor.shape().clone(),
            });
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            })?;
        let mut bytes = vec![0u8; entry.len];
        self.files[entry.file].read_exact_at(&mut bytes, entry.start)?;
        Tensor::from_raw_buffer(&bytes, entry.dtype, &entry.shape, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tensors written by candle's safetensors writer read back equal, by name and shape;
    /// an unknown name or a wrong shape is an error.
    #[test]
    fn reads_what_candle_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = Tensor::new(&[1.5f32, -2.0], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        candle_core::safetensors::save(
            &HashMap::from([("x.a".to_string(), a.clone()), ("b".to_string(), b)]),
            &path,
        )
        .unwrap();
        let vb = ReadSafetensors::var_builder(&[path], DType::F32, &Device::Cpu).unwrap();
        let got = vb.pp("x").get((3, 4), "a").unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        assert_eq!(
            vb.get(2, "b").unwrap().to_vec1::<f32>().unwrap(),
            [1.5, -2.0]
        );
        assert!(vb.contains_tensor("b") && !vb.contains_tensor("c"));
        assert!(vb.get(2, "c").is_err());
        assert!(vb.pp("x").get((4, 3), "a").is_err());
    }
}
