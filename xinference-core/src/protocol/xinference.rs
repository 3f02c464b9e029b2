//! Xinference's own request and response shapes (launch, describe, instances, progress).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/models`: what to launch. Unknown keys are kept in `extra` and passed to the engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LaunchRequest {
    /// The registry name of the model (a missing name is a 400 at launch, as in Xinference).
    #[serde(default)]
    pub model_name: String,
    /// The uid to serve it under (default: the model name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_uid: Option<String>,
    /// `LLM` (default), `embedding`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// Engine name (required for LLMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_engine: Option<String>,
    /// `pytorch`, `ggufv2`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_format: Option<String>,
    /// Size in billions: a number or Xinference's string (`"0_5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_size_in_billions: Option<Value>,
    /// Quantization name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// How many copies of the model serve requests (each on its own worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<Value>,
    /// At most this many requests in flight per replica; beyond it, 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_limits: Option<Value>,
    /// Local weights (a file or a folder) instead of the cache or the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    /// GPU count (`"auto"`, an int, or null for CPU). This build runs on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_gpu: Option<Value>,
    /// Hub choice; only `huggingface` (and `auto`) can be served here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_hub: Option<String>,
    /// Every other key: engine keyword arguments.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/models` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LaunchResponse {
    /// The uid the model is served under.
    pub model_uid: String,
}

/// Status of a model instance, as `/v1/models/instances` spells it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum InstanceStatus {
    /// Accepted, not started.
    Creating,
    /// Downloading or loading.
    Loading,
    /// Serving.
    Ready,
    /// Failed to launch; see the error.
    Error,
    /// Being shut down.
    Terminating,
    /// Gone.
    Terminated,
}

/// One row of `GET /v1/models/instances`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceInfo {
    /// Registry name.
    pub model_name: String,
    /// Served uid.
    pub model_uid: String,
    /// Xinference's version string (the cache name).
    pub model_version: String,
    /// Abilities of the family.
    pub model_ability: Vec<String>,
    /// Number of replicas.
    pub replica: usize,
    /// Current status.
    pub status: InstanceStatus,
    /// Unix time the launch was accepted.
    pub instance_created_ts: u64,
    /// Workers per replica (always 1 here).
    pub n_worker: usize,
    /// Why the launch failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/models/{uid}/progress`.
pub type LaunchProgressResponse = ProgressSnapshot;

/// The stage of a launch, as `/v1/models/{uid}/progress` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Waiting to start.
    Pending,
    /// Fetching files from the hub.
    Downloading,
    /// Reading weights into memory.
    Loading,
    /// Serving.
    Ready,
    /// The launch failed.
    Error,
}

/// Bytes done and total of one file being downloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    /// Path of the file inside its repository.
    pub file_name: String,
    /// Bytes on disk so far.
    pub downloaded_bytes: u64,
    /// Size of the file, when known.
    pub total_bytes: u64,
    /// Finished and verified.
    pub done: bool,
}

/// A snapshot of a launch's progress (the hub's `LaunchProgress` takes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressSnapshot {
    /// 0.0 to 1.0.
    pub progress: f64,
    /// What the launch is doing.
    pub stage: Stage,
    /// Per-file download state.
    pub download_files: Vec<FileProgress>,
}

/// A model's description as JSON: the fields of Xinference's `to_description()` for its type
/// (what the runtime produces and `GET /v1/models/{uid}` answers with).
pub type DescriptionMap = Map<String, Value>;

/// A launched model's description, typed: the fields every type has, and the rest of
/// Xinference's `to_description()` (context length, dimensions, languages, ...) in `extra`.
/// It (de)serialises to the same JSON object as the server's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelDescription {
    /// `LLM`, `embedding`, `rerank`, `image`, `audio`, ...
    pub model_type: crate::registry::ModelType,
    /// The registry name.
    #[serde(default)]
    pub model_name: String,
    /// What it can do (`chat`, `generate`, `tools`, `embed`, `rerank`, `text2image`, ...).
    #[serde(default)]
    pub model_ability: Vec<String>,
    /// The engine it runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_engine: Option<String>,
    /// The file format (`ggufv2`, `pytorch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_format: Option<String>,
    /// The number of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    /// Every other field of the description.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ModelDescription {
    /// Reads a description object (a missing or unknown `model_type` is a 500: the server
    /// always sends one).
    pub fn from_json(map: DescriptionMap) -> crate::Result<Self> {
        serde_json::from_value(Value::Object(map))
            .map_err(|e| crate::Error::internal(format!("unexpected model description: {e}")))
    }
    /// The description as the JSON object the server sends.
    pub fn into_json(self) -> DescriptionMap {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
    /// Whether the model has `ability` (`chat`, `tools`, `vision`, ...).
    pub fn has_ability(&self, ability: &str) -> bool {
        self.model_ability.iter().any(|a| a == ability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_description_reads_and_writes_the_server_json() {
        let wire = json!({
            "model_type": "LLM", "model_name": "qwen2.5-instruct", "model_ability": ["generate", "chat"],
            "model_engine": "llama.cpp", "model_format": "ggufv2", "replica": 1,
            "context_length": 32768, "quantization": "q4_k_m",
        });
        let Value::Object(map) = wire.clone() else {
            unreachable!()
        };
        let d = ModelDescription::from_json(map).unwrap();
        assert_eq!(d.model_type, crate::registry::ModelType::Llm);
        assert!(d.has_ability("chat"));
        assert_eq!(d.replica, Some(1));
        assert_eq!(d.extra["context_length"], 32768);
        assert_eq!(Value::Object(d.into_json()), wire);
    }
}
