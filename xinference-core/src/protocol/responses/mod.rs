//! OpenAI Responses API shapes (`POST /v1/responses` and the stored-response routes): the
//! request and its input items, stored-item lists and OpenAI's error body here; the response
//! object and its output items in `object`; the streamed events in `events`. Serde only;
//! the translation over chat is in [`crate::responses`].

mod events;
mod object;

pub use events::{ResponseEvent, ResponseStreamEvent};
pub use object::{
    IncompleteDetails, InputTokensDetails, OutputContent, OutputItem, OutputTokensDetails,
    Response, ResponseError, ResponseUsage, SummaryText,
};

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
