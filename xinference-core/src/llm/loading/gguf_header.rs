//! A GGUF header reader for the files candle's reader refuses because a tensor has a type it
//! does not know: MXFP4 (type 39), which the released gpt-oss GGUFs use for their experts.
//! The header is read as candle reads it (same [`Content`]); each MXFP4 tensor is left out of
//! `tensor_infos` (candle could not read it) and noted in the metadata under
//! `xinference.mxfp4.<tensor name>` as `[offset, dims...]` (candle's order of dimensions,
//! offset from the start of the tensor data), where [`mxfp4_tensor`] finds it. Any other
//! unknown type is a clear error naming the tensor.

use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// The metadata key prefix of the MXFP4 tensors' notes.
pub(crate) const MXFP4_KEY: &str = "xinference.mxfp4.";
/// GGUF's type id of MXFP4.
const TYPE_MXFP4: u32 = 39;
/// Most values an array or a count in a header may hold (corrupt files fail fast).
const MAX_COUNT: u64 = 1 << 28;

/// An MXFP4 tensor noted by [`read`]: its offset from the tensor data start and its
/// dimensions (candle's order: the GGUF's reversed, rows last but one).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mxfp4Info {
    pub(crate) offset: u64,
    pub(crate) dims: Vec<usize>,
}

/// The MXFP4 tensor `name` of `ct`, if it is one.
pub(crate) fn mxfp4_tensor(ct: &Content, name: &str) -> Option<Mxfp4Info> {
    let Value::Array(values) = ct.metadata.get(&format!("{MXFP4_KEY}{name}"))? else {
        return None;
    };
    let numbers: Vec<u64> = values
        .iter()
        .map(|v| match v {
            Value::U64(x) => Some(*x),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (offset, dims) = numbers.split_first()?;
    Some(Mxfp4Info {
        offset: *offset,
        dims: dims.iter().map(|&d| d as usize).collect(),
    })
}

/// Whether `ct` has the tensor `name`, readable by candle or noted as MXFP4.
pub(crate) fn has_tensor(ct: &Content, name: &str) -> bool {
    ct.tensor_infos.contains_key(name) || ct.metadata.contains_key(&format!("{MXFP4_KEY}{name}"))
}

/// Reads a GGUF header: candle's reader, or this one where candle's refuses the file.
pub(crate) fn read<R: Read + Seek>(reader: &mut R) -> Result<Content> {
    let start = reader.stream_position()?;
    match Content::read(reader) {
        Ok(ct) => Ok(ct),
        Err(candle) => {
            reader.seek(SeekFrom::Start(start))?;
            read_own(reader).map_err(|own| match own {
                // The file is broken for this reader too: candle's words are the first cause.
                Header::Broken(why) => {
                    tracing::debug!("the GGUF header reader for MXFP4 files: {why}");
                    Error::bad_request(candle.to_string())
                }
                Header::Unsupported(why) => Error::bad_request(why),
            })
        }
    }
}

/// Why [`read_own`] failed.
enum Header {
    /// Not a GGUF header it can read.
    Broken(String),
    /// A valid header with a tensor type this build does not run.
    Unsupported(String),
}

impl From<std::io::Error> for Header {
    fn from(e: std::io::Error) -> Self {
        Header::Broken(e.to_string())
    }
}

struct Bytes<'a, R> {
    reader: &'a mut R,
    wide: bool,
}

impl<R: Read> Bytes<'_, R> {
    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], Header> {
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> std::result::Result<u32, Header> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> std::result::Result<u64, Header> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A length or count: u32 in GGUF v1, u64 after.
    fn count(&mut self) -> std::result::Result<u64, Header> {
        let n = if self.wide {
            self.u64()?
        } else {
            self.u32()? as u64
        };
        if n > MAX_COUNT {
            return Err(Header::Broken(format!("a count of {n} in the GGUF header")));
        }
        Ok(n)
    }
    fn string(&mut self) -> std::result::Result<String, Header> {
        let n = self.count()? as usize;
        let mut b = vec![0u8; n];
        self.reader.read_exact(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    fn value(&mut self, kind: u32, depth: usize) -> std::result::Result<Value, Header> {
        Ok(match kind {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 if depth < 4 => {
                let item = self.u32()?;
                let n = self.count()?;
                let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    items.push(self.value(item, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(Header::Broken(format!("GGUF value type {other}"))),
        })
    }
}

/// candle's dtype of a GGUF type id (the ones candle reads).
fn dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

fn read_own<R: Read + Seek>(reader: &mut R) -> std::result::Result<Content, Header> {
    let mut b = Bytes { reader, wide: true };
    if &b.array::<4>()? != b"GGUF" {
        return Err(Header::Broken("not a GGUF file".into()));
    }
    let magic = match b.u32()? {
        1 => VersionedMagic::GgufV1,
        2 => VersionedMagic::GgufV2,
        3 => VersionedMagic::GgufV3,
        v => return Err(Header::Broken(format!("GGUF version {v}"))),
    };
    b.wide = magic != VersionedMagic::GgufV1;
    let tensors = b.count()?;
    let entries = b.count()?;
    let mut metadata = HashMap::new();
    for _ in 0..entries {
        let key = b.string()?;
        let kind = b.u32()?;
        metadata.insert(key, b.value(kind, 0)?);
    }
    let mut tensor_infos = HashMap::new();
    for _ in 0..tensors {
        let name = b.string()?;
        let n_dims = b.u32()?;
        if n_dims > 4 {
            return Err(Header::Broken(format!("{name} has {n_dims} dimensions")));
        }
        let mut dims = (0..n_dims)
            .map(|_| b.count().map(|d| d as usize))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        dims.reverse();
        let kind = b.u32()?;
        let offset = b.u64()?;
        match dtype(kind) {
            Some(ggml_dtype) => {
                tensor_infos.insert(
                    name,
                    TensorInfo {
                        ggml_dtype,
                        shape: candle_core::Shape::from(dims),
                        offset,
                    },
                );
            }
            None if kind == TYPE_MXFP4 => {
                let note = std::iter::once(offset)
                    .chain(dims.iter().map(|&d| d as u64))
                    .map(Value::U64)
                    .collect();
                metadata.insert(format!("{MXFP4_KEY}{name}"), Value::Array(note));
            }
            None => {
                return Err(Header::Unsupported(format!(
                    "the GGUF tensor {name} has type {kind}, which this build does not read"
                )))
            }
        }
    }
    let position = b.reader.stream_position()?;
    let alignment = match metadata.get("general.alignment") {
        Some(Value::U32(v)) if *v > 0 => *v as u64,
        _ => 32,
    };
    Ok(Content {
        magic,
        metadata,
        tensor_infos,
        tensor_data_offset: position.div_ceil(alignment) * alignment,
    })
}

/// The bytes of the MXFP4 tensor `info` (17 bytes per 32 values).
pub(crate) fn mxfp4_bytes<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    name: &str,
    info: &Mxfp4Info,
) -> Result<Vec<u8>> {
    let values: usize = info.dims.iter().product();
    let last = info.dims.last().copied().unwrap_or(0);
    if last % 32 != 0 {
        return Err(Error::bad_request(format!(
            "the GGUF's MXFP4 tensor {name} has rows of {last} values, not whole blocks of 32"
        )));
    }
    let mut bytes = vec![0u8; values / 32 * 17];
    reader.seek(SeekFrom::Start(ct.tensor_data_offset + info.offset))?;
    reader
        .read_exact(&mut bytes)
        .map_err(|e| Error::bad_request(format!("cannot read the GGUF tensor {name}: {e}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A GGUF v3 header with one metadata entry, an F32 tensor and an MXFP4 tensor.
    fn header() -> Vec<u8> {
        let mut h = b"GGUF".to_vec();
        let s = |h: &mut Vec<u8>, t: &str| {
            h.extend((t.len() as u64).to_le_bytes());
            h.extend(t.as_bytes());
        };
        h.extend(3u32.to_le_bytes());
        h.extend(2u64.to_le_bytes());
        h.extend(1u64.to_le_bytes());
        s(&mut h, "general.architecture");
        h.extend(8u32.to_le_bytes());
        s(&mut h, "gpt-oss");
        for (name, dims, kind, offset) in [
            ("norm.weight", vec![64u64], 0u32, 0u64),
            ("blk.0.ffn_up_exps.weight", vec![64, 2, 3], TYPE_MXFP4, 256),
        ] {
            s(&mut h, name);
            h.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                h.extend(d.to_le_bytes());
            }
            h.extend(kind.to_le_bytes());
            h.extend(offset.to_le_bytes());
        }
        h
    }

    #[test]
    fn mxfp4_tensors_are_noted_beside_what_candle_reads() {
        let bytes = header();
        assert!(Content::read(&mut Cursor::new(&bytes)).is_err());
        let ct = read(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(ct.tensor_infos.len(), 1);
        assert_eq!(ct.tensor_infos["norm.weight"].shape.dims(), &[64]);
        assert_eq!(
            ct.tensor_data_offset,
            (bytes.len() as u64).div_ceil(32) * 32
        );
        let info = mxfp4_tensor(&ct, "blk.0.ffn_up_exps.weight").unwrap();
        assert_eq!(
            info,
            Mxfp4Info {
                offset: 256,
                dims: vec![3, 2, 64]
            }
        );
        assert!(has_tensor(&ct, "blk.0.ffn_up_exps.weight"));
        assert!(!has_tensor(&ct, "blk.0.ffn_down_exps.weight"));
    }

    #[test]
    fn other_unknown_types_are_a_clear_error() {
        let mut bytes = header();
        let at = bytes.len() - 12;
        bytes[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
        let e = read(&mut Cursor::new(&bytes)).unwrap_err();
        assert!(e.to_string().contains("type 77"), "{e}");
    }
}
