//! The streamed events of a response, numbered by `sequence_number`.

use super::{OutputContent, OutputItem, Response, SummaryText};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A streamed event: its payload and its place in the stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseStreamEvent {
    /// 0, 1, 2, ... in the order sent.
    pub sequence_number: u64,
    /// The event (its `type` and fields).
    #[serde(flatten)]
    pub event: ResponseEvent,
}

impl ResponseStreamEvent {
    /// The event's `type`.
    pub fn name(&self) -> &'static str {
        self.event.name()
    }
}

/// The payload of a streamed event. Fields, as OpenAI names them: `response` the response as it
/// stands; `output_index` the item's place in `output` and `item_id` its id; `content_index` /
/// `summary_index` the part within the item; `delta` new text; `text` / `arguments` the whole
/// text; `logprobs` always empty.
// The fields are the same on every variant and documented once, above.
#[allow(missing_docs)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum ResponseEvent {
    /// The response exists (`in_progress`, no output).
    #[serde(rename = "response.created")]
    Created { response: Box<Response> },
    /// Generation started.
    #[serde(rename = "response.in_progress")]
    InProgress { response: Box<Response> },
    /// The whole response, `completed`.
    #[serde(rename = "response.completed")]
    Completed { response: Box<Response> },
    /// The whole response, `incomplete` (it hit `max_output_tokens`).
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Box<Response> },
    /// The response failed after it started; `response.error` says why.
    #[serde(rename = "response.failed")]
    Failed { response: Box<Response> },
    /// An output item starts.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        output_index: usize,
        item: OutputItem,
    },
    /// An output item is complete.
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        output_index: usize,
        item: OutputItem,
    },
    /// A content part of a message starts.
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: OutputContent,
    },
    /// A content part of a message is complete.
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: OutputContent,
    },
    /// New text.
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
        #[serde(default)]
        logprobs: Vec<Value>,
    },
    /// The whole text of a part.
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        text: String,
        #[serde(default)]
        logprobs: Vec<Value>,
    },
    /// A reasoning summary part starts.
    #[serde(rename = "response.reasoning_summary_part.added")]
    ReasoningSummaryPartAdded {
        item_id: String,
        output_index: usize,
        summary_index: usize,
        part: SummaryText,
    },
    /// New reasoning text.
    #[serde(rename = "response.reasoning_summary_text.delta")]
    ReasoningSummaryTextDelta {
        item_id: String,
        output_index: usize,
        summary_index: usize,
        delta: String,
    },
    /// The whole reasoning text.
    #[serde(rename = "response.reasoning_summary_text.done")]
    ReasoningSummaryTextDone {
        item_id: String,
        output_index: usize,
        summary_index: usize,
        text: String,
    },
    /// A reasoning summary part is complete.
    #[serde(rename = "response.reasoning_summary_part.done")]
    ReasoningSummaryPartDone {
        item_id: String,
        output_index: usize,
        summary_index: usize,
        part: SummaryText,
    },
    /// A fragment of a function call's arguments.
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        item_id: String,
        output_index: usize,
        delta: String,
    },
    /// A function call's whole arguments.
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        item_id: String,
        output_index: usize,
        name: String,
        arguments: String,
    },
    /// A failure outside a response.
    #[serde(rename = "error")]
    Error {
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
}

impl ResponseEvent {
    /// The event's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            ResponseEvent::Created { .. } => "response.created",
            ResponseEvent::InProgress { .. } => "response.in_progress",
            ResponseEvent::Completed { .. } => "response.completed",
            ResponseEvent::Incomplete { .. } => "response.incomplete",
            ResponseEvent::Failed { .. } => "response.failed",
            ResponseEvent::OutputItemAdded { .. } => "response.output_item.added",
            ResponseEvent::OutputItemDone { .. } => "response.output_item.done",
            ResponseEvent::ContentPartAdded { .. } => "response.content_part.added",
            ResponseEvent::ContentPartDone { .. } => "response.content_part.done",
            ResponseEvent::OutputTextDelta { .. } => "response.output_text.delta",
            ResponseEvent::OutputTextDone { .. } => "response.output_text.done",
            ResponseEvent::ReasoningSummaryPartAdded { .. } => {
                "response.reasoning_summary_part.added"
            }
            ResponseEvent::ReasoningSummaryTextDelta { .. } => {
                "response.reasoning_summary_text.delta"
            }
            ResponseEvent::ReasoningSummaryTextDone { .. } => {
                "response.reasoning_summary_text.done"
            }
            ResponseEvent::ReasoningSummaryPartDone { .. } => {
                "response.reasoning_summary_part.done"
            }
            ResponseEvent::FunctionCallArgumentsDelta { .. } => {
                "response.function_call_arguments.delta"
            }
            ResponseEvent::FunctionCallArgumentsDone { .. } => {
                "response.function_call_arguments.done"
            }
            ResponseEvent::Error { .. } => "error",
        }
    }
}
