//! Downloads from the Hugging Face hub through `hf-hub`'s blocking API. hf-hub writes each file
//! to `<blob>.incomplete`, resumes it with a `Range` request after a broken connection, and
//! renames it only when complete; we also check the final size against the hub's.

use super::LaunchProgress;
use crate::registry::ModelSpec;
use crate::{Error, Result};
use hf_hub::api::sync::{Api, ApiBuilder, ApiRepo};
use hf_hub::{Repo, RepoType};
use std::path::{Path, PathBuf};

/// Fetches the files of `spec` into `$XINFERENCE_HOME/huggingface`, returning
/// `(path inside the repository, local path)` pairs.
pub fn fetch(
    home: &Path,
    spec: &ModelSpec,
    progress: &LaunchProgress,
) -> Result<Vec<(String, PathBuf)>> {
    let api = api(home)?;
    let repo = match &spec.model_revision {
        Some(rev) => Repo::with_revision(spec.model_id.clone(), RepoType::Model, rev.clone()),
        None => Repo::new(spec.model_id.clone(), RepoType::Model),
    };
    let repo = api.repo(repo);
    let names = match &spec.model_file_name {
        Some(file) => vec![file.clone()],
        None => {
            let info = repo
                .info()
                .map_err(|e| hub_error(&spec.model_id, "list the files of", e))?;
            select_files(info.siblings.iter().map(|s| s.rfilename.as_str()))
        }
    };
    if names.is_empty() {
        return Err(Error::bad_request(format!(
            "Repository {} has no model files this build can load",
            spec.model_id
        )));
    }
    progress.expect_files(names.len());
    names
        .into_iter()
        .map(|name| {
            let path = fetch_one(&repo, &name, progress)
                .map_err(|e| e.context(format!("downloading {name} from {}", spec.model_id)))?;
            Ok((name, path))
        })
        .collect()
}

fn api(home: &Path) -> Result<Api> {
    let mut builder = ApiBuilder::from_env()
        .with_cache_dir(home.join("huggingface"))
        .with_progress(false)
        .with_retries(5);
    // hf-hub pastes HF_ENDPOINT before `/{repo}/resolve/...` as is; huggingface_hub strips a
    // trailing slash (`https://hf-mirror.com/` is common), so do the same.
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_owned());
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    builder
        .build()
        .map_err(|e| Error::internal(format!("cannot set up the hub client: {e}")))
}

fn fetch_one(repo: &ApiRepo, name: &str, progress: &LaunchProgress) -> Result<PathBuf> {
    let reporter = HubProgress {
        progress: progress.clone(),
        name: name.to_owned(),
        offset_next: false,
    };
    let path = repo
        .download_with_progress(name, reporter)
        .map_err(|e| hub_error(name, "download", e))?;
    let size = std::fs::metadata(&path)?.len();
    // The size the hub announced, as recorded when the download started.
    let expected = progress.total_bytes(name).unwrap_or(0);
    if expected != 0 && size != expected {
        // Never leave a short file where a later launch would trust it.
        let real = std::fs::canonicalize(&path).unwrap_or(path.clone());
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&real);
        return Err(Error::internal(format!(
            "{name} arrived with {size} bytes, the hub announced {expected}"
        )));
    }
    progress.finish_file(name, size);
    Ok(path)
}

fn hub_error(what: &str, action: &str, e: hf_hub::api::sync::ApiError) -> Error {
    let text = e.to_string();
    if text.contains("404") {
        Error::bad_request(format!(
            "cannot {action} {what}: not found on the hub ({text})"
        ))
    } else {
        Error::internal(format!("cannot {action} {what}: {text}"))
    }
}

/// Chooses which repository files a launch needs: configuration, tokenizer and weights;
/// safetensors when present (then no `.bin`), never ONNX/OpenVINO exports or docs.
pub fn select_files<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let names: Vec<&str> = names.collect();
    let has_safetensors = names.iter().any(|n| n.ends_with(".safetensors"));
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| {
            let lower = n.to_ascii_lowercase();
            let hidden = n.split('/').any(|part| part.starts_with('.'));
            let export = [
                "onnx/",
                "openvino/",
                "coreml/",
                "tf_model",
                "flax_model",
                "rust_model",
            ]
            .iter()
            .any(|p| lower.contains(p));
            let ext = lower.rsplit('.').next().unwrap_or("");
            let wanted = match ext {
                "json" | "txt" | "model" | "tiktoken" | "jinja" | "safetensors" => true,
                "bin" | "pt" | "pth" => !has_safetensors && !lower.contains("training_args"),
                _ => false,
            };
            wanted && !hidden && !export
        })
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

/// Forwards hf-hub's progress calls into the launch progress (which also keeps the size the
/// hub announced, checked once the file is complete).
struct HubProgress {
    progress: LaunchProgress,
    name: String,
    /// hf-hub follows each `init` with `update(offset)`: the bytes already on disk (non-zero
    /// when resuming), an absolute count rather than an increment.
    offset_next: bool,
}

impl hf_hub::api::Progress for HubProgress {
    fn init(&mut self, size: usize, _filename: &str) {
        self.progress.start_file(&self.name, size as u64);
        self.offset_next = true;
    }
    fn update(&mut self, size: usize) {
        if std::mem::take(&mut self.offset_next) {
            self.progress.set_bytes(&self.name, size as u64);
        } else {
            self.progress.add_bytes(&self.name, size as u64);
        }
    }
    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::select_files;

    #[test]
    fn picks_config_tokenizer_and_safetensors_only() {
        let files = [
            ".gitattributes",
            "README.md",
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "onnx/model.onnx",
            "1_Pooling/config.json",
            "tokenizer.json",
            "vocab.txt",
            "openvino/openvino_model.xml",
        ];
        assert_eq!(
            select_files(files.into_iter()),
            [
                "1_Pooling/config.json",
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "vocab.txt"
            ]
        );
    }
}
