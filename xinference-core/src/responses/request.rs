//! A Responses request as a chat request: input items (after the stored history of
//! `previous_response_id`) become OpenAI chat messages, function tools the chat shape,
//! `text.format` a `response_format`, `reasoning.effort` the template's thinking switch.
//! Everything the chat path cannot serve is a 400 here.

use crate::protocol::chat::{ChatCompletionRequest, GenerationFields, StreamOptions};
use crate::protocol::responses::{
    ContentPart, InputItem, MessageContent, OutputContent, OutputItem, ResponseInput,
    ResponsesRequest, TextFormat,
};
use crate::{Error, Result};
use serde_json::{json, Map, Value};

fn invalid(message: impl Into<String>) -> Error {
    Error::bad_request(message)
}

/// A new id with `prefix` (`msg`, `fc`, `rs`, ...).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The request's input as items, each with an id and a status (as they are stored and listed
/// by `input_items`); a string is one user message.
pub fn input_items(input: Option<&ResponseInput>) -> Result<Vec<InputItem>> {
    let items = match input {
        None => return Err(invalid("input: a string or a list of items is required")),
        Some(ResponseInput::Text(s)) => vec![InputItem::Message {
            id: None,
            role: "user".into(),
            content: MessageContent::Text(s.clone()),
            status: None,
        }],
        Some(ResponseInput::Items(items)) => items.clone(),
    };
    Ok(items.into_iter().map(with_id).collect())
}

fn with_id(item: InputItem) -> InputItem {
    let done = Some("completed".to_owned());
    match item {
        InputItem::Message {
            id, role, content, ..
        } => {
            let kind = if role == "assistant" {
                "output_text"
            } else {
                "input_text"
            };
            let content = match content {
                MessageContent::Text(text) => MessageContent::Parts(vec![ContentPart {
                    kind: kind.into(),
                    text: Some(text),
                    extra: Map::new(),
                }]),
                parts => parts,
            };
            InputItem::Message {
                id: id.or_else(|| Some(new_id("msg"))),
                role,
                content,
                status: done,
            }
        }
        InputItem::FunctionCall {
            id,
            call_id,
            name,
            arguments,
            ..
        } => InputItem::FunctionCall {
            id: id.or_else(|| Some(new_id("fc"))),
            call_id,
            name,
            arguments,
            status: done,
        },
        InputItem::FunctionCallOutput {
            id,
            call_id,
            output,
            ..
        } => InputItem::FunctionCallOutput {
            id: id.or_else(|| Some(new_id("fco"))),
            call_id,
            output,
            status: done,
        },
        InputItem::Reasoning {
            id,
            summary,
            content,
            encrypted_content,
            ..
        } => InputItem::Reasoning {
            id: id.or_else(|| Some(new_id("rs"))),
            summary,
            content,
            encrypted_content,
            status: done,
        },
    }
}

/// The output items of a response as input items of the next turn.
pub fn output_as_input(output: &[OutputItem]) -> Vec<InputItem> {
    output
        .iter()
        .map(|item| match item.clone() {
            OutputItem::Message {
                id, role, content, ..
            } => InputItem::Message {
                id: Some(id),
                role,
                content: MessageContent::Parts(
                    content
                        .into_iter()
                        .map(|c| match c {
                            OutputContent::OutputText { text, .. } => ContentPart {
                                kind: "output_text".into(),
                                text: Some(text),
                                extra: Map::new(),
                            },
                            OutputContent::Refusal { refusal } => ContentPart {
                                kind: "refusal".into(),
                                text: None,
                                extra: Map::from_iter([("refusal".into(), json!(refusal))]),
                            },
                        })
                        .collect(),
                ),
                status: Some("completed".into()),
            },
            OutputItem::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                ..
            } => InputItem::FunctionCall {
                id: Some(id),
                call_id,
                name,
                arguments,
                status: Some("completed".into()),
            },
            OutputItem::Reasoning { id, summary, .. } => InputItem::Reasoning {
                id: Some(id),
                summary,
                content: None,
                encrypted_content: None,
                status: Some("completed".into()),
            },
        })
        .collect()
}

/// The text of a message's content; `at` names it in errors. Images, files and audio are
/// refused: the models served here read text only.
fn text_of(content: &MessageContent, at: &str) -> Result<String> {
    let parts = match content {
        MessageContent::Text(s) => return Ok(s.clone()),
        MessageContent::Parts(parts) => parts,
    };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        match (part.kind.as_str(), &part.text) {
            ("input_text" | "output_text" | "text", Some(t)) => out.push(t.clone()),
            ("refusal", _) => out.push(
                part.extra
                    .get("refusal")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            ("input_text" | "output_text" | "text", None) => {
                return Err(invalid(format!("{at}[{j}]: a text part needs `text`")))
            }
            (kind @ ("input_image" | "input_file" | "input_audio"), _) => {
                return Err(invalid(format!(
                    "{at}[{j}]: `{kind}` content is not supported: the models served here read text only"
                )))
            }
            (kind, _) => {
                return Err(invalid(format!(
                    "{at}[{j}]: unknown content part type `{kind}`"
                )))
            }
        }
    }
    Ok(out.join(""))
}

/// The chat messages of a conversation: `instructions` as the system message, then the items.
/// Consecutive function calls (and an assistant message right before them) form one assistant
/// turn; a function call output must answer a call made earlier in the conversation.
pub fn to_messages(instructions: Option<&str>, items: &[InputItem]) -> Result<Vec<Value>> {
    let mut messages: Vec<Value> = Vec::new();
    if let Some(text) = instructions.filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": text}));
    }
    let mut calls: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        match item {
            InputItem::Message { role, content, .. } => {
                if !matches!(role.as_str(), "user" | "system" | "developer" | "assistant") {
                    return Err(invalid(format!(
                        "{at}.role: `{role}` is not a role; use user, system, developer or assistant"
                    )));
                }
                let role = if role == "developer" { "system" } else { role };
                let text = text_of(content, &format!("{at}.content"))?;
                messages.push(json!({"role": role, "content": text}));
            }
            InputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => {
                if call_id.is_empty() || name.is_empty() {
                    return Err(invalid(format!(
                        "{at}: a function_call needs a call_id and a name"
                    )));
                }
                calls.push(call_id.clone());
                let call = json!({
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                });
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" => {
                        match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                            Some(list) => list.push(call),
                            None => last["tool_calls"] = json!([call]),
                        }
                    }
                    _ => messages.push(json!({
                        "role": "assistant", "content": null, "tool_calls": [call],
                    })),
                }
            }
            InputItem::FunctionCallOutput {
                call_id, output, ..
            } => {
                if !calls.contains(call_id) {
                    return Err(invalid(format!(
                        "{at}: no function call found for function_call_output with call_id `{call_id}`"
                    )));
                }
                let text = text_of(output, &format!("{at}.output"))?;
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": text}));
            }
            // Earlier reasoning is not shown to the model (as chat templates drop it).
            InputItem::Reasoning { .. } => {}
        }
    }
    if !messages
        .iter()
        .any(|m| m["role"] == "user" || m["role"] == "tool")
    {
        return Err(invalid(
            "input: at least one user message or function_call_output is required",
        ));
    }
    Ok(messages)
}

fn check_range(name: &str, value: Option<f32>, low: f32, high: f32) -> Result<()> {
    match value {
        Some(v) if !(low..=high).contains(&v) => Err(invalid(format!(
            "{name} must be between {low} and {high}, not {v}"
        ))),
        _ => Ok(()),
    }
}

/// OpenAI's limits on `metadata`: up to 16 pairs, keys up to 64 characters, string values up
/// to 512.
fn check_metadata(metadata: Option<&Map<String, Value>>) -> Result<()> {
    let Some(m) = metadata else { return Ok(()) };
    if m.len() > 16 {
        return Err(invalid("metadata: at most 16 key-value pairs"));
    }
    for (k, v) in m {
        if k.chars().count() > 64 {
            return Err(invalid(format!(
                "metadata: key `{k}` is over 64 characters"
            )));
        }
        match v.as_str() {
            Some(s) if s.chars().count() <= 512 => {}
            Some(_) => {
                return Err(invalid(format!(
                    "metadata.{k}: values are at most 512 characters"
                )))
            }
            None => return Err(invalid(format!("metadata.{k}: values must be strings"))),
        }
    }
    Ok(())
}

/// Function tools in the chat shape. Other tool types (hosted tools) are refused.
fn chat_tools(request: &ResponsesRequest) -> Result<Option<Vec<Value>>> {
    let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(invalid(format!(
                "tools[{i}]: `{}` tools are not supported; give function tools",
                tool.kind
            )));
        }
        let name = tool
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid(format!("tools[{i}]: a function tool needs a name")))?;
        let parameters = match &tool.parameters {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "tools[{i}] (`{name}`): parameters must be a JSON schema object"
                )))
            }
        };
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        if let Some(d) = &tool.description {
            function.insert("description".into(), json!(d));
        }
        function.insert("parameters".into(), parameters);
        if let Some(strict) = tool.strict {
            function.insert("strict".into(), json!(strict));
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Some(out))
}

/// `tool_choice` in the chat shape.
fn chat_tool_choice(choice: Option<&Value>) -> Result<Option<Value>> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(Some(json!(s)))
        }
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid("tool_choice: {\"type\": \"function\"} needs a `name`")
            })?;
            Ok(Some(json!({"type": "function", "function": {"name": name}})))
        }
        Some(other) => Err(invalid(format!(
            "tool_choice must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"name\": ...}}, not {other}"
        ))),
    }
}

/// `reasoning.effort` as template variables: `none`/`minimal` switch thinking off, the
/// others on (`xhigh` is `high` for the template).
fn thinking_kwargs(request: &ResponsesRequest) -> Result<Option<Map<String, Value>>> {
    let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort.as_deref()) else {
        return Ok(None);
    };
    let mut kwargs = Map::new();
    match effort {
        "none" | "minimal" => {
            kwargs.insert("enable_thinking".into(), json!(false));
        }
        "low" | "medium" | "high" | "xhigh" => {
            kwargs.insert("enable_thinking".into(), json!(true));
            let effort = if effort == "xhigh" { "high" } else { effort };
            kwargs.insert("reasoning_effort".into(), json!(effort));
        }
        other => {
            return Err(invalid(format!(
                "reasoning.effort must be none, minimal, low, medium, high or xhigh, not `{other}`"
            )))
        }
    }
    Ok(Some(kwargs))
}

/// `text.format` as the chat path's `response_format`.
fn response_format(request: &ResponsesRequest) -> Result<Option<Value>> {
    match request.text.as_ref().and_then(|t| t.format.as_ref()) {
        None | Some(TextFormat::Text) => Ok(None),
        Some(TextFormat::JsonObject) => Ok(Some(json!({"type": "json_object"}))),
        Some(TextFormat::JsonSchema {
            name,
            schema,
            strict,
            ..
        }) => {
            if !schema.is_object() {
                return Err(invalid("text.format.schema must be a JSON schema object"));
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, "strict": strict.unwrap_or(true),
            }})))
        }
    }
}

/// The chat request that serves `request` over the conversation `conversation` (the stored
/// history followed by this request's items).
pub fn to_chat_request(
    request: &ResponsesRequest,
    conversation: &[InputItem],
) -> Result<ChatCompletionRequest> {
    let model = request.model.trim().to_owned();
    if model.is_empty() {
        return Err(invalid("model: a model uid is required"));
    }
    if request.max_output_tokens == Some(0) {
        return Err(invalid("max_output_tokens: must be at least 1"));
    }
    check_range("temperature", request.temperature, 0.0, 2.0)?;
    check_range("top_p", request.top_p, 0.0, 1.0)?;
    check_metadata(request.metadata.as_ref())?;
    let messages = to_messages(request.instructions.as_deref(), conversation)?;

    // Sampling extras given beside the OpenAI fields (`stop`, `seed`, `top_k`, ...).
    let mut generation: GenerationFields =
        serde_json::from_value(Value::Object(request.extra.clone()))
            .map_err(|e| invalid(format!("invalid request field: {e}")))?;
    generation.max_tokens = request.max_output_tokens;
    generation.max_completion_tokens = None;
    generation.temperature = request.temperature.or(generation.temperature);
    generation.top_p = request.top_p.or(generation.top_p);
    generation.stream = request.stream;
    generation.stream_options = request.stream.then_some(StreamOptions {
        include_usage: true,
    });

    // vLLM's guided decoding fields pass through to the chat path as they are.
    let mut extra: Map<String, Value> = request
        .extra
        .iter()
        .filter(|(key, _)| key.starts_with("guided_"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if let Some(parallel) = request.parallel_tool_calls {
        extra.insert("parallel_tool_calls".into(), json!(parallel));
    }
    if let Some(format) = response_format(request)? {
        extra.insert("response_format".into(), format);
    }
    Ok(ChatCompletionRequest {
        model,
        messages,
        generation,
        logprobs: None,
        top_logprobs: None,
        tools: chat_tools(request)?,
        tool_choice: chat_tool_choice(request.tool_choice.as_ref())?,
        chat_template_kwargs: thinking_kwargs(request)?,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ResponsesRequest {
        serde_json::from_value(body).expect("a valid Responses request")
    }

    fn chat(body: Value) -> Result<ChatCompletionRequest> {
        let r = request(body);
        let items = input_items(r.input.as_ref())?;
        to_chat_request(&r, &items)
    }

    #[test]
    fn a_string_input_is_one_user_message_after_the_instructions() {
        let c = chat(json!({
            "model": "qwen", "input": "hello", "instructions": "Be brief.",
            "max_output_tokens": 20, "temperature": 0, "top_p": 0.5,
            "stop": ["END"], "seed": 7,
        }))
        .unwrap();
        assert_eq!(
            c.messages,
            vec![
                json!({"role": "system", "content": "Be brief."}),
                json!({"role": "user", "content": "hello"}),
            ]
        );
        let g = &c.generation;
        assert_eq!(g.max_tokens, Some(20));
        assert_eq!(
            (g.temperature, g.top_p, g.seed),
            (Some(0.0), Some(0.5), Some(7))
        );
        assert_eq!(
            g.stop,
            Some(crate::protocol::chat::StopSpec::Many(vec!["END".into()]))
        );
        assert!(!g.stream && c.tools.is_none() && c.chat_template_kwargs.is_none());
    }

    #[test]
    fn items_become_a_chat_conversation_with_tool_calls_and_results() {
        let c = chat(json!({
            "model": "qwen",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in "}, {"type": "input_text", "text": "Paris?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "rain"}]},
            ],
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": false,
        }))
        .unwrap();
        let call = |id: &str, city: &str| {
            json!({"id": id, "type": "function", "function": {"name": "get_weather",
                   "arguments": format!("{{\"city\":\"{city}\"}}")}})
        };
        assert_eq!(
            c.messages,
            vec![
                json!({"role": "system", "content": "Use tools."}),
                json!({"role": "user", "content": "Weather in Paris?"}),
                json!({"role": "assistant", "content": "Checking.",
                       "tool_calls": [call("call_1", "Paris"), call("call_2", "Lyon")]}),
                json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
                json!({"role": "tool", "tool_call_id": "call_2", "content": "rain"}),
            ]
        );
        assert_eq!(
            c.tools,
            Some(vec![json!({"type": "function", "function": {
                "name": "get_weather", "description": "Weather", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})])
        );
        assert_eq!(
            c.tool_choice,
            Some(json!({"type": "function", "function": {"name": "get_weather"}}))
        );
        assert_eq!(c.extra["parallel_tool_calls"], json!(false));
    }

    #[test]
    fn formats_and_effort_map_to_the_chat_fields() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let c = chat(json!({"model": "m", "input": "x",
            "text": {"format": {"type": "json_schema", "name": "n", "schema": schema, "strict": true}}}))
        .unwrap();
        assert_eq!(
            c.extra["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": true}})
        );
        let c =
            chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}))
                .unwrap();
        assert_eq!(c.extra["response_format"], json!({"type": "json_object"}));
        let c = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "text"}}}))
            .unwrap();
        assert!(!c.extra.contains_key("response_format"));
        let c =
            chat(json!({"model": "m", "input": "x", "reasoning": {"effort": "xhigh"}})).unwrap();
        assert_eq!(
            Value::Object(c.chat_template_kwargs.unwrap()),
            json!({"enable_thinking": true, "reasoning_effort": "high"})
        );
        let c =
            chat(json!({"model": "m", "input": "x", "reasoning": {"effort": "minimal"}})).unwrap();
        assert_eq!(
            Value::Object(c.chat_template_kwargs.unwrap()),
            json!({"enable_thinking": false})
        );
        let c = chat(json!({"model": "m", "input": "x", "stream": true})).unwrap();
        assert!(c.generation.stream);
        assert!(c.generation.stream_options.unwrap().include_usage);
    }

    #[test]
    fn stored_items_get_ids_and_text_parts() {
        let items = input_items(Some(&ResponseInput::Text("hi".into()))).unwrap();
        let v = serde_json::to_value(&items).unwrap();
        assert!(v[0]["id"].as_str().unwrap().starts_with("msg_"), "{v}");
        assert_eq!(v[0]["type"], "message");
        assert_eq!(v[0]["status"], "completed");
        assert_eq!(
            v[0]["content"],
            json!([{"type": "input_text", "text": "hi"}])
        );
    }

    #[test]
    fn rejects_what_cannot_be_served_with_a_400() {
        for (body, needle) in [
            (json!({"model": "m"}), "input"),
            (json!({"model": " ", "input": "x"}), "model"),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 0}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": "x", "temperature": 2.5}),
                "temperature",
            ),
            (json!({"model": "m", "input": "x", "top_p": 1.5}), "top_p"),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "web_search",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "name",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "reasoning": {"effort": "max"}}),
                "reasoning.effort",
            ),
            (
                json!({"model": "m", "input": "x", "metadata": {"k": 1}}),
                "metadata",
            ),
            (
                json!({"model": "m", "input": "x",
                    "text": {"format": {"type": "json_schema", "name": "n", "schema": "nope"}}}),
                "schema",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
                "text only",
            ),
            (
                json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
                "role",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}),
                "call_id `c`",
            ),
            (
                json!({"model": "m", "input": [{"role": "system", "content": "x"}]}),
                "user message",
            ),
        ] {
            let e = chat(body.clone()).expect_err("must be rejected");
            assert_eq!(e.kind(), crate::ErrorKind::BadRequest, "{body}: {e}");
            assert!(
                e.message().contains(needle),
                "{body}: `{e}` lacks `{needle}`"
            );
        }
    }

    #[test]
    fn unknown_item_types_are_named() {
        let e = serde_json::from_value::<ResponsesRequest>(json!({
            "model": "m", "input": [{"role": "user", "content": "x"}, {"type": "computer_call"}]
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("input[1]") && e.contains("computer_call"), "{e}");
    }
}
