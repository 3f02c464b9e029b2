//! GGUFs split in parts (llama.cpp's `gguf-split`: `name-00001-of-00003.gguf`, ...): the first
//! part holds the metadata and each part its own tensors. They load as one file: a reader over
//! the parts laid end to end, and one [`Content`] whose tensor offsets point into it.

use super::joined::{Joined, Pieces};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The parts of a split GGUF named by its first part (`-00001-of-0000N.gguf`), in order; just
/// `path` when it is not a first part.
pub(super) fn part_paths(path: &Path) -> Result<Vec<PathBuf>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some((stem, count)) = split_name(name) else {
        return Ok(vec![path.to_path_buf()]);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    (1..=count)
        .map(|i| {
            let part = dir.join(format!("{stem}-{i:05}-of-{count:05}.gguf"));
            if part.is_file() {
                Ok(part)
            } else {
                Err(Error::bad_request(format!(
                    "the split GGUF {name} has {count} parts, but {} is missing",
                    part.display()
                )))
            }
        })
        .collect()
}

/// `("name", 3)` for `name-00001-of-00003.gguf`; `None` for other names.
fn split_name(name: &str) -> Option<(&str, usize)> {
    let base = name.strip_suffix(".gguf")?;
    let (rest, count) = base.rsplit_once("-of-")?;
    let (stem, index) = rest.rsplit_once('-')?;
    let all_digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(index) || !all_digits(count) || index != "00001" {
        return None;
    }
    let count: usize = count.parse().ok()?;
    (count >= 1).then_some((stem, count))
}

/// The parts' files, read by [`Joined`].
pub(super) struct PartFiles(Vec<File>);

impl Pieces for PartFiles {
    fn read_piece(&mut self, index: usize, within: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let file = &mut self.0[index];
        file.seek(SeekFrom::Start(within))?;
        file.read(buf)
    }
}

/// The parts laid end to end as one seekable file.
pub(super) type Parts = Joined<PartFiles>;

/// Opens a GGUF (a single file or the first of its parts): its content, with the tensors of
/// every part, and a reader for them.
pub(super) fn open(path: &Path) -> Result<(Content, Parts)> {
    let paths = part_paths(path)?;
    let mut files = Vec::with_capacity(paths.len());
    let mut lens = Vec::with_capacity(paths.len());
    let mut merged: Option<Content> = None;
    let mut len = 0u64;
    for part in &paths {
        let mut file = File::open(part)
            .map_err(|e| Error::bad_request(format!("cannot open {}: {e}", part.display())))?;
        let ct = super::gguf_header::read(&mut file).map_err(|e| {
            Error::bad_request(format!("{} is not a valid GGUF file: {e}", part.display()))
        })?;
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::bad_request(format!("cannot read {}: {e}", part.display())))?;
        match merged.as_mut() {
            None => merged = Some(ct),
            Some(first) => {
                // Offsets of this part's tensors, counted from the first part's data start.
                let shift = len + ct.tensor_data_offset - first.tensor_data_offset;
                for (name, mut info) in ct.tensor_infos {
                    info.offset += shift;
                    first.tensor_infos.insert(name, info);
                }
                // MXFP4 tensors' notes (`gguf_header.rs`): `[offset, dims...]`.
                for (key, value) in ct.metadata {
                    if let (true, Value::Array(mut note)) =
                        (key.starts_with(super::gguf_header::MXFP4_KEY), value)
                    {
                        if let Some(Value::U64(offset)) = note.first_mut() {
                            *offset += shift;
                        }
                        first.metadata.insert(key, Value::Array(note));
                    }
                }
            }
        }
        lens.push(size);
        files.push(file);
        len += size;
    }
    let content = merged.ok_or_else(|| Error::bad_request("no GGUF file given"))?;
    Ok((content, Joined::new(PartFiles(files), lens)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_are_recognised() {
        assert_eq!(
            split_name("Qwen3-30B-A3B-Q4_K_M-00001-of-00002.gguf"),
            Some(("Qwen3-30B-A3B-Q4_K_M", 2))
        );
        assert_eq!(split_name("model-00002-of-00002.gguf"), None);
        assert_eq!(split_name("model-Q4_K_M.gguf"), None);
        assert_eq!(split_name("model-1-of-2.gguf"), None);
    }

    #[test]
    fn parts_read_as_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (i, bytes) in [b"abc".as_slice(), b"", b"defg"].iter().enumerate() {
            let p = dir.path().join(format!("p{i}"));
            std::fs::write(&p, bytes).unwrap();
            files.push(File::open(&p).unwrap());
        }
        let mut parts = Joined::new(PartFiles(files), [3, 0, 4]);
        let mut all = String::new();
        parts.read_to_string(&mut all).unwrap();
        assert_eq!(all, "abcdefg");
        parts.seek(SeekFrom::End(-3)).unwrap();
        let mut tail = [0u8; 2];
        parts.read_exact(&mut tail).unwrap();
        assert_eq!(&tail, b"ef");
    }
}
