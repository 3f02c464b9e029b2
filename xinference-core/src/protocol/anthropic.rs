//! Anthropic Messages API shapes (`POST /v1/messages`, `GET /v1/models`): requests, answers,
//! stream events and errors, as the official `anthropic` SDK sends and reads them.
//!
//! Only the fields this server understands are typed; unknown fields of a request are
//! ignored, as Anthropic's API ignores unknown block fields such as `cache_control`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `anthropic-version` Xinference speaks (and `anthropic` 0.x and 1.x send).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Every `anthropic-version` accepted: [`ANTHROPIC_VERSION`] and `2026-10-21`, which
/// `anthropic` 2.x sends. The shapes served are the same for both.
pub const ANTHROPIC_VERSIONS: &[&str] = &[ANTHROPIC_VERSION, "2026-10-21"];

/// `POST /v1/messages` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessagesRequest {
    /// The model uid.
    pub model: String,
    /// The conversation: alternating `user` and `assistant` turns.
    pub messages: Vec<InputMessage>,
    /// Most tokens to generate (required by Anthropic).
    pub max_tokens: u64,
    /// The system prompt: a string or a list of text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Strings that end the answer; the one that did is reported as `stop_sequence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus mass, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k, positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Client tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking: `{"type": "enabled", "budget_tokens": n}` or `{"type": "disabled"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// Request metadata (accepted, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Other fields (ignored).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `system`: a string or text blocks.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// Plain text.
    Text(String),
    /// Text blocks, joined with newlines.
    Blocks(Vec<ContentBlockParam>),
}

/// One turn of the conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputMessage {
    /// `user` or `assistant` (`system` is accepted too and joins the system prompt).
    pub role: String,
    /// Text, or content blocks.
    pub content: MessageContent,
}

/// A message's content: a string or blocks.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlockParam>),
}

/// Deserialises a string-or-blocks field, naming the failing block in the error (serde's
/// untagged enums only say that nothing matched).
macro_rules! text_or_blocks {
    ($name:ident, $what:literal) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                match Value::deserialize(d)? {
                    Value::String(s) => Ok($name::Text(s)),
                    Value::Array(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| {
                            serde_json::from_value(item).map_err(|e| {
                                D::Error::custom(format!(concat!($what, " block {}: {}"), i, e))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map($name::Blocks),
                    _ => Err(D::Error::custom(concat!(
                        $what,
                        " must be a string or an array of content blocks"
                    ))),
                }
            }
        }
    };
}

text_or_blocks!(SystemPrompt, "system");
text_or_blocks!(MessageContent, "content");
text_or_blocks!(ToolResultContent, "tool_result content");

/// A content block of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlockParam {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image: refused, the models served read text only.
    Image {
        /// The image source.
        #[serde(default)]
        source: Value,
    },
    /// A document (PDF, ...): refused like images.
    Document {
        /// The document source.
        #[serde(default)]
        source: Value,
    },
    /// A tool call the assistant made (assistant turns).
    ToolUse {
        /// `toolu_...`.
        id: String,
        /// The tool's name.
        name: String,
        /// Its arguments.
        #[serde(default)]
        input: Value,
    },
    /// A tool's answer (user turns).
    ToolResult {
        /// The `tool_use` block answered.
        tool_use_id: String,
        /// A string or text blocks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        /// The tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// The assistant's earlier reasoning: dropped from the prompt.
    Thinking {
        /// The reasoning.
        #[serde(default)]
        thinking: String,
        /// Anthropic's signature (empty from this server).
        #[serde(default)]
        signature: String,
    },
    /// Redacted reasoning: dropped from the prompt.
    RedactedThinking {
        /// Opaque data.
        #[serde(default)]
        data: String,
    },
}

/// A `tool_result`'s content.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ToolResultContent {
    /// Plain text.
    Text(String),
    /// Blocks (text only here).
    Blocks(Vec<ContentBlockParam>),
}

/// A client tool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    /// The tool's name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of its input (required for client tools; server tools have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// `custom` (or absent) for client tools; server tools name a versioned type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `tool_choice`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call (OpenAI's `parallel_tool_calls: false`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call some tool.
    Any {
        /// At most one tool call (OpenAI's `parallel_tool_calls: false`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call this tool.
    Tool {
        /// The tool's name.
        name: String,
        /// At most one tool call (OpenAI's `parallel_tool_calls: false`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tool calls.
    None,
}

/// A content block of an answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// The model's reasoning (from `reasoning_content`); unsigned.
    Thinking {
        /// The reasoning.
        thinking: String,
        /// Always empty: this server does not sign reasoning.
        signature: String,
    },
    /// A tool call.
    ToolUse {
        /// `toolu_...`, or the OpenAI call id.
        id: String,
        /// The tool's name.
        name: String,
        /// Its arguments: always a JSON object.
        input: Value,
    },
}

/// Token counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: usize,
    /// Generated tokens.
    pub output_tokens: usize,
}

/// `POST /v1/messages` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    /// `msg_...`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: String,
    /// The answer's blocks: thinking, then text, then tool calls.
    pub content: Vec<ContentBlock>,
    /// The model uid.
    pub model: String,
    /// `end_turn`, `max_tokens`, `stop_sequence` or `tool_use` (`null` in `message_start`).
    pub stop_reason: Option<String>,
    /// The stop sequence that ended the answer.
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: Usage,
}

/// A streamed delta of a content block.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// More reasoning.
    ThinkingDelta {
        /// The reasoning.
        thinking: String,
    },
    /// A fragment of a tool call's input JSON.
    InputJsonDelta {
        /// The fragment.
        partial_json: String,
    },
}

/// `message_delta`'s delta.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessageDelta {
    /// Why the answer ended.
    pub stop_reason: Option<String>,
    /// The stop sequence that ended it.
    pub stop_sequence: Option<String>,
}

/// `message_delta`'s usage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeltaUsage {
    /// Prompt tokens (known only at the end of a stream here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<usize>,
    /// Generated tokens.
    pub output_tokens: usize,
}

/// The `error` object of an error answer or event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `not_found_error`, `request_too_large`, `rate_limit_error`,
    /// `api_error` or `overloaded_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// An error answer: `{"type": "error", "error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error.
    pub error: ErrorDetail,
}

/// A server-sent event of a streamed answer; its `type` is also the SSE `event:` name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// First: the message, with empty content.
    MessageStart {
        /// The message so far.
        message: Message,
    },
    /// A block begins.
    ContentBlockStart {
        /// Its position in `content`.
        index: usize,
        /// The block, empty.
        content_block: ContentBlock,
    },
    /// Keep-alive.
    Ping,
    /// More of a block.
    ContentBlockDelta {
        /// The block's position.
        index: usize,
        /// What is new.
        delta: BlockDelta,
    },
    /// A block is complete.
    ContentBlockStop {
        /// The block's position.
        index: usize,
    },
    /// The stop reason and final usage.
    MessageDelta {
        /// Stop reason and sequence.
        delta: MessageDelta,
        /// Token counts.
        usage: DeltaUsage,
    },
    /// Last.
    MessageStop,
    /// A failure after the stream started; the stream ends with it.
    Error {
        /// The error.
        error: ErrorDetail,
    },
}

impl StreamEvent {
    /// The event's `type`, used as the SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Error { .. } => "error",
        }
    }
}

/// One model of `GET /anthropic/v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// Always `model`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The model uid.
    pub id: String,
    /// The model's registry name.
    pub display_name: String,
    /// RFC 3339 launch time (the epoch: launch times are not kept).
    pub created_at: String,
    /// Xinference's extra fields (`object`, `created`, `max_tokens`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /anthropic/v1/models` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelList {
    /// The models of this page.
    pub data: Vec<ModelInfo>,
    /// More pages follow.
    pub has_more: bool,
    /// The first id of this page.
    pub first_id: Option<String>,
    /// The last id of this page.
    pub last_id: Option<String>,
}
