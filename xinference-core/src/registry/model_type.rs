//! The kinds of model Xinference serves, spelled as on the wire (`LLM`, `embedding`, ...).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A model type as Xinference spells it on the wire and in `-t/--model-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ModelType {
    /// Chat and text-generation models.
    #[serde(rename = "LLM")]
    Llm,
    /// Text embedding models.
    #[serde(rename = "embedding")]
    Embedding,
    /// Rerank (cross-encoder) models.
    #[serde(rename = "rerank")]
    Rerank,
    /// Text-to-image models.
    #[serde(rename = "image")]
    Image,
    /// Speech-to-text and text-to-speech models.
    #[serde(rename = "audio")]
    Audio,
    /// Video generation models (no built-ins here).
    #[serde(rename = "video")]
    Video,
    /// User-defined "flexible" models (no built-ins).
    #[serde(rename = "flexible")]
    Flexible,
}

impl ModelType {
    /// Every type, in Xinference's order.
    pub const ALL: [ModelType; 7] = [
        ModelType::Llm,
        ModelType::Embedding,
        ModelType::Rerank,
        ModelType::Image,
        ModelType::Audio,
        ModelType::Video,
        ModelType::Flexible,
    ];

    /// The wire spelling: `LLM`, `embedding`, `rerank`, `image`, `audio`, `video`, `flexible`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Llm => "LLM",
            ModelType::Embedding => "embedding",
            ModelType::Rerank => "rerank",
            ModelType::Image => "image",
            ModelType::Audio => "audio",
            ModelType::Video => "video",
            ModelType::Flexible => "flexible",
        }
    }
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelType {
    type Err = Error;
    /// Parses the wire spelling, case-insensitively (`llm` is accepted for `LLM`).
    fn from_str(s: &str) -> Result<Self> {
        ModelType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "Unsupported model type: {s}; expected one of LLM, embedding, rerank, image, audio, video, flexible"
                ))
            })
    }
}
