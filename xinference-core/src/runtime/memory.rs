//! Whether a launch fits in memory, checked before any replica is loaded: every replica loads
//! its own copy of the weights, so `replica: 100000` would otherwise load until the kernel's
//! out-of-memory killer ends the whole server.

use crate::{Error, Result};
use std::path::Path;

/// File endings that hold weights (what a replica reads into memory).
const WEIGHT_ENDINGS: [&str; 6] = [".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx"];

/// Bytes of weight files at `path`: the file itself, or the weight files in the folder and
/// its sub-folders (diffusers pipelines keep theirs one level down), links followed.
pub fn weight_bytes(path: &Path) -> u64 {
    fn walk(dir: &Path, depth: usize) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| {
                let path = entry.path();
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_dir() && depth > 0 => walk(&path, depth - 1),
                    Ok(meta) if meta.is_file() && is_weights(&path) => meta.len(),
                    _ => 0,
                }
            })
            .sum()
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(meta) if meta.is_dir() => walk(path, 2),
        _ => 0,
    }
}

fn is_weights(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    WEIGHT_ENDINGS.iter().any(|e| name.ends_with(e)) || name.contains(".gguf.part")
}

/// The memory the system can still give (`MemAvailable`), when the platform says.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A 400 when `replicas` copies of `weights` bytes cannot fit in `available` bytes.
pub fn check_fits(weights: u64, replicas: usize, available: Option<u64>) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let needed = weights.saturating_mul(replicas as u64);
    if needed > available {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(Error::bad_request(format!(
            "{replicas} replica(s) of this model need about {:.2} GiB of memory for their weights \
             ({:.2} GiB each) and {:.2} GiB is available; launch fewer replicas",
            gib(needed),
            gib(weights),
            gib(available)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_replicas_are_refused_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), vec![0u8; 5000]).unwrap();
        std::fs::create_dir(dir.path().join("unet")).unwrap();
        std::fs::write(dir.path().join("unet/w.safetensors"), vec![0u8; 500]).unwrap();
        let weights = weight_bytes(dir.path());
        assert_eq!(weights, 1500);
        check_fits(weights, 2, Some(3000)).unwrap();
        let e = check_fits(weights, 3, Some(3000)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadRequest);
        assert!(e.message().contains("3 replica"), "{e}");
        check_fits(weights, 100_000, None).unwrap();
        assert!(available_bytes().is_some_and(|b| b > 0));
    }
}
