//! OpenAI Responses API shapes (`POST /v1/responses` and the stored-response routes): the
//! request, its input items, the response object, its output items, the streamed events and
//! OpenAI's error body. Serde only; the translation over chat is in [`crate::responses`].

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/responses` request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResponsesRequest {
    /// The model uid.
    pub model: String,
    /// A string (one user message) or a list of input items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<ResponseInput>,
    /// A system message put before the input (not carried over by `previous_response_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Function tools (`{"type": "function", "name", "description", "parameters", "strict"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `auto`, `none`, `required` or `{"type": "function", "name": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Several calls may be made in one answer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// `{"effort": "none" | "minimal" | "low" | "medium" | "high" | "xhigh"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    /// Most tokens to generate (reasoning included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// 0 to 2; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus mass, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Up to 16 string pairs, echoed and stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// An end-user id, echoed and stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Keep the response for `GET /v1/responses/{id}` and `previous_response_id` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Continue the conversation of a stored response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Other fields: the chat path's sampling extras (`stop`, `seed`, `top_k`, ...) are used,
    /// the rest ignored.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: a string, or a list of items.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ResponseInput {
    /// One user message.
    Text(String),
    /// Messages, function calls, their outputs and reasoning items.
    Items(Vec<InputItem>),
}

impl<'de> Deserialize<'de> for ResponseInput {
    /// A string, or items; an item without `type` but with a `role` is a message (the SDK's
    /// "easy input message"). Errors name the item (`input[2]: ...`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(ResponseInput::Text(s)),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, mut item)| {
                    if let Value::Object(map) = &mut item {
                        if !map.contains_key("type") && map.contains_key("role") {
                            map.insert("type".into(), Value::String("message".into()));
                        }
                    }
                    serde_json::from_value(item)
                        .map_err(|e| D::Error::custom(format!("input[{i}]: {e}")))
                })
                .collect::<Result<_, _>>()
                .map(ResponseInput::Items),
            _ => Err(D::Error::custom(
                "input must be a string or a list of items",
            )),
        }
    }
}

/// One input item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputItem {
    /// A message: `user`, `system`, `developer` or `assistant`.
    Message {
        /// `msg_...` (given to every stored item).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Who speaks.
        role: String,
        /// A string or content parts.
        content: MessageContent,
        /// `completed` on stored items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
    /// A function call the model made.
    FunctionCall {
        /// `fc_...`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The id its output refers to.
        call_id: String,
        /// The function.
        name: String,
        /// A JSON object, as a string.
        arguments: String,
        /// `completed` on stored items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
    /// What a function call returned.
    FunctionCallOutput {
        /// `fco_...`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The call it answers.
        call_id: String,
        /// A string, or text parts.
        output: MessageContent,
        /// `completed` on stored items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
    /// A reasoning item passed back (accepted; earlier reasoning is not shown to the model).
    Reasoning {
        /// `rs_...`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Summary texts.
        #[serde(default)]
        summary: Vec<SummaryText>,
        /// The full reasoning text, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<Value>>,
        /// Not produced here; accepted and ignored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
        /// `completed` on stored items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts (`input_text`, `output_text`, `refusal`, `input_image`, `input_file`, ...).
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContentPart {
    /// `input_text`, `output_text`, `refusal`, `input_image`, `input_file`, `input_audio`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The rest (`annotations`, `refusal`, `image_url`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool of the request. Only `function` tools are served.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    /// `function` (others, such as `web_search`, are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Arguments must match the schema exactly (enforced by the grammar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `text`: the output's format.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextConfig {
    /// Plain text (default), any JSON object, or JSON matching a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    /// Other fields (`verbosity`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `text.format`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// Plain text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching `schema`.
    JsonSchema {
        /// The format's name.
        name: String,
        /// A JSON schema object.
        schema: Value,
        /// What the format is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Always enforced here (the grammar makes the output valid by construction).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// `reasoning`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReasoningConfig {
    /// `none` and `minimal` switch a template's thinking off; `low`, `medium`, `high` and
    /// `xhigh` switch it on.
    #[serde(default)]
    pub effort: Option<String>,
    /// Accepted; the summary is the model's reasoning text.
    #[serde(default)]
    pub summary: Option<String>,
}

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

/// The payload of a streamed event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
#[allow(missing_docs)]
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

/// `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputItemList {
    /// `list`.
    pub object: String,
    /// The items of the page.
    pub data: Vec<InputItem>,
    /// Id of the page's first item.
    pub first_id: Option<String>,
    /// Id of the page's last item.
    pub last_id: Option<String>,
    /// More items follow the page.
    pub has_more: bool,
}

/// `DELETE /v1/responses/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeletedResponse {
    /// The deleted response's id.
    pub id: String,
    /// `response.deleted`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorObject {
    /// What went wrong.
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `rate_limit_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when known.
    pub param: Option<String>,
    /// A machine-readable code, when there is one.
    pub code: Option<String>,
}
