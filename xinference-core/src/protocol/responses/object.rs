//! The response object and its output items.

use super::{ReasoningConfig, TextConfig, Tool};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The response object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// `resp_...`.
    pub id: String,
    /// `response`.
    pub object: String,
    /// Unix time.
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: String,
    /// Unix time the answer ended.
    #[serde(default)]
    pub completed_at: Option<u64>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<ResponseError>,
    /// Why it is incomplete.
    #[serde(default)]
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's instructions.
    #[serde(default)]
    pub instructions: Option<String>,
    /// The request's limit.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// The request's metadata (`{}` when none).
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The model uid.
    pub model: String,
    /// Reasoning, message and function-call items, in order.
    pub output: Vec<OutputItem>,
    /// The request's setting.
    pub parallel_tool_calls: bool,
    /// The response this one continues.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// The request's reasoning settings.
    #[serde(default)]
    pub reasoning: Option<ReasoningConfig>,
    /// Whether it is stored.
    pub store: bool,
    /// The request's temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The output format.
    pub text: TextConfig,
    /// The request's tool choice (`auto` when none).
    pub tool_choice: Value,
    /// The request's tools.
    pub tools: Vec<Tool>,
    /// The request's top_p.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Always `disabled`: a conversation too long for the model is an error.
    pub truncation: String,
    /// Token counts (absent until the answer ends).
    #[serde(default)]
    pub usage: Option<ResponseUsage>,
    /// The request's user.
    #[serde(default)]
    pub user: Option<String>,
}

impl Response {
    /// The text of every `output_text` part, joined (the SDK's `output_text`).
    pub fn output_text(&self) -> String {
        let mut text = String::new();
        for item in &self.output {
            if let OutputItem::Message { content, .. } = item {
                for part in content {
                    if let OutputContent::OutputText { text: t, .. } = part {
                        text.push_str(t);
                    }
                }
            }
        }
        text
    }
}

/// `error` of a failed response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseError {
    /// `server_error`, `rate_limit_exceeded`, ...
    pub code: String,
    /// What happened.
    pub message: String,
}

/// `incomplete_details`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncompleteDetails {
    /// `max_output_tokens`.
    pub reason: String,
}

/// `usage`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResponseUsage {
    /// Prompt tokens.
    pub input_tokens: usize,
    /// Cache counts (always 0 here).
    pub input_tokens_details: InputTokensDetails,
    /// Generated tokens.
    pub output_tokens: usize,
    /// Reasoning tokens among them.
    pub output_tokens_details: OutputTokensDetails,
    /// Both.
    pub total_tokens: usize,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InputTokensDetails {
    /// Tokens read from a prompt cache.
    pub cached_tokens: usize,
    /// Tokens written to a prompt cache.
    #[serde(default)]
    pub cache_write_tokens: usize,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OutputTokensDetails {
    /// Tokens of the reasoning text.
    pub reasoning_tokens: usize,
}

/// One output item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The assistant's text.
    Message {
        /// `msg_...`.
        id: String,
        /// `assistant`.
        role: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: String,
        /// `output_text` parts.
        content: Vec<OutputContent>,
    },
    /// A function call to run.
    FunctionCall {
        /// `fc_...`.
        id: String,
        /// The id to answer with a `function_call_output`.
        call_id: String,
        /// The function.
        name: String,
        /// A JSON object, as a string.
        arguments: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: String,
    },
    /// The model's reasoning, as one summary text.
    Reasoning {
        /// `rs_...`.
        id: String,
        /// The reasoning text.
        summary: Vec<SummaryText>,
        /// `in_progress`, `completed` or `incomplete`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
}

impl OutputItem {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            OutputItem::Message { id, .. }
            | OutputItem::FunctionCall { id, .. }
            | OutputItem::Reasoning { id, .. } => id,
        }
    }
}

/// A part of an output message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    /// Text.
    OutputText {
        /// The text.
        text: String,
        /// Always empty.
        #[serde(default)]
        annotations: Vec<Value>,
        /// Always empty.
        #[serde(default)]
        logprobs: Vec<Value>,
    },
    /// A refusal (never produced here; read back from input).
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

impl OutputContent {
    /// An `output_text` part.
    pub fn text(text: impl Into<String>) -> Self {
        OutputContent::OutputText {
            text: text.into(),
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// `{"type": "summary_text", "text": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SummaryText {
    /// `summary_text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
}

impl SummaryText {
    /// A `summary_text` part.
    pub fn new(text: impl Into<String>) -> Self {
        SummaryText {
            kind: "summary_text".into(),
            text: text.into(),
        }
    }
}
