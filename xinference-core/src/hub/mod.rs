//! Model files: where a launch finds its weights.
//!
//! Resolution order: an explicit `model_path`, a spec's `model_uri`, the local cache
//! `$XINFERENCE_HOME/cache/<name>`, then a download from the Hugging Face hub (our own
//! downloader, `client.rs` + `transfer.rs`, honouring `HF_ENDPOINT`, `HF_TOKEN` and
//! `HF_HUB_OFFLINE`). A downloaded file is only renamed into place once its size and SHA-256
//! match the hub's; a cache entry is only trusted once its manifest is written, which
//! happens after every file arrived whole.

mod cache;
mod client;
mod download;
mod no_proxy;
mod progress;
mod transfer;

pub use cache::{list_cached, CacheEntry, CacheManifest};
pub use progress::{FileProgress, LaunchProgress, ProgressSnapshot, Stage};

use crate::registry::{ModelFamily, ModelSpec, ModelType};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The cache folder name of a spec, as Xinference names it:
/// `<name>-<format>-<size>b-<quantization>` for LLMs, `<name>` for other types.
pub fn cache_name(family: &ModelFamily, spec: &ModelSpec) -> String {
    match family.model_type {
        ModelType::Llm => format!(
            "{}-{}-{}b-{}",
            family.name,
            spec.model_format,
            spec.model_size_in_billions.as_deref().unwrap_or("0"),
            spec.quantization
        ),
        _ => family.name.clone(),
    }
}

/// Finds (or fetches) the files of `spec`, reporting download progress into `progress`.
/// Returns a directory holding the model's files, or the single weights file for
/// single-file formats when `model_path` names one.
pub fn resolve_model_files(
    home: &Path,
    family: &ModelFamily,
    spec: &ModelSpec,
    model_path: Option<&Path>,
    progress: &LaunchProgress,
) -> Result<PathBuf> {
    if let Some(path) = model_path {
        return existing_path(path, "model_path");
    }
    if let Some(uri) = &spec.model_uri {
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        return existing_path(Path::new(path), "model_uri");
    }
    let cache_dir = home.join("cache").join(cache_name(family, spec));
    if let Some(manifest) = cache::read_valid(&cache_dir) {
        for f in &manifest.files {
            progress.finish_file(&f.name, f.size);
        }
        return Ok(cache_dir);
    }
    if offline() {
        return Err(Error::bad_request(format!(
            "The files of model {} ({}) are not in the cache {} and HF_HUB_OFFLINE is set; \
             launch with model_path or unset HF_HUB_OFFLINE",
            family.name,
            spec.model_id,
            cache_dir.display()
        )));
    }
    if spec.model_id.is_empty() {
        return Err(Error::bad_request(format!(
            "Model {} has no model_id to download from and no model_uri",
            family.name
        )));
    }
    progress.set_stage(Stage::Downloading);
    let files = download::fetch(home, spec, progress)?;
    cache::populate(&cache_dir, family, spec, &files)?;
    Ok(cache_dir)
}

fn existing_path(path: &Path, what: &str) -> Result<PathBuf> {
    if path.exists() {
        Ok(path.to_path_buf())
    } else {
        Err(Error::bad_request(format!(
            "{what} {} does not exist",
            path.display()
        )))
    }
}

/// `HF_HUB_OFFLINE=1` (or `true`): never touch the network.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}
