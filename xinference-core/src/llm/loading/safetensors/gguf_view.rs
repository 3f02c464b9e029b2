//! A safetensors checkpoint seen as a GGUF file: the metadata our decoder's family files read
//! (`{arch}.block_count`, ...), tensors under llama.cpp's names (`blk.{i}.attn_q.weight`, ...)
//! and a reader that serves their bytes. Most tensors are the memory-mapped bytes of the
//! checkpoint as stored (f32, f16 or bf16; the decoder keeps that type and multiplies it in
//! f32, `kernels::float`); only what llama.cpp's converter changes is built here: rows permuted
//! for interleaved rotary, norms shifted (Gemma's `1 +`), experts side by side, transposes.
//! The decoder copies each tensor once into its own memory while loading; the maps are dropped
//! after (one copy of the weights).

use super::super::joined::{Joined, Pieces};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;
use candle_core::safetensors::MmapedSafetensors;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a run of the view's bytes comes from.
enum Segment {
    /// Bytes `start..start + len` of the checkpoint's tensor `name`.
    Stored {
        name: String,
        start: usize,
        len: usize,
    },
    /// Bytes built while converting.
    Owned(Vec<u8>),
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Segment::Stored { len, .. } => *len,
            Segment::Owned(v) => v.len(),
        }
    }
}

/// The GGUF view under construction: metadata, tensor infos and the byte layout.
pub(super) struct View {
    st: Arc<MmapedSafetensors>,
    metadata: HashMap<String, Value>,
    infos: HashMap<String, TensorInfo>,
    segments: Vec<Segment>,
    len: u64,
}

/// A stored tensor's dtype, shape and bytes.
pub(super) struct Stored<'a> {
    /// The name the checkpoint stores it under ([`View::stored_name`]).
    pub(super) name: String,
    pub(super) dtype: GgmlDType,
    pub(super) shape: Vec<usize>,
    pub(super) bytes: &'a [u8],
}

impl Stored<'_> {
    /// The values widened to f32.
    pub(super) fn to_f32(&self) -> Vec<f32> {
        let ty = match self.dtype {
            GgmlDType::F16 => 2,
            GgmlDType::BF16 => 1,
            _ => 0,
        };
        match ty {
            2 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            1 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => self
                .bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        }
    }

    /// Bytes per value.
    pub(super) fn elem(&self) -> usize {
        if self.dtype == GgmlDType::F32 {
            4
        } else {
            2
        }
    }
}

impl View {
    /// An empty view of the checkpoint `st`, for the GGUF architecture `arch`.
    pub(super) fn new(st: MmapedSafetensors, arch: &str) -> Self {
        let mut view = View {
            st: Arc::new(st),
            metadata: HashMap::new(),
            infos: HashMap::new(),
            segments: Vec::new(),
            len: 0,
        };
        view.string("general.architecture", arch);
        view.metadata.insert(
            crate::llm::architectures::EXACT_KEY.to_owned(),
            Value::Bool(true),
        );
        view
    }

    /// Whether the checkpoint has the tensor `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.stored_name(name).is_some()
    }

    /// The name the checkpoint stores the text model's tensor `name` (`model.layers.0...`,
    /// `lm_head.weight`) under: itself, or, in a vision-language checkpoint, inside its language
    /// model (`model.language_model.layers.0...` as transformers 5 saves Qwen3.5 and Gemma 3,
    /// `language_model.model.layers.0...` as transformers 4 saved Gemma 3).
    fn stored_name(&self, name: &str) -> Option<String> {
        let mut candidates = vec![name.to_owned()];
        if let Some(rest) = name.strip_prefix("model.") {
            candidates.push(format!("model.language_model.{rest}"));
            candidates.push(format!("language_model.model.{rest}"));
        } else {
            candidates.push(format!("language_model.{name}"));
        }
        candidates.into_iter().find(|n| self.st.get(n).is_ok())
    }

    /// The checkpoint's tensor `name` (a 400 naming it when it is missing or not a float).
    pub(super) fn stored(&self, name: &str) -> Result<Stored<'_>> {
        let (stored_name, view) = self
            .stored_name(name)
            .and_then(|n| self.st.get(&n).ok().map(|view| (n, view)))
            .ok_or_else(|| {
                Error::bad_request(format!("the safetensors weights have no tensor `{name}`"))
            })?;
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => GgmlDType::F32,
            safetensors::Dtype::F16 => GgmlDType::F16,
            safetensors::Dtype::BF16 => GgmlDType::BF16,
            other => {
                return Err(Error::bad_request(format!(
                    "tensor `{name}` is stored as {other:?}; this build reads f32, f16 and bf16"
                )))
            }
        };
        Ok(Stored {
            name: stored_name,
            dtype,
            shape: view.shape().to_vec(),
            bytes: view.data(),
        })
    }

    /// Metadata `{key}` = `value`.
    pub(super) fn u32(&mut self, key: &str, value: usize) {
        self.metadata
            .insert(key.to_owned(), Value::U32(value as u32));
    }

    /// Metadata `{key}` = `value`.
    pub(super) fn f32(&mut self, key: &str, value: f64) {
        self.metadata
            .insert(key.to_owned(), Value::F32(value as f32));
    }

    /// Metadata `{key}` = `value`.
    pub(super) fn bool(&mut self, key: &str, value: bool) {
        self.metadata.insert(key.to_owned(), Value::Bool(value));
    }

    /// Metadata `{key}` = the array of `values`.
    pub(super) fn bools(&mut self, key: &str, values: &[bool]) {
        let values = values.iter().map(|&b| Value::Bool(b)).collect();
        self.metadata.insert(key.to_owned(), Value::Array(values));
    }

    /// Metadata `{key}` = the array of `values` (per-layer settings).
    pub(super) fn u32s(&mut self, key: &str, values: &[usize]) {
        let values = values.iter().map(|&v| Value::U32(v as u32)).collect();
        self.metadata.insert(key.to_owned(), Value::Array(values));
    }

    /// Metadata `{key}` = `value`.
    pub(super) fn string(&mut self, key: &str, value: &str) {
        self.metadata
            .insert(key.to_owned(), Value::String(value.to_owned()));
    }

    fn push(&mut self, gguf: &str, dtype: GgmlDType, shape: Vec<usize>, segments: Vec<Segment>) {
        let offset = self.len;
        for s in segments {
            self.len += s.len() as u64;
            self.segments.push(s);
        }
        self.infos.insert(
            gguf.to_owned(),
            TensorInfo {
                ggml_dtype: dtype,
                shape: candle_core::Shape::from(shape),
                offset,
            },
        );
    }

    /// The tensor `hf` as it is stored, under the name `gguf`.
    pub(super) fn tensor(&mut self, gguf: &str, hf: &str) -> Result<()> {
        let s = self.stored(hf)?;
        let (dtype, shape, len) = (s.dtype, s.shape.clone(), s.bytes.len());
        let segment = Segment::Stored {
            name: s.name,
            start: 0,
            len,
        };
        self.push(gguf, dtype, shape, vec![segment]);
        Ok(())
    }

    /// [`View::tensor`] when the checkpoint has `hf`; `Ok(false)` when it has not.
    pub(super) fn optional(&mut self, gguf: &str, hf: &str) -> Result<bool> {
        if !self.has(hf) {
            return Ok(false);
        }
        self.tensor(gguf, hf)?;
        Ok(true)
    }

    /// Bytes built here, under the name `gguf`.
    pub(super) fn owned(
        &mut self,
        gguf: &str,
        dtype: GgmlDType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    ) {
        self.push(gguf, dtype, shape, vec![Segment::Owned(bytes)]);
    }

    /// f32 values built here, under the name `gguf`.
    pub(super) fn owned_f32(&mut self, gguf: &str, shape: Vec<usize>, values: &[f32]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.owned(gguf, GgmlDType::F32, shape, bytes);
    }

    /// The norm weights `hf` plus `shift` (Gemma stores `w` for `1 + w`), in f32.
    pub(super) fn norm(&mut self, gguf: &str, hf: &str, shift: f32) -> Result<()> {
        let s = self.stored(hf)?;
        let values: Vec<f32> = s.to_f32().into_iter().map(|v| v + shift).collect();
        let shape = s.shape.clone();
        self.owned_f32(gguf, shape, &values);
        Ok(())
    }

    /// The rows of `hf` (a q or k projection's weight or bias, `heads` heads) reordered from
    /// Hugging Face's rotary pairing (`i`, `i + d/2`) to the interleaved one (`2i`, `2i + 1`)
    /// that llama.cpp's Llama graph rotates: convert_hf_to_gguf's `permute`.
    pub(super) fn permuted(&mut self, gguf: &str, hf: &str, heads: usize) -> Result<()> {
        let s = self.stored(hf)?;
        let rows = s.shape.first().copied().unwrap_or(0);
        if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
            return Err(Error::bad_request(format!(
                "tensor `{hf}` has {rows} rows, not {heads} heads of an even size"
            )));
        }
        let row_bytes = s.bytes.len() / rows;
        let d = rows / heads;
        let mut out = Vec::with_capacity(s.bytes.len());
        for h in 0..heads {
            for i in 0..d / 2 {
                for j in 0..2 {
                    let from = h * d + j * (d / 2) + i;
                    out.extend_from_slice(&s.bytes[from * row_bytes..(from + 1) * row_bytes]);
                }
            }
        }
        let (dtype, shape) = (s.dtype, s.shape.clone());
        self.owned(gguf, dtype, shape, out);
        Ok(())
    }

    /// The matrices `hf` (all of one dtype and shape `[rows, cols]`) side by side as one
    /// `[experts, rows, cols]` tensor (the experts of a block), straight from the maps.
    pub(super) fn stacked(&mut self, gguf: &str, hf: &[String]) -> Result<()> {
        let mut segments = Vec::with_capacity(hf.len());
        let mut first: Option<(GgmlDType, Vec<usize>)> = None;
        for name in hf {
            let s = self.stored(name)?;
            match &first {
                None => first = Some((s.dtype, s.shape.clone())),
                Some((dtype, shape)) if *dtype == s.dtype && *shape == s.shape => {}
                Some(_) => {
                    return Err(Error::bad_request(format!(
                        "expert tensor `{name}` differs in type or shape from the first expert's"
                    )))
                }
            }
            segments.push(Segment::Stored {
                name: s.name,
                start: 0,
                len: s.bytes.len(),
            });
        }
        let (dtype, shape) =
            first.ok_or_else(|| Error::bad_request(format!("no experts for {gguf}")))?;
        let mut dims = vec![hf.len()];
        dims.extend(shape);
        self.push(gguf, dtype, dims, segments);
        Ok(())
    }

    /// Part `part` of `parts` equal row blocks of each expert of the stored `[experts, rows,
    /// cols]` tensor `hf`, as one `[experts, rows / parts, cols]` tensor (Qwen3.5 MoE's fused
    /// `gate_up_proj`, gate rows first, split as llama.cpp's converter splits it), straight
    /// from the maps.
    pub(super) fn expert_rows_part(
        &mut self,
        gguf: &str,
        hf: &str,
        part: usize,
        parts: usize,
    ) -> Result<()> {
        let s = self.stored(hf)?;
        let [experts, rows, cols] = s.shape[..] else {
            return Err(Error::bad_request(format!(
                "tensor `{hf}` has shape {:?}, not [experts, rows, cols]",
                s.shape
            )));
        };
        if parts == 0 || !rows.is_multiple_of(parts) || part >= parts {
            return Err(Error::bad_request(format!(
                "tensor `{hf}` has {rows} rows per expert, not {parts} equal parts"
            )));
        }
        let len = rows / parts * cols * s.elem();
        let segments = (0..experts)
            .map(|e| Segment::Stored {
                name: s.name.clone(),
                start: (e * parts + part) * len,
                len,
            })
            .collect();
        let dtype = s.dtype;
        self.push(gguf, dtype, vec![experts, rows / parts, cols], segments);
        Ok(())
    }

    /// The stored `[experts, a, b]` tensor `hf` transposed to `[experts, b', a]`, keeping of the
    /// `b` columns those at `start`, `start + step`, ... (gpt-oss stores its experts as
    /// `x · W`, `[in, out]`, with gate and up columns interleaved). A 2-D `[experts, b]` bias
    /// keeps the same columns. Built here (one copy).
    pub(super) fn experts_transposed(
        &mut self,
        gguf: &str,
        hf: &str,
        start: usize,
        step: usize,
    ) -> Result<()> {
        let s = self.stored(hf)?;
        let e = s.elem();
        let (dims, out) = match s.shape[..] {
            [experts, a, b] if b > start => {
                let kept = (b - start).div_ceil(step);
                let mut out = Vec::with_capacity(experts * kept * a * e);
                for x in 0..experts {
                    for r in 0..kept {
                        let col = start + r * step;
                        for c in 0..a {
                            let at = ((x * a + c) * b + col) * e;
                            out.extend_from_slice(&s.bytes[at..at + e]);
                        }
                    }
                }
                (vec![experts, kept, a], out)
            }
            [experts, b] if b > start => {
                let kept = (b - start).div_ceil(step);
                let mut out = Vec::with_capacity(experts * kept * e);
                for x in 0..experts {
                    for r in 0..kept {
                        let at = (x * b + start + r * step) * e;
                        out.extend_from_slice(&s.bytes[at..at + e]);
                    }
                }
                (vec![experts, kept], out)
            }
            _ => {
                return Err(Error::bad_request(format!(
                    "tensor `{hf}` has shape {:?}, not [experts, rows, cols]",
                    s.shape
                )))
            }
        };
        let dtype = s.dtype;
        self.owned(gguf, dtype, dims, out);
        Ok(())
    }

    /// The GGUF content and its reader.
    pub(super) fn finish(self) -> (Content, ViewReader) {
        let content = Content {
            magic: VersionedMagic::GgufV3,
            metadata: self.metadata,
            tensor_infos: self.infos,
            tensor_data_offset: 0,
        };
        let lens: Vec<u64> = self.segments.iter().map(|s| s.len() as u64).collect();
        let reader = Joined::new(
            ViewSegments {
                st: self.st,
                segments: self.segments,
            },
            lens,
        );
        (content, reader)
    }
}

/// The view's segments, read by [`Joined`].
pub(super) struct ViewSegments {
    st: Arc<MmapedSafetensors>,
    segments: Vec<Segment>,
}

impl Pieces for ViewSegments {
    fn read_piece(&mut self, index: usize, within: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let within = within as usize;
        let bytes = match &self.segments[index] {
            Segment::Stored { name, start, len } => {
                let view = self.st.get(name).map_err(std::io::Error::other)?;
                &view.data()[*start..*start + *len][within..]
            }
            Segment::Owned(bytes) => &bytes[within..],
        };
        let n = buf.len().min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }
}

/// The view's bytes as one seekable file.
pub(super) type ViewReader = Joined<ViewSegments>;
