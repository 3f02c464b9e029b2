//! The local model cache: `$XINFERENCE_HOME/cache/<cache name>/`, holding links to the
//! downloaded files and a manifest that is written last.

use crate::registry::{write_atomically, ModelFamily, ModelSpec};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MANIFEST: &str = ".xinference-cache.json";

/// A file of a cache entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedFile {
    /// Path inside the repository (and inside the cache folder).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// What a cache folder holds; its presence marks the folder complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheManifest {
    /// Family name.
    pub model_name: String,
    /// `LLM`, `embedding`, ...
    pub model_type: String,
    /// Spec format.
    pub model_format: String,
    /// Spec size, when the family has sizes.
    pub model_size_in_billions: Option<String>,
    /// Spec quantization.
    pub quantization: String,
    /// Hub repository id.
    pub model_id: String,
    /// Hub name.
    pub model_hub: String,
    /// The files, with their sizes.
    pub files: Vec<CachedFile>,
}

/// One row of `GET /v1/cache/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheEntry {
    /// Family name.
    pub model_name: String,
    /// Spec size.
    pub model_size_in_billions: Option<String>,
    /// Spec format.
    pub model_format: String,
    /// Spec quantization.
    pub quantization: String,
    /// The cache folder name (Xinference's "model version").
    pub model_version: String,
    /// The cache folder.
    pub path: String,
    /// Where the files really are (the hub download folder).
    pub real_path: String,
    /// The machine holding the cache.
    pub actor_ip_address: String,
}

/// The manifest of `dir`, when the entry is complete: every listed file present at its size.
pub fn read_valid(dir: &Path) -> Option<CacheManifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let manifest: CacheManifest = serde_json::from_str(&text).ok()?;
    let complete = manifest.files.iter().all(|f| {
        std::fs::metadata(dir.join(&f.name))
            .map(|m| m.len() == f.size)
            .unwrap_or(false)
    });
    complete.then_some(manifest)
}

/// Links downloaded files into `dir` and writes the manifest last.
pub fn populate(
    dir: &Path,
    family: &ModelFamily,
    spec: &ModelSpec,
    files: &[(String, PathBuf)],
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut listed = Vec::new();
    for (name, source) in files {
        let target = dir.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(&target);
        let source = std::fs::canonicalize(source)?;
        link_or_copy(&source, &target)?;
        listed.push(CachedFile {
            name: name.clone(),
            size: std::fs::metadata(&source)?.len(),
        });
    }
    let manifest = CacheManifest {
        model_name: family.name.clone(),
        model_type: family.model_type.as_str().to_owned(),
        model_format: spec.model_format.clone(),
        model_size_in_billions: spec.model_size_in_billions.clone(),
        quantization: spec.quantization.clone(),
        model_id: spec.model_id.clone(),
        model_hub: spec.model_hub.clone(),
        files: listed,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::internal(format!("cannot write cache manifest: {e}")))?;
    write_atomically(&dir.join(MANIFEST), &text)
}

fn link_or_copy(source: &Path, target: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(source, target).is_ok() {
            return Ok(());
        }
    }
    std::fs::copy(source, target)?;
    Ok(())
}

/// Complete cache entries under `$XINFERENCE_HOME/cache`, optionally only one family's.
pub fn list_cached(home: &Path, model_name: Option<&str>) -> Vec<CacheEntry> {
    let Ok(entries) = std::fs::read_dir(home.join("cache")) else {
        return Vec::new();
    };
    let mut out: Vec<CacheEntry> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let dir = e.path();
            let manifest = read_valid(&dir)?;
            if model_name.is_some_and(|n| n != manifest.model_name) {
                return None;
            }
            let real_path = manifest
                .files
                .iter()
                .find_map(|f| std::fs::canonicalize(dir.join(&f.name)).ok())
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| dir.clone());
            Some(CacheEntry {
                model_name: manifest.model_name,
                model_size_in_billions: manifest.model_size_in_billions,
                model_format: manifest.model_format,
                quantization: manifest.quantization,
                model_version: e.file_name().to_string_lossy().into_owned(),
                path: dir.display().to_string(),
                real_path: real_path.display().to_string(),
                actor_ip_address: "127.0.0.1".to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.model_version.cmp(&b.model_version));
    out
}
