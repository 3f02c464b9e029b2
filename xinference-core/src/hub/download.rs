//! Downloads from the Hugging Face hub: the files a launch needs, each one through
//! [`super::transfer`] (resumed, size- and SHA-256-checked, retried), into
//! `$XINFERENCE_HOME/huggingface` in huggingface_hub's layout.

use super::client::HubClient;
use super::transfer::{fetch_file, RepoFolder};
use super::LaunchProgress;
use crate::registry::ModelSpec;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Fetches the files of `spec` into `$XINFERENCE_HOME/huggingface`, returning
/// `(path inside the repository, local path)` pairs.
pub fn fetch(
    home: &Path,
    spec: &ModelSpec,
    progress: &LaunchProgress,
) -> Result<Vec<(String, PathBuf)>> {
    let hub = HubClient::from_env();
    let revision = spec.model_revision.as_deref().unwrap_or("main");
    let names = match &spec.model_file_name {
        Some(file) => vec![file.clone()],
        None => select_files(
            hub.list_files(&spec.model_id, revision)?
                .iter()
                .map(String::as_str),
        ),
    };
    if names.is_empty() {
        return Err(Error::bad_request(format!(
            "Repository {} has no model files this build can load",
            spec.model_id
        )));
    }
    progress.expect_files(names.len());
    let folder = RepoFolder::new(&home.join("huggingface"), &spec.model_id);
    names
        .into_iter()
        .map(|name| {
            let path = fetch_file(&hub, &folder, &spec.model_id, revision, &name, progress)
                .map_err(|e| e.context(format!("downloading {name} from {}", spec.model_id)))?;
            Ok((name, path))
        })
        .collect()
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
