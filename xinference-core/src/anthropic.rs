//! The Anthropic Messages API as a translation over the chat capability.
//!
//! A [`MessagesRequest`] becomes an OpenAI-shaped [`ChatCompletionRequest`]
//! ([`to_chat_request`]); the answer comes back through [`to_message`] (whole) or an
//! [`EventTranslator`] (streamed). All three are pure, so they are tested without a model;
//! [`Runtime::messages`] strings them together.
//!
//! Choices worth knowing:
//! - `tool_use` blocks of a stream are sent whole, after the text, in the order of their
//!   OpenAI index: OpenAI tool-call fragments may interleave, and an Anthropic block must be
//!   complete before the next one starts (Xinference does the same).
//! - `reasoning_content` becomes a `thinking` block with an empty `signature`: this server
//!   does not sign reasoning. `thinking` blocks sent back in a conversation are dropped.
//! - A tool call whose arguments are not a JSON object gets `input: {}` (as Xinference).
//! - `disable_parallel_tool_use` becomes OpenAI's `parallel_tool_calls: false`.
//! - `stop_reason` is `stop_sequence` only for a string of the request's `stop_sequences`; a
//!   model's own stop strings end the turn (`end_turn`).

use crate::protocol::anthropic::{
    BlockDelta, ContentBlock, ContentBlockParam, DeltaUsage, ErrorDetail, ErrorResponse, Message,
    MessageContent, MessageDelta, MessagesRequest, StreamEvent, SystemPrompt, ToolChoice,
    ToolResultContent, Usage,
};
use crate::protocol::chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, GenerationFields, StopSpec,
    StreamOptions,
};
use crate::runtime::{ChatOutput, ChunkStream};
use crate::{Error, ErrorKind, Result, Runtime};
use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A Messages answer: whole, or a stream of events.
pub enum MessagesOutput {
    /// `stream: false`.
    Whole(Message),
    /// `stream: true`: events in order; an `Err` item is a failure after the stream started
    /// (send it as an `error` event, see [`error_response`]).
    Stream(ChunkStream<StreamEvent>),
}

impl Runtime {
    /// `POST /v1/messages`: the Anthropic Messages API, served by [`Runtime::chat`].
    pub async fn messages(&self, request: MessagesRequest) -> Result<MessagesOutput> {
        let stop_sequences = request.stop_sequences.clone().unwrap_or_default();
        let model = request.model.clone();
        let chat = to_chat_request(request)?;
        Ok(match self.chat(chat).await? {
            ChatOutput::Whole(completion) => {
                MessagesOutput::Whole(to_message(completion, &stop_sequences))
            }
            ChatOutput::Stream(chunks) => {
                MessagesOutput::Stream(translate_stream(chunks, model, stop_sequences))
            }
        })
    }
}

/// The stream of Anthropic events for a stream of chat chunks: [`EventTranslator`] applied
/// to each chunk, its closing events at the end; a failure ends the stream.
pub fn translate_stream(
    chunks: ChunkStream<ChatCompletionChunk>,
    model: String,
    stop_sequences: Vec<String>,
) -> ChunkStream<StreamEvent> {
    let translator = EventTranslator::new(new_message_id(), model, stop_sequences);
    let start = translator.start();
    let body = chunks
        .map(Some)
        .chain(stream::once(async { None }))
        .scan((translator, false), |(t, failed), item| {
            if *failed {
                return futures::future::ready(None);
            }
            let out: Vec<Result<StreamEvent>> = match item {
                Some(Ok(chunk)) => t.chunk(&chunk).into_iter().map(Ok).collect(),
                Some(Err(e)) => {
                    *failed = true;
                    vec![Err(e)]
                }
                None => t.finish().into_iter().map(Ok).collect(),
            };
            futures::future::ready(Some(stream::iter(out)))
        })
        .flatten();
    stream::iter(start.into_iter().map(Ok)).chain(body).boxed()
}

fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

fn new_tool_id() -> String {
    format!("toolu_{}", uuid::Uuid::new_v4().simple())
}

fn invalid(message: impl Into<String>) -> Error {
    Error::bad_request(message)
}

/// Claude Code puts a billing marker in a text block; it is not part of the prompt.
fn is_billing_header(text: &str) -> bool {
    text.starts_with("x-anthropic-billing-header")
}

/// The text of text-only blocks, joined with newlines; `what` names the field in errors.
fn text_of_blocks(blocks: &[ContentBlockParam], what: &str) -> Result<String> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlockParam::Text { text } if !is_billing_header(text) => {
                parts.push(text.as_str())
            }
            ContentBlockParam::Text { .. } => {}
            other => return Err(unsupported_block(other, &format!("{what}[{j}]"))),
        }
    }
    Ok(parts.join("\n"))
}

fn block_type(block: &ContentBlockParam) -> &'static str {
    match block {
        ContentBlockParam::Text { .. } => "text",
        ContentBlockParam::Image { .. } => "image",
        ContentBlockParam::Document { .. } => "document",
        ContentBlockParam::ToolUse { .. } => "tool_use",
        ContentBlockParam::ToolResult { .. } => "tool_result",
        ContentBlockParam::Thinking { .. } => "thinking",
        ContentBlockParam::RedactedThinking { .. } => "redacted_thinking",
    }
}

fn unsupported_block(block: &ContentBlockParam, at: &str) -> Error {
    match block {
        ContentBlockParam::Image { .. } | ContentBlockParam::Document { .. } => invalid(format!(
            "{at}: `{}` content blocks are not supported: the models served here read text only",
            block_type(block)
        )),
        other => invalid(format!(
            "{at}: a `{}` block is not allowed here",
            block_type(other)
        )),
    }
}

fn check_range(name: &str, value: Option<f32>, low: f32, high: f32) -> Result<()> {
    match value {
        Some(v) if !(low..=high).contains(&v) => Err(invalid(format!(
            "{name} must be between {low} and {high}, not {v}"
        ))),
        _ => Ok(()),
    }
}

/// The OpenAI-shaped chat request that serves an Anthropic Messages request. Everything the
/// chat path cannot serve is a 400 here (images, server tools, bad ranges).
pub fn to_chat_request(request: MessagesRequest) -> Result<ChatCompletionRequest> {
    let model = request.model.trim().to_owned();
    if model.is_empty() {
        return Err(invalid("model: a model uid is required"));
    }
    if request.max_tokens == 0 {
        return Err(invalid("max_tokens: must be at least 1"));
    }
    if request.messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    check_range("temperature", request.temperature, 0.0, 1.0)?;
    check_range("top_p", request.top_p, 0.0, 1.0)?;
    if request.top_k.is_some_and(|k| k <= 0) {
        return Err(invalid("top_k must be a positive integer"));
    }

    let mut system = Vec::new();
    match &request.system {
        Some(SystemPrompt::Text(s)) if !s.is_empty() => system.push(s.clone()),
        Some(SystemPrompt::Blocks(blocks)) => {
            let text = text_of_blocks(blocks, "system")?;
            if !text.is_empty() {
                system.push(text);
            }
        }
        _ => {}
    }
    let mut messages = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "system" => {
                let text = match &m.content {
                    MessageContent::Text(s) => s.clone(),
                    MessageContent::Blocks(b) => text_of_blocks(b, &format!("{at}.content"))?,
                };
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" | "assistant" => messages.extend(convert_message(&m.role, &m.content, &at)?),
            other => {
                return Err(invalid(format!(
                    "{at}.role: `{other}` is not a role; use `user` or `assistant`"
                )))
            }
        }
    }
    if !system.is_empty() {
        messages.insert(0, json!({"role": "system", "content": system.join("\n")}));
    }
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(invalid(
            "messages: at least one user or assistant message is required",
        ));
    }

    let tools = match &request.tools {
        Some(tools) if !tools.is_empty() => {
            let mut out = Vec::new();
            for (i, tool) in tools.iter().enumerate() {
                if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
                    return Err(invalid(format!(
                        "tools[{i}]: server tools (`{kind}`) are not supported; give client tools with an input_schema"
                    )));
                }
                let Some(schema) = tool.input_schema.clone().filter(Value::is_object) else {
                    return Err(invalid(format!(
                        "tools[{i}] (`{}`): input_schema must be a JSON schema object",
                        tool.name
                    )));
                };
                let mut function = Map::new();
                function.insert("name".into(), json!(tool.name));
                if let Some(d) = &tool.description {
                    function.insert("description".into(), json!(d));
                }
                function.insert("parameters".into(), schema);
                out.push(json!({"type": "function", "function": function}));
            }
            Some(out)
        }
        _ => None,
    };
    let mut extra = Map::new();
    let single_call = match &request.tool_choice {
        Some(ToolChoice::Auto {
            disable_parallel_tool_use,
        })
        | Some(ToolChoice::Any {
            disable_parallel_tool_use,
        })
        | Some(ToolChoice::Tool {
            disable_parallel_tool_use,
            ..
        }) => disable_parallel_tool_use.unwrap_or(false),
        _ => false,
    };
    if single_call {
        extra.insert("parallel_tool_calls".into(), json!(false));
    }
    let tool_choice = match &request.tool_choice {
        None => None,
        Some(ToolChoice::Auto { .. }) => Some(json!("auto")),
        Some(ToolChoice::Any { .. }) => Some(json!("required")),
        Some(ToolChoice::None) => Some(json!("none")),
        Some(ToolChoice::Tool { name, .. }) => {
            let known = request.tools.iter().flatten().any(|t| t.name == *name);
            if !known {
                return Err(invalid(format!(
                    "tool_choice names the tool `{name}`, which is not in tools"
                )));
            }
            Some(json!({"type": "function", "function": {"name": name}}))
        }
    };

    let mut kwargs = Map::new();
    if let Some(thinking) = &request.thinking {
        match thinking.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let budget = thinking.get("budget_tokens").and_then(Value::as_u64);
                match budget {
                    Some(b) if b < 1024 => {
                        return Err(invalid(
                            "thinking.budget_tokens must be greater than or equal to 1024",
                        ))
                    }
                    Some(b) if b >= request.max_tokens => {
                        return Err(invalid("thinking.budget_tokens must be less than max_tokens"))
                    }
                    Some(_) => {}
                    None => {
                        return Err(invalid(
                            "thinking.budget_tokens: a positive integer is required when thinking is enabled",
                        ))
                    }
                }
                kwargs.insert("enable_thinking".into(), json!(true));
                kwargs.insert("thinking".into(), json!(true));
                kwargs.insert("thinking_budget".into(), json!(budget));
            }
            Some("disabled") => {
                kwargs.insert("enable_thinking".into(), json!(false));
                kwargs.insert("thinking".into(), json!(false));
            }
            _ => return Err(invalid("thinking.type must be `enabled` or `disabled`")),
        }
    }

    let stop = request
        .stop_sequences
        .clone()
        .filter(|s| !s.is_empty())
        .map(StopSpec::Many);
    Ok(ChatCompletionRequest {
        model,
        messages,
        generation: GenerationFields {
            max_tokens: Some(request.max_tokens),
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            stop,
            stream: request.stream,
            stream_options: request.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            ..GenerationFields::default()
        },
        logprobs: None,
        top_logprobs: None,
        tools,
        tool_choice,
        chat_template_kwargs: (!kwargs.is_empty()).then_some(kwargs),
        extra,
    })
}

/// One Anthropic turn as OpenAI messages: an assistant turn is one message (text and
/// `tool_calls`); a user turn is its `tool` results first, then its text.
fn convert_message(role: &str, content: &MessageContent, at: &str) -> Result<Vec<Value>> {
    let blocks = match content {
        MessageContent::Text(s) => return Ok(vec![json!({"role": role, "content": s})]),
        MessageContent::Blocks(blocks) => blocks,
    };
    let mut text = Vec::new();
    let mut tool_calls = Vec::new();
    let mut tool_results = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match block {
            ContentBlockParam::Text { text: t } => {
                if !is_billing_header(t) {
                    text.push(t.as_str());
                }
            }
            ContentBlockParam::ToolUse { id, name, input } if role == "assistant" => {
                let arguments = if input.is_null() {
                    "{}".to_owned()
                } else {
                    input.to_string()
                };
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            ContentBlockParam::ToolResult {
                tool_use_id,
                content,
                is_error,
            } if role == "user" => {
                let mut result = match content {
                    None => String::new(),
                    Some(ToolResultContent::Text(s)) => s.clone(),
                    Some(ToolResultContent::Blocks(b)) => {
                        text_of_blocks(b, &format!("{here}.content"))?
                    }
                };
                if *is_error == Some(true) {
                    result = format!("Error: {result}");
                }
                tool_results.push(json!({
                    "role": "tool",
                    "tool_call_id": tool_use_id,
                    "content": result,
                }));
            }
            ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking { .. }
                if role == "assistant" => {}
            other => return Err(unsupported_block(other, &here)),
        }
    }
    let text = text.join("\n");
    if role == "assistant" {
        let mut m = json!({
            "role": "assistant",
            "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
        });
        if !tool_calls.is_empty() {
            m["tool_calls"] = Value::Array(tool_calls);
        }
        return Ok(vec![m]);
    }
    let mut out = tool_results;
    if !text.is_empty() || out.is_empty() {
        out.push(json!({"role": "user", "content": text}));
    }
    Ok(out)
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason` and the stop string that ended the
/// answer (counted only when it is one of the request's `stop_sequences`).
pub fn stop_reason(
    finish_reason: &str,
    stop_sequence: Option<&str>,
    requested: &[String],
) -> (String, Option<String>) {
    let matched = stop_sequence.filter(|s| requested.iter().any(|r| r == s));
    match (finish_reason, matched) {
        ("tool_calls", _) => ("tool_use".into(), None),
        ("length", _) => ("max_tokens".into(), None),
        (_, Some(s)) => ("stop_sequence".into(), Some(s.to_owned())),
        _ => ("end_turn".into(), None),
    }
}

/// A tool call's `input`: its arguments when they are a JSON object, else `{}`.
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// The Anthropic message for a whole chat answer: thinking, text, then tool calls.
pub fn to_message(completion: ChatCompletion, stop_sequences: &[String]) -> Message {
    let mut content = Vec::new();
    let (mut finish, mut matched) = ("stop".to_owned(), None);
    if let Some(choice) = completion.choices.into_iter().next() {
        let m = choice.message;
        if let Some(thinking) = m.reasoning_content.filter(|s| !s.is_empty()) {
            content.push(ContentBlock::Thinking {
                thinking,
                signature: String::new(),
            });
        }
        if let Some(text) = m.content.filter(|s| !s.is_empty()) {
            content.push(ContentBlock::Text { text });
        }
        for call in m.tool_calls.unwrap_or_default() {
            content.push(ContentBlock::ToolUse {
                id: if call.id.is_empty() {
                    new_tool_id()
                } else {
                    call.id
                },
                name: call.function.name,
                input: tool_input(&call.function.arguments),
            });
        }
        finish = choice.finish_reason;
        matched = choice.stop_sequence;
    }
    let (reason, stop_sequence) = stop_reason(&finish, matched.as_deref(), stop_sequences);
    Message {
        id: new_message_id(),
        kind: "message".into(),
        role: "assistant".into(),
        content,
        model: completion.model,
        stop_reason: Some(reason),
        stop_sequence,
        usage: Usage {
            input_tokens: completion.usage.prompt_tokens,
            output_tokens: completion.usage.completion_tokens,
        },
    }
}

/// What the open block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
}

/// A tool call being collected from its fragments.
#[derive(Debug, Default)]
struct PendingTool {
    id: Option<String>,
    name: String,
    fragments: Vec<String>,
}

/// Turns the chunks of a streamed chat answer into Anthropic stream events, in Anthropic's
/// order: `message_start`; per block `content_block_start`, deltas, `content_block_stop`
/// (a `ping` after the first start); then `message_delta` and `message_stop`.
///
/// Thinking and text stream as they come; each switch between them closes the open block.
/// Tool-call fragments are collected by their OpenAI index and sent, whole and in index order,
/// when the answer ends.
#[derive(Debug)]
pub struct EventTranslator {
    id: String,
    model: String,
    stop_sequences: Vec<String>,
    next_index: usize,
    open: Option<Open>,
    pinged: bool,
    tools: BTreeMap<usize, PendingTool>,
    finish_reason: Option<String>,
    stop_sequence: Option<String>,
    input_tokens: Option<usize>,
    output_tokens: usize,
}

impl EventTranslator {
    /// A translator for the message `id` (`msg_...`) of `model`.
    pub fn new(id: String, model: String, stop_sequences: Vec<String>) -> Self {
        EventTranslator {
            id,
            model,
            stop_sequences,
            next_index: 0,
            open: None,
            pinged: false,
            tools: BTreeMap::new(),
            finish_reason: None,
            stop_sequence: None,
            input_tokens: None,
            output_tokens: 0,
        }
    }

    /// The first event: `message_start`, with empty content and zero usage (the prompt's
    /// length is reported in `message_delta`).
    pub fn start(&self) -> Vec<StreamEvent> {
        vec![StreamEvent::MessageStart {
            message: Message {
                id: self.id.clone(),
                kind: "message".into(),
                role: "assistant".into(),
                content: Vec::new(),
                model: self.model.clone(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage::default(),
            },
        }]
    }

    fn start_block(&mut self, block: ContentBlock, out: &mut Vec<StreamEvent>) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block: block,
        });
        if !self.pinged {
            self.pinged = true;
            out.push(StreamEvent::Ping);
        }
        index
    }

    fn close_open(&mut self, out: &mut Vec<StreamEvent>) {
        if self.open.take().is_some() {
            out.push(StreamEvent::ContentBlockStop {
                index: self.next_index - 1,
            });
        }
    }

    /// Streams `delta` into a block of kind `kind`, opening one (and closing another) first
    /// when needed.
    fn stream_into(&mut self, kind: Open, delta: BlockDelta, out: &mut Vec<StreamEvent>) {
        if self.open != Some(kind) {
            self.close_open(out);
            let block = match kind {
                Open::Thinking => ContentBlock::Thinking {
                    thinking: String::new(),
                    signature: String::new(),
                },
                Open::Text => ContentBlock::Text {
                    text: String::new(),
                },
            };
            self.start_block(block, out);
            self.open = Some(kind);
        }
        out.push(StreamEvent::ContentBlockDelta {
            index: self.next_index - 1,
            delta,
        });
    }

    /// The events for one chat chunk.
    pub fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if let Some(usage) = &chunk.usage {
            self.input_tokens = Some(usage.prompt_tokens);
            self.output_tokens = usage.completion_tokens;
        }
        let Some(choice) = chunk.choices.first() else {
            return out;
        };
        let delta = &choice.delta;
        if let Some(thinking) = delta.reasoning_content.as_ref().filter(|s| !s.is_empty()) {
            self.stream_into(
                Open::Thinking,
                BlockDelta::ThinkingDelta {
                    thinking: thinking.clone(),
                },
                &mut out,
            );
        }
        if let Some(text) = delta.content.as_ref().filter(|s| !s.is_empty()) {
            self.stream_into(
                Open::Text,
                BlockDelta::TextDelta { text: text.clone() },
                &mut out,
            );
        }
        for call in delta.tool_calls.iter().flatten() {
            let pending = self.tools.entry(call.index).or_default();
            if let Some(id) = call.id.as_ref().filter(|s| !s.is_empty()) {
                pending.id = Some(id.clone());
            }
            if let Some(f) = &call.function {
                if let Some(name) = f.name.as_ref().filter(|s| !s.is_empty()) {
                    pending.name = name.clone();
                }
                if let Some(a) = f.arguments.as_ref().filter(|s| !s.is_empty()) {
                    pending.fragments.push(a.clone());
                }
            }
        }
        if let Some(finish) = &choice.finish_reason {
            self.finish_reason = Some(finish.clone());
            self.stop_sequence = choice.stop_sequence.clone();
        }
        out
    }

    /// The closing events, once the chunks have ended: the open block's stop, the tool calls,
    /// `message_delta` and `message_stop`.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.close_open(&mut out);
        for (_, tool) in std::mem::take(&mut self.tools) {
            let index = self.start_block(
                ContentBlock::ToolUse {
                    id: tool.id.unwrap_or_else(new_tool_id),
                    name: tool.name,
                    input: json!({}),
                },
                &mut out,
            );
            for partial_json in tool.fragments {
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::InputJsonDelta { partial_json },
                });
            }
            out.push(StreamEvent::ContentBlockStop { index });
        }
        if !self.pinged {
            self.pinged = true;
            out.push(StreamEvent::Ping);
        }
        let (stop_reason, stop_sequence) = stop_reason(
            self.finish_reason.as_deref().unwrap_or("stop"),
            self.stop_sequence.as_deref(),
            &self.stop_sequences,
        );
        out.push(StreamEvent::MessageDelta {
            delta: MessageDelta {
                stop_reason: Some(stop_reason),
                stop_sequence,
            },
            usage: DeltaUsage {
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
            },
        });
        out.push(StreamEvent::MessageStop);
        out
    }
}

/// Anthropic's HTTP status and error `type` for a failure of `kind`.
pub fn error_status(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::BadRequest | ErrorKind::Unprocessable | ErrorKind::NotImplemented => {
            (400, "invalid_request_error")
        }
        ErrorKind::NotFound => (404, "not_found_error"),
        ErrorKind::PayloadTooLarge => (413, "request_too_large"),
        ErrorKind::Overloaded => (429, "rate_limit_error"),
        ErrorKind::NotReady => (503, "overloaded_error"),
        ErrorKind::Cancelled => (499, "api_error"),
        _ => (500, "api_error"),
    }
}

/// The Anthropic error body for `error`.
pub fn error_response(error: &Error) -> ErrorResponse {
    ErrorResponse {
        kind: "error".into(),
        error: ErrorDetail {
            kind: error_status(error.kind()).1.into(),
            message: error.message().into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chat::{
        AssistantMessage, ChatChoice, ChatChunkChoice, ChatDelta, CompletionUsage, FunctionCall,
        FunctionCallDelta, ToolCall, ToolCallDelta,
    };

    fn request(body: Value) -> MessagesRequest {
        serde_json::from_value(body).expect("a valid Messages request")
    }

    fn base(extra: Value) -> Value {
        let mut body = json!({
            "model": "qwen",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hello"}],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    fn chat(extra: Value) -> ChatCompletionRequest {
        to_chat_request(request(base(extra))).expect("translates")
    }

    fn rejected(extra: Value) -> Error {
        to_chat_request(request(base(extra))).expect_err("must be rejected")
    }

    #[test]
    fn maps_a_plain_request_with_a_string_system_prompt() {
        let c = chat(json!({
            "system": "Be brief.",
            "stop_sequences": ["END"],
            "temperature": 0,
            "top_p": 0.5,
            "top_k": 7,
        }));
        assert_eq!(c.model, "qwen");
        assert_eq!(
            c.messages,
            vec![
                json!({"role": "system", "content": "Be brief."}),
                json!({"role": "user", "content": "hello"}),
            ]
        );
        let g = &c.generation;
        assert_eq!(g.max_tokens, Some(64));
        assert_eq!(g.temperature, Some(0.0));
        assert_eq!(g.top_p, Some(0.5));
        assert_eq!(g.top_k, Some(7));
        assert_eq!(g.stop, Some(StopSpec::Many(vec!["END".into()])));
        assert!(!g.stream && g.stream_options.is_none());
        assert!(c.tools.is_none() && c.tool_choice.is_none() && c.chat_template_kwargs.is_none());
    }

    #[test]
    fn streaming_asks_for_usage() {
        let c = chat(json!({"stream": true}));
        assert!(c.generation.stream);
        assert_eq!(
            c.generation.stream_options,
            Some(StreamOptions {
                include_usage: true
            })
        );
    }

    #[test]
    fn system_blocks_and_system_turns_join_the_system_prompt() {
        let c = chat(json!({
            "system": [
                {"type": "text", "text": "x-anthropic-billing-header: ignored"},
                {"type": "text", "text": "Be concise.", "cache_control": {"type": "ephemeral"}},
            ],
            "messages": [
                {"role": "system", "content": "Use metric units."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
        }));
        assert_eq!(
            c.messages,
            vec![
                json!({"role": "system", "content": "Be concise.\nUse metric units."}),
                json!({"role": "user", "content": "a\nb"}),
            ]
        );
    }

    #[test]
    fn maps_tools_tool_choice_and_a_tool_history() {
        let c = chat(json!({
            "tools": [{
                "name": "get_weather",
                "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": ""},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Lyon"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2",
                     "content": [{"type": "text", "text": "rain"}, {"type": "text", "text": "12C"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_3", "content": "no such city", "is_error": true},
                    {"type": "text", "text": "Summarise."},
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_4", "name": "get_weather", "input": {"city": "Nice"}},
                ]},
            ],
        }));
        assert_eq!(c.extra.get("parallel_tool_calls"), Some(&json!(false)));
        assert_eq!(
            c.tools,
            Some(vec![json!({"type": "function", "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }})])
        );
        assert_eq!(
            c.tool_choice,
            Some(json!({"type": "function", "function": {"name": "get_weather"}}))
        );
        let call = |id: &str, city: &str| {
            json!({"id": id, "type": "function", "function": {
                "name": "get_weather", "arguments": json!({"city": city}).to_string()}})
        };
        assert_eq!(
            c.messages,
            vec![
                json!({"role": "user", "content": "Weather in Paris?"}),
                json!({"role": "assistant", "content": "Let me check.",
                       "tool_calls": [call("toolu_1", "Paris"), call("toolu_2", "Lyon")]}),
                json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}),
                json!({"role": "tool", "tool_call_id": "toolu_2", "content": "rain\n12C"}),
                json!({"role": "tool", "tool_call_id": "toolu_3", "content": "Error: no such city"}),
                json!({"role": "user", "content": "Summarise."}),
                json!({"role": "assistant", "content": null, "tool_calls": [call("toolu_4", "Nice")]}),
            ]
        );
        // The arguments string is the input object as JSON.
        let args = c.messages[1]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap(),
            json!({"city": "Paris"})
        );
    }

    #[test]
    fn maps_each_tool_choice() {
        let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
        for (choice, want) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ] {
            let c = chat(json!({"tools": tools, "tool_choice": choice}));
            assert_eq!(c.tool_choice, Some(want));
        }
    }

    #[test]
    fn thinking_becomes_template_kwargs() {
        let c = chat(
            json!({"max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        );
        assert_eq!(
            c.chat_template_kwargs,
            Some(
                json!({"enable_thinking": true, "thinking": true, "thinking_budget": 1024})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        let c = chat(json!({"thinking": {"type": "disabled"}}));
        assert_eq!(
            c.chat_template_kwargs.unwrap()["enable_thinking"],
            json!(false)
        );
    }

    #[test]
    fn rejects_what_cannot_be_served_with_a_400() {
        for (extra, needle) in [
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]}),
                "image",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": [{"type": "image", "source": {}}]}]}]}),
                "image",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
                "document",
            ),
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "role",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]}),
                "tool_use",
            ),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"model": " "}), "model"),
            (json!({"temperature": 1.1}), "temperature"),
            (json!({"top_p": -0.1}), "top_p"),
            (json!({"top_k": 0}), "top_k"),
            (json!({"tools": [{"name": "f"}]}), "input_schema"),
            (
                json!({"tools": [{"name": "web_search", "type": "web_search_20250305"}]}),
                "server tools",
            ),
            (
                json!({"tools": [{"name": "f", "input_schema": {"type": "object"}}],
                    "tool_choice": {"type": "tool", "name": "g"}}),
                "`g`",
            ),
            (
                json!({"max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 512}}),
                "budget_tokens",
            ),
            (
                json!({"max_tokens": 1024, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
                "budget_tokens",
            ),
            (json!({"thinking": {"type": "sometimes"}}), "thinking"),
        ] {
            let e = rejected(extra.clone());
            assert_eq!(e.kind(), ErrorKind::BadRequest, "{extra}: {e}");
            assert!(
                e.message().contains(needle),
                "{extra}: `{e}` lacks `{needle}`"
            );
        }
    }

    #[test]
    fn malformed_blocks_name_the_block() {
        let e = serde_json::from_value::<MessagesRequest>(base(json!({
            "messages": [{"role": "user", "content": [{"type": "text", "text": "ok"}, {"type": "video"}]}]
        })))
        .unwrap_err()
        .to_string();
        assert!(e.contains("content block 1") && e.contains("video"), "{e}");
        let e = serde_json::from_value::<MessagesRequest>(json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}]
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_tokens"), "{e}");
    }

    fn completion(message: AssistantMessage, finish: &str, stop: Option<&str>) -> ChatCompletion {
        ChatCompletion {
            id: "chatcmpl-1".into(),
            object: "chat.completion".into(),
            created: 0,
            model: "qwen".into(),
            choices: vec![ChatChoice {
                index: 0,
                message,
                logprobs: None,
                finish_reason: finish.into(),
                stop_sequence: stop.map(str::to_owned),
            }],
            usage: CompletionUsage {
                prompt_tokens: 12,
                completion_tokens: 7,
                total_tokens: 19,
            },
        }
    }

    fn text_answer(text: &str) -> AssistantMessage {
        AssistantMessage {
            role: "assistant".into(),
            content: Some(text.into()),
            reasoning_content: None,
            tool_calls: None,
        }
    }

    fn tool_call(id: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: arguments.into(),
            },
        }
    }

    #[test]
    fn maps_a_text_answer_and_its_stop_reasons() {
        let m = to_message(completion(text_answer("Paris."), "stop", None), &[]);
        assert!(m.id.starts_with("msg_"), "{}", m.id);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({
                "id": m.id, "type": "message", "role": "assistant", "model": "qwen",
                "content": [{"type": "text", "text": "Paris."}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 7},
            })
        );
        let stops = vec!["END".to_owned()];
        let m = to_message(completion(text_answer("a"), "stop", Some("END")), &stops);
        assert_eq!(m.stop_reason.as_deref(), Some("stop_sequence"));
        assert_eq!(m.stop_sequence.as_deref(), Some("END"));
        // A model's own stop string is the end of its turn.
        let m = to_message(
            completion(text_answer("a"), "stop", Some("<|im_end|>")),
            &stops,
        );
        assert_eq!(
            (m.stop_reason.as_deref(), m.stop_sequence),
            (Some("end_turn"), None)
        );
        let m = to_message(completion(text_answer("a"), "length", None), &stops);
        assert_eq!(m.stop_reason.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn maps_reasoning_text_and_tool_calls_into_blocks() {
        let message = AssistantMessage {
            role: "assistant".into(),
            content: Some("Checking.".into()),
            reasoning_content: Some("The user wants weather.".into()),
            tool_calls: Some(vec![
                tool_call("call_1", r#"{"city": "Paris"}"#),
                tool_call("", r#"{"city":"Lyon"}"#),
            ]),
        };
        let m = to_message(completion(message, "tool_calls", None), &[]);
        assert_eq!(m.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(m.content.len(), 4);
        assert_eq!(
            m.content[0],
            ContentBlock::Thinking {
                thinking: "The user wants weather.".into(),
                signature: String::new()
            }
        );
        assert_eq!(
            m.content[1],
            ContentBlock::Text {
                text: "Checking.".into()
            }
        );
        assert_eq!(
            m.content[2],
            ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "get_weather".into(),
                input: json!({"city": "Paris"})
            }
        );
        let ContentBlock::ToolUse { id, input, .. } = &m.content[3] else {
            panic!("{:?}", m.content[3]);
        };
        assert!(id.starts_with("toolu_"), "{id}");
        assert_eq!(input, &json!({"city": "Lyon"}));
        // A null content with tool calls only gives tool_use blocks only.
        let only_tools = AssistantMessage {
            content: None,
            reasoning_content: None,
            ..AssistantMessage {
                tool_calls: Some(vec![tool_call("c", "{}")]),
                ..text_answer("")
            }
        };
        let m = to_message(completion(only_tools, "tool_calls", None), &[]);
        assert_eq!(m.content.len(), 1);
    }

    #[test]
    fn invalid_tool_arguments_become_an_empty_input() {
        for arguments in ["{invalid", "[]", "\"value\"", "1", "null", ""] {
            let message = AssistantMessage {
                tool_calls: Some(vec![tool_call("call_1", arguments)]),
                ..text_answer("")
            };
            let m = to_message(completion(message, "tool_calls", None), &[]);
            assert_eq!(
                m.content,
                vec![ContentBlock::ToolUse {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    input: json!({})
                }],
                "{arguments}"
            );
        }
    }

    fn chunk(delta: ChatDelta, finish: Option<&str>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: "chatcmpl-1".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "qwen".into(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish.map(str::to_owned),
                stop_sequence: None,
            }],
            usage: None,
        }
    }

    fn text(s: &str) -> ChatDelta {
        ChatDelta {
            content: Some(s.into()),
            ..ChatDelta::default()
        }
    }

    fn reasoning(s: &str) -> ChatDelta {
        ChatDelta {
            reasoning_content: Some(s.into()),
            ..ChatDelta::default()
        }
    }

    fn tool_delta(index: usize, id: Option<&str>, name: Option<&str>, args: &str) -> ToolCallDelta {
        ToolCallDelta {
            index,
            id: id.map(str::to_owned),
            kind: id.map(|_| "function".to_owned()),
            function: Some(FunctionCallDelta {
                name: name.map(str::to_owned),
                arguments: Some(args.into()),
            }),
        }
    }

    fn tools(calls: Vec<ToolCallDelta>) -> ChatDelta {
        ChatDelta {
            tool_calls: Some(calls),
            ..ChatDelta::default()
        }
    }

    fn usage_chunk(prompt: usize, completion: usize) -> ChatCompletionChunk {
        ChatCompletionChunk {
            choices: Vec::new(),
            usage: Some(CompletionUsage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
            }),
            ..chunk(ChatDelta::default(), None)
        }
    }

    fn run(chunks: Vec<ChatCompletionChunk>, stops: &[&str]) -> Vec<Value> {
        let mut t = EventTranslator::new(
            "msg_1".into(),
            "qwen".into(),
            stops.iter().map(|s| s.to_string()).collect(),
        );
        let mut events = t.start();
        for c in &chunks {
            events.extend(t.chunk(c));
        }
        events.extend(t.finish());
        events
            .iter()
            .map(|e| {
                let v = serde_json::to_value(e).unwrap();
                assert_eq!(v["type"], e.name(), "{v}");
                v
            })
            .collect()
    }

    fn names(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    /// Blocks open and close strictly one at a time, with indices 0, 1, 2...
    fn assert_blocks_sequential(events: &[Value]) {
        let mut open: Option<u64> = None;
        let mut next = 0;
        for e in events {
            match e["type"].as_str().unwrap() {
                "content_block_start" => {
                    assert!(open.is_none(), "{e} while {open:?} is open");
                    assert_eq!(e["index"], next);
                    open = Some(next);
                    next += 1;
                }
                "content_block_delta" => assert_eq!(e["index"].as_u64(), open, "{e}"),
                "content_block_stop" => {
                    assert_eq!(e["index"].as_u64(), open, "{e}");
                    open = None;
                }
                _ => {}
            }
        }
        assert!(open.is_none());
    }

    #[test]
    fn a_text_stream_has_anthropics_event_sequence() {
        let role = ChatDelta {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..ChatDelta::default()
        };
        let events = run(
            vec![
                chunk(role, None),
                chunk(text("Hel"), None),
                chunk(text("lo"), None),
                chunk(text(""), Some("length")),
                usage_chunk(9, 2),
            ],
            &[],
        );
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[0]["message"]["id"], "msg_1");
        assert_eq!(events[0]["message"]["content"], json!([]));
        assert_eq!(events[0]["message"]["stop_reason"], Value::Null);
        assert_eq!(
            events[1]["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(
            events[3]["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(
            events[6],
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                   "usage": {"input_tokens": 9, "output_tokens": 2}})
        );
        assert_eq!(events[7], json!({"type": "message_stop"}));
    }

    #[test]
    fn a_stream_reports_its_stop_sequence() {
        let mut last = chunk(text(""), Some("stop"));
        last.choices[0].stop_sequence = Some("END".into());
        let events = run(vec![chunk(text("a"), None), last], &["END"]);
        let delta = &events[events.len() - 2];
        assert_eq!(
            delta["delta"],
            json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
        );
        assert_eq!(delta["usage"], json!({"output_tokens": 0}));
    }

    #[test]
    fn interleaved_text_thinking_and_two_tool_calls_stream_in_order() {
        let events = run(
            vec![
                chunk(reasoning("Need "), None),
                chunk(reasoning("weather."), None),
                chunk(text("Checking"), None),
                // Fragments of two calls, interleaved and out of index order.
                chunk(
                    tools(vec![
                        tool_delta(1, Some("call_2"), Some("get_time"), "{\"tz\":"),
                        tool_delta(0, Some("call_1"), Some("get_weather"), "{\"city\":"),
                    ]),
                    None,
                ),
                chunk(text(" both."), None),
                chunk(
                    tools(vec![
                        tool_delta(1, None, None, "\"UTC\"}"),
                        tool_delta(0, None, None, "\"Paris\"}"),
                    ]),
                    Some("tool_calls"),
                ),
                usage_chunk(30, 20),
            ],
            &[],
        );
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start", // 0 thinking
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start", // 1 text
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start", // 2 tool call 0
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start", // 3 tool call 1
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_blocks_sequential(&events);
        assert_eq!(
            events[1]["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        assert_eq!(
            events[3]["delta"],
            json!({"type": "thinking_delta", "thinking": "Need "})
        );
        assert_eq!(
            events[8]["delta"],
            json!({"type": "text_delta", "text": " both."})
        );
        assert_eq!(
            events[10]["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}})
        );
        assert_eq!(
            events[14]["content_block"],
            json!({"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}})
        );
        let partial: Vec<&str> = events
            .iter()
            .filter(|e| e["delta"]["type"] == "input_json_delta")
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(
            partial,
            ["{\"city\":", "\"Paris\"}", "{\"tz\":", "\"UTC\"}"]
        );
        assert_eq!(events[18]["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[18]["usage"]["output_tokens"], 20);
    }

    #[test]
    fn a_tool_call_without_an_id_gets_a_toolu_id_and_an_empty_answer_still_closes() {
        let events = run(
            vec![chunk(
                tools(vec![tool_delta(0, None, Some("f"), "{}")]),
                Some("tool_calls"),
            )],
            &[],
        );
        let start = events
            .iter()
            .find(|e| e["type"] == "content_block_start")
            .unwrap();
        assert!(start["content_block"]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_"));
        let events = run(vec![chunk(text(""), Some("stop"))], &[]);
        assert_eq!(
            names(&events),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }

    #[tokio::test]
    async fn a_failed_stream_ends_with_its_error() {
        let chunks: ChunkStream<ChatCompletionChunk> = stream::iter(vec![
            Ok(chunk(text("a"), None)),
            Err(Error::overloaded("busy")),
            Ok(chunk(text("never"), None)),
        ])
        .boxed();
        let items: Vec<Result<StreamEvent>> = translate_stream(chunks, "qwen".into(), Vec::new())
            .collect()
            .await;
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.message(), "busy");
        assert_eq!(items.len(), 5, "start, block start, ping, delta, error");
        assert_eq!(
            serde_json::to_value(error_response(last)).unwrap(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "busy"}})
        );
    }

    #[test]
    fn error_kinds_map_to_anthropic_types() {
        assert_eq!(
            error_status(ErrorKind::BadRequest),
            (400, "invalid_request_error")
        );
        assert_eq!(
            error_status(ErrorKind::Unprocessable),
            (400, "invalid_request_error")
        );
        assert_eq!(error_status(ErrorKind::NotFound), (404, "not_found_error"));
        assert_eq!(
            error_status(ErrorKind::PayloadTooLarge),
            (413, "request_too_large")
        );
        assert_eq!(
            error_status(ErrorKind::Overloaded),
            (429, "rate_limit_error")
        );
        assert_eq!(error_status(ErrorKind::NotReady), (503, "overloaded_error"));
        assert_eq!(error_status(ErrorKind::Internal), (500, "api_error"));
    }
}
