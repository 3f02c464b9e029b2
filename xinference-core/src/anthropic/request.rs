//! An Anthropic Messages request as an OpenAI-shaped chat request: everything the chat path
//! cannot serve is a 400 here.

use crate::protocol::anthropic::{
    ContentBlockParam, MessageContent, MessagesRequest, SystemPrompt, Tool, ToolChoice,
    ToolResultContent,
};
use crate::protocol::chat::{ChatCompletionRequest, GenerationFields, StopSpec, StreamOptions};
use crate::{Error, Result};
use serde_json::{json, Map, Value};

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
    check_limits(&request)?;
    let messages = chat_messages(&request)?;
    let tools = request
        .tools
        .as_deref()
        .map(chat_tools)
        .transpose()?
        .flatten();
    let (tool_choice, extra) = chat_tool_choice(&request)?;
    let kwargs = thinking_kwargs(&request)?;
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

/// `max_tokens`, `messages`, `temperature`, `top_p` and `top_k` within Anthropic's limits.
fn check_limits(request: &MessagesRequest) -> Result<()> {
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
    Ok(())
}

/// The system prompt (top-level and `system` turns, joined) and the turns as OpenAI messages.
fn chat_messages(request: &MessagesRequest) -> Result<Vec<Value>> {
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
    Ok(messages)
}

/// Client tools as OpenAI function tools (`None` for an empty list); server tools are refused.
fn chat_tools(tools: &[Tool]) -> Result<Option<Vec<Value>>> {
    Ok(match tools {
        tools if !tools.is_empty() => {
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
    })
}

/// `tool_choice` as OpenAI's, and `parallel_tool_calls: false` (in the extra fields) when
/// parallel tool use is disabled.
fn chat_tool_choice(request: &MessagesRequest) -> Result<(Option<Value>, Map<String, Value>)> {
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
    Ok((tool_choice, extra))
}

/// `thinking` as the chat template's variables (`enable_thinking`, `thinking`,
/// `thinking_budget`), checked as Anthropic does.
fn thinking_kwargs(request: &MessagesRequest) -> Result<Map<String, Value>> {
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
    Ok(kwargs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

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
}
