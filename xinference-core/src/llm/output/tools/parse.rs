//! Reading tool calls out of a whole answer. Anything that cannot be read as calls of the
//! offered tools stays plain content: a parse failure is never an error.

use super::deepseek::parse_deepseek;
use super::format::ToolFormat;
use super::gemma::parse_gemma;
use super::prompt::ToolSet;
use super::xml::xml_call;
use serde_json::{Map, Value};

/// One call read from the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// The function name (one of the offered tools).
    pub name: String,
    /// The arguments object.
    pub arguments: Value,
}

impl ParsedCall {
    /// The arguments as OpenAI sends them: a JSON string.
    pub fn arguments_json(&self) -> String {
        self.arguments.to_string()
    }
}

/// An answer split into text and calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedOutput {
    /// The text around the calls (`None` when there is none).
    pub content: Option<String>,
    /// The calls, in order.
    pub calls: Vec<ParsedCall>,
}

impl ParsedOutput {
    fn text(text: &str) -> ParsedOutput {
        ParsedOutput {
            content: Some(text.to_owned()),
            calls: Vec::new(),
        }
    }
}

/// Splits `text` into content and calls of `tools`, in `format` (falling back to the bare JSON
/// object small models often write instead of their format, when it names an offered tool).
pub fn parse_tool_output(format: ToolFormat, text: &str, tools: &ToolSet) -> ParsedOutput {
    let parsed = match format {
        // Hermes models that write Qwen3.5's XML calls anyway are read too.
        ToolFormat::Hermes | ToolFormat::QwenXml => parse_tagged(text, tools),
        ToolFormat::Llama3 => parse_llama3(text, tools),
        ToolFormat::Mistral => parse_mistral(text, tools),
        ToolFormat::Glm4 => parse_tagged(text, tools).or_else(|| parse_glm4(text, tools)),
        ToolFormat::DeepSeekR1 => parse_deepseek(text, tools),
        ToolFormat::Gemma4 => parse_gemma(text, tools),
    };
    parsed
        .or_else(|| {
            parse_bare_json(text, tools).map(|calls| ParsedOutput {
                content: None,
                calls,
            })
        })
        .unwrap_or_else(|| ParsedOutput::text(text))
}

/// `text` trimmed, unless nothing is left.
pub(super) fn non_empty(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// `<tool_call>...</tool_call>` blocks (the last may lack its closing tag at the end of the
/// answer). Each block holds a JSON call, Qwen3.5's `<function=...>` XML call, or GLM-4.5's
/// name + `<arg_key>`/`<arg_value>` pairs.
fn parse_tagged(text: &str, tools: &ToolSet) -> Option<ParsedOutput> {
    read_blocks(text, ("<tool_call>", "</tool_call>"), |body| {
        json_call(body, tools)
            .or_else(|| xml_call(body, tools))
            .or_else(|| glm45_call(body, tools))
    })
}

/// The calls of an answer written as blocks between an `open` and a `close` marker, each
/// block's body read by `read`, and the text around them as content (`None`: no block, or a
/// block `read` refuses). The last block may lack its `close` marker, or end inside it (an
/// answer cut off by `max_tokens`); when such a cut-off block is not a call, it stays visible
/// as content beside the complete calls before it.
pub(super) fn read_blocks(
    text: &str,
    (open, close): (&str, &str),
    read: impl Fn(&str) -> Option<ParsedCall>,
) -> Option<ParsedOutput> {
    let first = text.find(open)?;
    let mut content = text[..first].to_owned();
    let mut calls = Vec::new();
    let mut rest = &text[first..];
    while let Some(start) = rest.find(open) {
        content.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let (body, next, closed) = match after.find(close) {
            Some(end) => (&after[..end], &after[end + close.len()..], true),
            None => (cut_partial(after, close), "", false),
        };
        match read(body) {
            Some(call) => calls.push(call),
            None if !closed && !calls.is_empty() => {
                content.push_str(&rest[start..]);
                rest = "";
                break;
            }
            None => return None,
        }
        rest = next;
    }
    content.push_str(rest);
    Some(ParsedOutput {
        content: non_empty(&content),
        calls,
    })
}

/// `text` without a trailing prefix of `marker` (an answer cut off inside it).
pub(super) fn cut_partial<'a>(text: &'a str, marker: &str) -> &'a str {
    let cut = (1..marker.len())
        .rev()
        .find(|&n| marker.is_char_boundary(n) && text.ends_with(&marker[..n]))
        .unwrap_or(0);
    &text[..text.len() - cut]
}

/// `{"name": ..., "arguments" | "parameters": {...}}`, arguments possibly a JSON string.
fn call_from_value(value: &Value, tools: &ToolSet) -> Option<ParsedCall> {
    let obj = value.as_object()?;
    let name = obj.get("name")?.as_str()?;
    tools.get(name)?;
    let arguments = match obj.get("arguments").or_else(|| obj.get("parameters")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => return None,
        },
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return None,
    };
    Some(ParsedCall {
        name: name.to_owned(),
        arguments,
    })
}

/// A call's arguments written as JSON text: an object (blank text: no arguments).
pub(super) fn call_arguments(text: &str) -> Option<Value> {
    if text.trim().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(text).ok()? {
        v @ Value::Object(_) => Some(v),
        _ => None,
    }
}

fn json_call(body: &str, tools: &ToolSet) -> Option<ParsedCall> {
    let value: Value = serde_json::from_str(strip_fence(body.trim())).ok()?;
    call_from_value(&value, tools)
}

/// GLM-4.5 style: `name\n<arg_key>k</arg_key>\n<arg_value>v</arg_value>...` (values are JSON
/// when they parse, else strings).
fn glm45_call(body: &str, tools: &ToolSet) -> Option<ParsedCall> {
    let body = body.trim();
    let name_end = body.find("<arg_key>").unwrap_or(body.len());
    let name = body[..name_end].trim();
    tools.get(name)?;
    let mut arguments = Map::new();
    let mut rest = &body[name_end..];
    while let Some(k) = rest.find("<arg_key>") {
        let after_key = &rest[k + "<arg_key>".len()..];
        let key_end = after_key.find("</arg_key>")?;
        let key = after_key[..key_end].trim().to_owned();
        let after = &after_key[key_end + "</arg_key>".len()..];
        let v = after.find("<arg_value>")?;
        let after_value = &after[v + "<arg_value>".len()..];
        let value_end = after_value.find("</arg_value>")?;
        let raw = &after_value[..value_end];
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        arguments.insert(key, value);
        rest = &after_value[value_end + "</arg_value>".len()..];
    }
    if !rest.trim().is_empty() {
        return None;
    }
    Some(ParsedCall {
        name: name.to_owned(),
        arguments: Value::Object(arguments),
    })
}

/// Llama 3.x: `<|python_tag|>`? then JSON calls separated by `;` (or newlines).
fn parse_llama3(text: &str, tools: &ToolSet) -> Option<ParsedOutput> {
    let (content, body) = match text.find("<|python_tag|>") {
        Some(at) => (&text[..at], &text[at + "<|python_tag|>".len()..]),
        None => ("", text),
    };
    let calls = json_sequence(body, tools)?;
    Some(ParsedOutput {
        content: non_empty(content),
        calls,
    })
}

/// Mistral: text, then `[TOOL_CALLS]` and a JSON array of calls (or, in newer templates,
/// `[TOOL_CALLS]name[ARGS]{...}` per call).
fn parse_mistral(text: &str, tools: &ToolSet) -> Option<ParsedOutput> {
    const MARK: &str = "[TOOL_CALLS]";
    let at = text.find(MARK)?;
    let content = &text[..at];
    let body = &text[at + MARK.len()..];
    let calls = if body.contains("[ARGS]") {
        body.split(MARK)
            .map(|part| {
                let (name, args) = part.split_once("[ARGS]")?;
                tools.get(name.trim())?;
                match serde_json::from_str::<Value>(args.trim()).ok()? {
                    v @ Value::Object(_) => Some(ParsedCall {
                        name: name.trim().to_owned(),
                        arguments: v,
                    }),
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()?
    } else {
        json_sequence(body, tools)?
    };
    Some(ParsedOutput {
        content: non_empty(content),
        calls,
    })
}

/// GLM-4: `name\n{arguments}` as the whole answer.
fn parse_glm4(text: &str, tools: &ToolSet) -> Option<ParsedOutput> {
    let (name, args) = text.trim().split_once('\n')?;
    tools.get(name.trim())?;
    match serde_json::from_str::<Value>(strip_fence(args.trim())).ok()? {
        v @ Value::Object(_) => Some(ParsedOutput {
            content: None,
            calls: vec![ParsedCall {
                name: name.trim().to_owned(),
                arguments: v,
            }],
        }),
        _ => None,
    }
}

/// The whole answer as one call object, an array of them, or calls separated by `;` or
/// newlines; a Markdown code fence around it is allowed.
fn parse_bare_json(text: &str, tools: &ToolSet) -> Option<Vec<ParsedCall>> {
    json_sequence(strip_fence(text.trim()), tools)
}

fn json_sequence(text: &str, tools: &ToolSet) -> Option<Vec<ParsedCall>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    // Values separated by whitespace, else by `;` (Llama 3's separator).
    let values = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map(|v| v.ok())
        .collect::<Option<Vec<Value>>>()
        .or_else(|| {
            text.split(';')
                .filter(|p| !p.trim().is_empty())
                .map(|p| serde_json::from_str(p.trim()).ok())
                .collect()
        })?;
    let mut calls = Vec::new();
    for value in &values {
        match value {
            Value::Array(items) => {
                for item in items {
                    calls.push(call_from_value(item, tools)?);
                }
            }
            _ => calls.push(call_from_value(value, tools)?),
        }
    }
    (!calls.is_empty()).then_some(calls)
}

/// The inside of a Markdown code fence (```` ```json ... ``` ````), or the text itself.
fn strip_fence(text: &str) -> &str {
    let Some(inner) = text.strip_prefix("```") else {
        return text;
    };
    let inner = inner.strip_suffix("```").unwrap_or(inner);
    match inner.find('\n') {
        Some(nl) if !inner[..nl].contains('{') => inner[nl + 1..].trim(),
        _ => inner.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> ToolSet {
        ToolSet::from_openai(&[
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
            json!({"type": "function", "function": {"name": "get_time"}}),
        ])
        .unwrap()
    }

    fn call(name: &str, arguments: Value) -> ParsedCall {
        ParsedCall {
            name: name.into(),
            arguments,
        }
    }

    #[test]
    fn hermes_blocks_are_calls_and_the_rest_is_content() {
        let out = parse_tool_output(
            ToolFormat::Hermes,
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
            &tools(),
        );
        assert_eq!(out.content.as_deref(), Some("Let me check."));
        assert_eq!(
            out.calls,
            vec![
                call("get_weather", json!({"city": "Paris"})),
                call("get_time", json!({}))
            ]
        );
    }

    #[test]
    fn an_unclosed_last_block_and_string_arguments_are_read() {
        let out = parse_tool_output(
            ToolFormat::Hermes,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Oslo\\\"}\"}",
            &tools(),
        );
        assert_eq!(out.content, None);
        assert_eq!(
            out.calls,
            vec![call("get_weather", json!({"city": "Oslo"}))]
        );
    }

    #[test]
    fn a_call_cut_off_after_complete_ones_stays_content() {
        let text = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"argu";
        let out = parse_tool_output(ToolFormat::Hermes, text, &tools());
        assert_eq!(out.calls, vec![call("get_time", json!({}))]);
        assert!(out.content.unwrap().ends_with("\"argu"));
        let cut_in_tag = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_c";
        let out = parse_tool_output(ToolFormat::Hermes, cut_in_tag, &tools());
        assert_eq!(out.calls, vec![call("get_time", json!({}))]);
        assert_eq!(out.content, None);
    }

    #[test]
    fn malformed_or_unknown_calls_stay_content() {
        for text in [
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par",
            "<tool_call>\n{\"name\": \"launch_rockets\", \"arguments\": {}}\n</tool_call>",
            "<tool_call>not json</tool_call>",
            "{\"answer\": 42}",
            "The weather is fine.",
        ] {
            let out = parse_tool_output(ToolFormat::Hermes, text, &tools());
            assert!(out.calls.is_empty(), "{text}");
            assert_eq!(out.content.as_deref(), Some(text));
        }
    }

    #[test]
    fn bare_json_and_fenced_json_are_calls() {
        for text in [
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
            "```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n```",
            "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
        ] {
            let out = parse_tool_output(ToolFormat::Hermes, text, &tools());
            assert_eq!(
                out.calls,
                vec![call("get_weather", json!({"city": "Paris"}))],
                "{text}"
            );
            assert_eq!(out.content, None);
        }
    }

    #[test]
    fn llama3_json_python_tag_and_separators() {
        let t = tools();
        let out = parse_tool_output(
            ToolFormat::Llama3,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}; {\"name\": \"get_time\", \"parameters\": {}}",
            &t,
        );
        assert_eq!(out.calls.len(), 2);
        assert_eq!(out.calls[0], call("get_weather", json!({"city": "Rome"})));
        let out = parse_tool_output(
            ToolFormat::Llama3,
            "{\"name\": \"get_time\", \"parameters\": {}}",
            &t,
        );
        assert_eq!(out.calls, vec![call("get_time", json!({}))]);
    }

    #[test]
    fn mistral_both_generations() {
        let t = tools();
        let out = parse_tool_output(
            ToolFormat::Mistral,
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}]",
            &t,
        );
        assert_eq!(
            out.calls,
            vec![call("get_weather", json!({"city": "Lyon"}))]
        );
        let out = parse_tool_output(
            ToolFormat::Mistral,
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Nice\"}",
            &t,
        );
        assert_eq!(
            out.calls,
            vec![call("get_weather", json!({"city": "Nice"}))]
        );
    }

    #[test]
    fn glm4_both_generations() {
        let t = tools();
        let out = parse_tool_output(ToolFormat::Glm4, "get_weather\n{\"city\": \"Xi'an\"}", &t);
        assert_eq!(
            out.calls,
            vec![call("get_weather", json!({"city": "Xi'an"}))]
        );
        let out = parse_tool_output(
            ToolFormat::Glm4,
            "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n</tool_call>",
            &t,
        );
        assert_eq!(
            out.calls,
            vec![call("get_weather", json!({"city": "Beijing"}))]
        );
        let out = parse_tool_output(ToolFormat::Glm4, "get_weather\nnot json", &t);
        assert!(out.calls.is_empty());
    }

    #[test]
    fn qwen_xml_blocks_are_calls_in_both_qwen_formats() {
        let text = "Checking.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>";
        for format in [ToolFormat::QwenXml, ToolFormat::Hermes] {
            let out = parse_tool_output(format, text, &tools());
            assert_eq!(out.content.as_deref(), Some("Checking."));
            assert_eq!(
                out.calls,
                vec![call("get_weather", json!({"city": "Paris"}))]
            );
        }
        // Hermes JSON still reads under the XML format, and an unknown function stays text.
        let json_call = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        let out = parse_tool_output(ToolFormat::QwenXml, json_call, &tools());
        assert_eq!(out.calls, vec![call("get_time", json!({}))]);
        let unknown = "<tool_call>\n<function=launch>\n</function>\n</tool_call>";
        let out = parse_tool_output(ToolFormat::QwenXml, unknown, &tools());
        assert!(out.calls.is_empty());
        assert_eq!(out.content.as_deref(), Some(unknown));
    }
}
