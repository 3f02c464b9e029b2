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
pub type LaunchProgressResponse = crate::hub::ProgressSnapshot;

/// A model's description: the fields of Xinference's `to_description()` for its type, as JSON.
pub type ModelDescription = Map<String, Value>;
