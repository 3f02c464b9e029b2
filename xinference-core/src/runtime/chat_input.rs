//! What a chat or completion request asks for, checked and put in the shapes the worker and
//! the answer need: generation settings (`plan`), messages for the template, tool history,
//! template variables, and the JSON of logprobs and usage.

use crate::llm::reasoning::ReasoningTags;
use crate::llm::{GenerateOptions, Generated, SamplingParams, TokenLogprob};
use crate::protocol::chat::{
    ChatCompletionRequest, CompletionTokensDetails, CompletionUsage, GenerationFields,
    PromptTokensDetails,
};
use crate::{Error, Result};
use serde_json::{json, Map, Value};

/// Most choices one request may ask for (`n`, as OpenAI allows).
pub(super) const MAX_CHOICES: usize = 128;

/// Validated generation settings of a request.
pub(super) struct Plan {
    pub options: GenerateOptions,
    pub stream: bool,
    pub include_usage: bool,
    /// Choices to generate (`n`).
    pub n: usize,
}

pub(super) fn plan(
    fields: &GenerationFields,
    logprobs: Option<usize>,
    default_max_tokens: Option<usize>,
) -> Result<Plan> {
    let n = fields.n.unwrap_or(1) as usize;
    if !(1..=MAX_CHOICES).contains(&n) {
        return Err(Error::bad_request(format!(
            "n must be from 1 to {MAX_CHOICES}, not {n}"
        )));
    }
    let logit_bias = logit_bias(fields.logit_bias.as_ref())?;
    let temperature = fields.temperature.unwrap_or(0.8);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(Error::bad_request(format!(
            "temperature must be between 0 and 2, not {temperature}"
        )));
    }
    let top_p = fields.top_p.unwrap_or(0.95);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Error::bad_request(format!(
            "top_p must be in (0, 1], not {top_p}"
        )));
    }
    let min_p = fields.min_p.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_p) {
        return Err(Error::bad_request(format!(
            "min_p must be in [0, 1], not {min_p}"
        )));
    }
    let repetition_penalty = fields.repetition_penalty.unwrap_or(1.0);
    if repetition_penalty <= 0.0 {
        return Err(Error::bad_request("repetition_penalty must be positive"));
    }
    for (name, v) in [
        ("presence_penalty", fields.presence_penalty),
        ("frequency_penalty", fields.frequency_penalty),
    ] {
        if v.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(Error::bad_request(format!(
                "{name} must be between -2 and 2"
            )));
        }
    }
    let max_tokens = fields.max_completion_tokens.or(fields.max_tokens);
    if max_tokens == Some(0) {
        return Err(Error::bad_request("max_tokens must be at least 1"));
    }
    if logprobs.is_some_and(|n| n > 20) {
        return Err(Error::bad_request("top_logprobs must be at most 20"));
    }
    let top_k = fields.top_k.unwrap_or(40);
    Ok(Plan {
        options: GenerateOptions {
            max_tokens: max_tokens.map(|m| m as usize).or(default_max_tokens),
            max_tokens_requested: max_tokens.is_some(),
            sampling: SamplingParams {
                temperature,
                top_p,
                top_k: if top_k <= 0 { 0 } else { top_k as usize },
                min_p,
                repetition_penalty,
                presence_penalty: fields.presence_penalty.unwrap_or(0.0),
                frequency_penalty: fields.frequency_penalty.unwrap_or(0.0),
                seed: fields.seed,
            },
            stop: fields
                .stop
                .clone()
                .map(|s| s.into_vec())
                .unwrap_or_default(),
            stop_token_ids: fields.stop_token_ids.clone().unwrap_or_default(),
            logprobs,
            grammar: None,
            kept_special_tokens: Vec::new(),
            logit_bias,
        },
        stream: fields.stream,
        include_usage: fields
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
        n,
    })
}

/// OpenAI's `logit_bias`: an object from token ids (as strings, or numbers where the JSON
/// allows) to biases from -100 to 100. Absent or null is none; anything else is a 400 that says
/// what is wrong. Whether the ids are in the vocabulary is the engine's check.
fn logit_bias(value: Option<&Value>) -> Result<Vec<(u32, f32)>> {
    let map = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(Error::bad_request(
                "logit_bias must be an object from token ids to biases from -100 to 100",
            ))
        }
    };
    map.iter()
        .map(|(key, bias)| {
            let id = key.trim().parse::<u32>().map_err(|_| {
                Error::bad_request(format!("logit_bias: `{key}` is not a token id"))
            })?;
            match bias.as_f64() {
                Some(b) if (-100.0..=100.0).contains(&b) => Ok((id, b as f32)),
                _ => Err(Error::bad_request(format!(
                    "logit_bias: the bias of token {id} must be a number from -100 to 100, not {bias}"
                ))),
            }
        })
        .collect()
}

/// Checks messages and turns multi-part text content into plain strings for the template.
pub(super) fn normalise_messages(messages: &[Value]) -> Result<Vec<Value>> {
    if messages.is_empty() {
        return Err(Error::bad_request("messages must not be empty"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let Value::Object(map) = m else {
                return Err(Error::bad_request(format!("messages[{i}] must be an object")));
            };
            let role = map.get("role").and_then(Value::as_str).ok_or_else(|| {
                Error::bad_request(format!("messages[{i}] has no role"))
            })?;
            if !matches!(role, "system" | "user" | "assistant" | "tool" | "developer" | "function") {
                return Err(Error::bad_request(format!("messages[{i}] has an unknown role `{role}`")));
            }
            let mut out = map.clone();
            let content = match map.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            (Some(kind), _) => {
                                return Err(Error::bad_request(format!(
                                    "messages[{i}] has a `{kind}` content part; this model reads text only"
                                )))
                            }
                            _ => return Err(Error::bad_request(format!("messages[{i}] has a malformed content part"))),
                        }
                    }
                    Value::String(text)
                }
                None | Some(Value::Null) if role == "assistant" => Value::Null,
                None | Some(Value::Null) => {
                    return Err(Error::bad_request(format!("messages[{i}] ({role}) has no content")))
                }
                Some(_) => return Err(Error::bad_request(format!("messages[{i}].content must be a string or a list of parts"))),
            };
            out.insert("content".into(), content);
            if let Some(calls) = map.get("tool_calls") {
                out.insert("tool_calls".into(), template_tool_calls(i, calls)?);
            }
            if role == "developer" {
                out.insert("role".into(), Value::String("system".into()));
            }
            Ok(Value::Object(out))
        })
        .collect()
}

/// The chat template's extra variables: `chat_template_kwargs`, plus `enable_thinking` and
/// `reasoning_effort` given at the top level (or in the OpenAI SDK's `extra_body`, which lands
/// there). `enable_thinking` is also passed as `thinking`, the name some templates read.
pub(super) fn template_kwargs(request: &ChatCompletionRequest) -> Result<Map<String, Value>> {
    let mut kwargs = request.chat_template_kwargs.clone().unwrap_or_default();
    for key in ["enable_thinking", "reasoning_effort"] {
        if let Some(v) = request.extra.get(key) {
            kwargs.entry(key.to_owned()).or_insert(v.clone());
        }
    }
    if let Some(v) = kwargs.get("enable_thinking").cloned() {
        if !v.is_boolean() {
            return Err(Error::bad_request(format!(
                "enable_thinking must be true or false, not {v}"
            )));
        }
        kwargs.entry("thinking".to_owned()).or_insert(v);
    }
    if let Some(v) = kwargs.get("reasoning_effort") {
        if !matches!(v.as_str(), Some("low" | "medium" | "high")) {
            return Err(Error::bad_request(format!(
                "reasoning_effort must be low, medium or high, not {v}"
            )));
        }
    }
    Ok(kwargs)
}

/// The reasoning tags of a registry family (`reasoning_start_tag` / `reasoning_end_tag`).
pub(super) fn reasoning_tags(family: &Value) -> Option<ReasoningTags> {
    let tag = |key: &str| {
        family
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    Some(ReasoningTags {
        start: tag("reasoning_start_tag")?,
        end: tag("reasoning_end_tag")?,
    })
}

/// For a template without tool support: the tools described in the system prompt, earlier
/// calls written as `<tool_call>` blocks and tool results as `<tool_response>` user turns.
pub(super) fn describe_tools_in_messages(messages: Vec<Value>, tools_prompt: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
        match role {
            "assistant" if m.get("tool_calls").is_some_and(|c| c.is_array()) => {
                let mut text = content.to_owned();
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let f = &call["function"];
                    let body = json!({"name": f["name"], "arguments": f["arguments"]});
                    text.push_str(&format!("\n<tool_call>\n{body}\n</tool_call>"));
                }
                out.push(json!({"role": "assistant", "content": text.trim_start()}));
            }
            "tool" => out.push(json!({
                "role": "user",
                "content": format!("<tool_response>\n{content}\n</tool_response>"),
            })),
            _ => out.push(m),
        }
    }
    match out.first_mut() {
        Some(first) if first["role"] == "system" => {
            let text = first["content"].as_str().unwrap_or_default();
            first["content"] = Value::String(format!("{text}\n\n{tools_prompt}"));
        }
        _ => out.insert(0, json!({"role": "system", "content": tools_prompt})),
    }
    out
}

/// An assistant message's `tool_calls` as templates read them: `arguments` as an object (OpenAI
/// sends a JSON string; templates `tojson` it, which would quote it twice).
pub(super) fn template_tool_calls(i: usize, calls: &Value) -> Result<Value> {
    let Value::Array(calls) = calls else {
        return Err(Error::bad_request(format!(
            "messages[{i}].tool_calls must be a list"
        )));
    };
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        let mut call = call.clone();
        let function = call.get_mut("function").ok_or_else(|| {
            Error::bad_request(format!(
                "messages[{i}].tool_calls has a call without `function`"
            ))
        })?;
        if function.get("name").and_then(Value::as_str).is_none() {
            return Err(Error::bad_request(format!(
                "messages[{i}].tool_calls has a function without a name"
            )));
        }
        if let Some(Value::String(args)) = function.get("arguments") {
            if let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(args) {
                function["arguments"] = parsed;
            }
        }
        out.push(call);
    }
    Ok(Value::Array(out))
}

pub(super) fn logprobs_json(items: &[TokenLogprob]) -> Value {
    let entry = |token: &str, logprob: f32| json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
    let content: Vec<Value> = items
        .iter()
        .map(|t| {
            let mut e = entry(&t.token, t.logprob);
            e["top_logprobs"] =
                Value::Array(t.top.iter().map(|(tok, lp)| entry(tok, *lp)).collect());
            e
        })
        .collect();
    json!({"content": content})
}

pub(super) fn legacy_logprobs_json(items: &[TokenLogprob]) -> Value {
    json!({
        "tokens": items.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": items.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": items.iter().map(|t| t.top.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>()).collect::<Vec<_>>(),
    })
}

/// The usage of a request's choices: the prompt counted once, the completions summed.
pub(super) fn usage(choices: &[&Generated]) -> CompletionUsage {
    let prompt_tokens = choices.first().map_or(0, |g| g.prompt_tokens);
    let completion_tokens = choices.iter().map(|g| g.completion_tokens).sum();
    let reasoning_tokens = choices.iter().map(|g| g.reasoning_tokens).sum();
    let cached_tokens = choices.first().map_or(0, |g| g.cached_tokens);
    CompletionUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: (cached_tokens > 0).then_some(PromptTokensDetails { cached_tokens }),
        completion_tokens_details: (reasoning_tokens > 0)
            .then_some(CompletionTokensDetails { reasoning_tokens }),
    }
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A prompt as text or token ids.
pub(super) enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}
