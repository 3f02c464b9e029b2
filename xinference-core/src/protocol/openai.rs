//! OpenAI-compatible request and response shapes (with Xinference's extras).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `input` of `POST /v1/embeddings`: a string, strings, token ids, or lists of token ids.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    untagged,
    expecting = "input must be a string, a list of strings, a list of token ids, or a list of lists of token ids"
)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One pre-tokenized input.
    Tokens(Vec<u32>),
    /// Several pre-tokenized inputs.
    TokenLists(Vec<Vec<u32>>),
}

impl From<&str> for EmbeddingInput {
    fn from(s: &str) -> Self {
        EmbeddingInput::Text(s.to_owned())
    }
}

impl From<String> for EmbeddingInput {
    fn from(s: String) -> Self {
        EmbeddingInput::Text(s)
    }
}

impl From<Vec<String>> for EmbeddingInput {
    fn from(v: Vec<String>) -> Self {
        EmbeddingInput::Texts(v)
    }
}

impl From<Vec<&str>> for EmbeddingInput {
    fn from(v: Vec<&str>) -> Self {
        EmbeddingInput::Texts(v.into_iter().map(str::to_owned).collect())
    }
}

/// `POST /v1/embeddings` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingRequest {
    /// The model uid.
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Matryoshka truncation of the vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// End-user id (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Xinference's (and vLLM's) cap on tokens per input: `N > 0` keeps the first N tokens
    /// (special tokens included), a negative value means the model's own limit. Inputs are
    /// always cut to the model's limit unless `truncate` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_prompt_tokens: Option<i64>,
    /// `false` makes an input longer than the limit a 400 instead of cutting it (as in
    /// text-embeddings-inference). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// Other keyword arguments.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EmbeddingRequest {
    /// A request to embed `input` with model `model`, every option at its default.
    pub fn new(model: impl Into<String>, input: impl Into<EmbeddingInput>) -> Self {
        EmbeddingRequest {
            model: model.into(),
            input: input.into(),
            encoding_format: None,
            dimensions: None,
            user: None,
            truncate_prompt_tokens: None,
            truncate: None,
            extra: Map::new(),
        }
    }
}

/// One vector of an embedding response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingData {
    /// Position of the input.
    pub index: usize,
    /// Always `embedding`.
    pub object: String,
    /// The vector: floats, or a base64 string when `encoding_format` was `base64`.
    pub embedding: EmbeddingVector,
}

/// An embedding vector as floats or base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// Floats.
    Float(Vec<f32>),
    /// Base64 of little-endian f32.
    Base64(String),
}

/// Token counts of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Tokens read.
    pub prompt_tokens: usize,
    /// Tokens read plus produced.
    pub total_tokens: usize,
}

/// `POST /v1/embeddings` response, in Xinference's shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// The model uid.
    pub model: String,
    /// The replica that served it.
    #[serde(default)]
    pub model_replica: Option<String>,
    /// One vector per input.
    pub data: Vec<EmbeddingData>,
    /// Token counts.
    pub usage: Usage,
}

/// The body of every error answer: `{"detail": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong.
    pub detail: Value,
}
