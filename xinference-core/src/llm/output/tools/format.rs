//! The tool-call output formats, and the grammar that makes a model write a valid call in its
//! own format.

use super::deepseek;
use super::gemma;
use super::prompt::ToolSet;
use crate::llm::output::constraint::lark_string;
use serde_json::{json, Value};

/// How a model writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// Qwen / Hermes: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one block
    /// per call. Also the built-in format for templates without tool support.
    Hermes,
    /// Qwen3-Coder / Qwen3.5: `<tool_call>\n<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n
    /// </function>\n</tool_call>`, values as raw text typed by the tool's schema.
    QwenXml,
    /// Llama 3.x: a bare `{"name": ..., "parameters": {...}}` object, optionally after
    /// `<|python_tag|>`, several separated by `;`.
    Llama3,
    /// GLM-4: the function name on the first line and the JSON arguments below it (GLM-4.5+:
    /// `<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`).
    Glm4,
    /// Mistral: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`.
    Mistral,
    /// DeepSeek-R1 / V3 (and the R1 distills): `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>
    /// function<｜tool▁sep｜>NAME\n```json\n{...}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>`.
    DeepSeekR1,
    /// Gemma 4: `<|tool_call>call:NAME{key:VALUE,...}<tool_call|>`, strings between `<|"|>`
    /// marks, keys bare.
    Gemma4,
}

impl ToolFormat {
    /// The format of a registry `tool_parser` name (Xinference's names and common aliases).
    pub fn from_parser_name(name: &str) -> Option<ToolFormat> {
        match name.to_ascii_lowercase().as_str() {
            "qwen" | "qwen2" | "qwen3" | "hermes" => Some(ToolFormat::Hermes),
            "qwen3_coder" | "qwen3_xml" | "qwen35" | "qwen3.5" => Some(ToolFormat::QwenXml),
            "llama3" | "llama3_json" | "llama" => Some(ToolFormat::Llama3),
            "glm4" | "glm45" | "glm5" | "chatglm" => Some(ToolFormat::Glm4),
            "mistral" => Some(ToolFormat::Mistral),
            "deepseek-r1" | "deepseek_r1" | "deepseek-v3" | "deepseek_v3" | "deepseek" => {
                Some(ToolFormat::DeepSeekR1)
            }
            "gemma" | "gemma4" => Some(ToolFormat::Gemma4),
            _ => None,
        }
    }

    /// The format a chat template asks for, recognised by its markers.
    pub fn from_template(source: &str) -> Option<ToolFormat> {
        if source.contains(deepseek::CALLS_BEGIN) {
            Some(ToolFormat::DeepSeekR1)
        } else if source.contains(gemma::CALL_BEGIN) {
            Some(ToolFormat::Gemma4)
        } else if source.contains("<function=") && source.contains("<parameter=") {
            Some(ToolFormat::QwenXml)
        } else if source.contains("<tool_call>") {
            Some(ToolFormat::Hermes)
        } else if source.contains("<|python_tag|>") || source.contains("\"parameters\"") {
            Some(ToolFormat::Llama3)
        } else if source.contains("[TOOL_CALLS]") {
            Some(ToolFormat::Mistral)
        } else if source.contains("observation") && source.contains("[gMASK]") {
            Some(ToolFormat::Glm4)
        } else {
            None
        }
    }

    /// The markup this format's parser reads that models write as special tokens, which
    /// decoding would drop: Gemma 4's `<|tool_call>`, `<tool_call|>` and `<|"|>` (control tokens
    /// in its tokenizer). Empty for the other formats, whose parsers read what plain decoding
    /// gives.
    pub fn special_markup(self) -> &'static [&'static str] {
        match self {
            ToolFormat::Gemma4 => &[gemma::CALL_BEGIN, gemma::CALL_END, gemma::QUOTE],
            _ => &[],
        }
    }

    /// The text that starts a call in the middle of an answer (`None`: calls are recognised
    /// only as the whole answer).
    pub(crate) fn call_marker(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes | ToolFormat::QwenXml => Some("<tool_call>"),
            ToolFormat::Llama3 => Some("<|python_tag|>"),
            ToolFormat::Mistral => Some("[TOOL_CALLS]"),
            ToolFormat::Glm4 => Some("<tool_call>"),
            ToolFormat::DeepSeekR1 => Some(deepseek::MARKER),
            ToolFormat::Gemma4 => Some(gemma::CALL_BEGIN),
        }
    }

    /// A Lark grammar (llguidance dialect) whose every sentence is valid calls of `tools` in
    /// this format (one, or one or more when `parallel`), arguments valid against each tool's
    /// schema.
    pub fn calls_grammar(self, tools: &ToolSet, parallel: bool) -> String {
        let more = |sep: &str| {
            if parallel {
                format!(" ({} body)*", lark_string(sep))
            } else {
                String::new()
            }
        };
        let call_schema = |args_key: &str| {
            let options: Vec<Value> = tools
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "object",
                        "properties": {
                            "name": {"const": t.name},
                            args_key: t.parameters,
                        },
                        "required": ["name", args_key],
                        "additionalProperties": false,
                    })
                })
                .collect();
            with_layout(json!({ "anyOf": options }))
        };
        match self {
            ToolFormat::Hermes => format!(
                "start: body{}\nbody: \"<tool_call>\\n\" %json {} \"\\n</tool_call>\"\n",
                more("\n"),
                call_schema("arguments")
            ),
            ToolFormat::QwenXml => qwen_xml_grammar(tools, parallel),
            ToolFormat::Llama3 => format!(
                "start: body{}\nbody: %json {}\n",
                more("; "),
                call_schema("parameters")
            ),
            ToolFormat::Mistral => {
                let mut array =
                    json!({"type": "array", "minItems": 1, "items": call_schema("arguments")});
                if !parallel {
                    array["maxItems"] = json!(1);
                }
                format!("start: \"[TOOL_CALLS]\" %json {}\n", with_layout(array))
            }
            ToolFormat::DeepSeekR1 => deepseek_grammar(tools, parallel),
            ToolFormat::Gemma4 => gemma_grammar(tools, parallel),
            ToolFormat::Glm4 => {
                let alternatives: Vec<String> = tools
                    .tools
                    .iter()
                    .enumerate()
                    .map(|(i, _)| format!("call_{i}"))
                    .collect();
                let mut g = format!("start: {}\n", alternatives.join(" | "));
                for (i, t) in tools.tools.iter().enumerate() {
                    g.push_str(&format!(
                        "call_{i}: {} %json {}\n",
                        lark_string(&format!("{}\n", t.name)),
                        with_layout(t.parameters.clone())
                    ));
                }
                g
            }
        }
    }

    /// Like [`ToolFormat::calls_grammar`], but the model may also answer in plain text: the
    /// answer is either calls or text that does not start like a call (for `strict` tools with
    /// `tool_choice: "auto"`).
    pub fn calls_or_text_grammar(self, tools: &ToolSet, parallel: bool) -> String {
        let calls = self
            .calls_grammar(tools, parallel)
            .replacen("start:", "calls:", 1);
        // Text may not open with `<`, `{` or `[`, the first characters of every call format
        // (GLM-4's bare name aside), so the first token decides between text and a call.
        format!("start: calls | TEXT\nTEXT: /(?s:[^<{{\\[].*)?/\n{calls}")
    }
}

/// Pins the JSON layout to the one models write (`{"a": 1, "b": 2}`), so a constrained model
/// is never pushed off its habits nor allowed to pad with whitespace forever.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert(
            "x-guidance".into(),
            json!({"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": false}),
        );
    }
    schema
}

/// DeepSeek-R1's calls, as its template writes them: each tool's name, then its arguments as
/// fenced JSON valid against its schema.
fn deepseek_grammar(tools: &ToolSet, parallel: bool) -> String {
    let mut rules = Vec::new();
    let mut calls = Vec::new();
    for (i, tool) in tools.tools.iter().enumerate() {
        rules.push(format!(
            "call_{i}: {} %json {} {}",
            lark_string(&format!("{}\n```json\n", tool.name)),
            with_layout(tool.parameters.clone()),
            lark_string(&format!("\n```{}", deepseek::CALL_END)),
        ));
        calls.push(format!("call_{i}"));
    }
    let more = if parallel { " (\"\\n\" body)*" } else { "" };
    format!(
        "start: {} body{more} {}\nbody: {} ({})\n{}\n",
        lark_string(deepseek::CALLS_BEGIN),
        lark_string(deepseek::CALLS_END),
        lark_string(&format!(
            "{}function{}",
            deepseek::CALL_BEGIN,
            deepseek::SEP
        )),
        calls.join(" | "),
        rules.join("\n")
    )
}

/// How a format writes one parameter's value, read from its schema.
enum ValueKind<'a> {
    /// One of an enum's strings (each a Lark string).
    Enum(Vec<String>),
    /// Raw text, with a Lark repetition bounding its length (`*` or `{0,maxLength}`).
    Text(String),
    /// JSON valid against the schema.
    Json(&'a Value),
}

/// Parameter `key` of a tool, as [`per_parameter_grammar`] hands it to a format's renderer.
struct Param<'a> {
    /// `{tool}_{parameter}` indices, which name the parameter's rules (`p_`, `v_`, `s_`).
    id: String,
    /// The parameter's name.
    key: &'a str,
    /// Whether it is the tool's first parameter.
    first: bool,
    /// How its value is written.
    value: ValueKind<'a>,
}

/// The rules of calls written parameter by parameter (Gemma 4, Qwen3.5's XML): per tool, its
/// parameters in schema order (required ones always, the others optional), each rendered by
/// `param` into rules whose last defines `p_{id}`; `call(name, params)` is the right-hand side
/// of the tool's `call_{i}` rule. Returns the rules and the `call_{i}` names.
fn per_parameter_grammar(
    tools: &ToolSet,
    param: impl Fn(&Param) -> Vec<String>,
    call: impl Fn(&str, &str) -> String,
) -> (Vec<String>, Vec<String>) {
    let mut rules = Vec::new();
    let mut calls = Vec::new();
    for (i, tool) in tools.tools.iter().enumerate() {
        let required: Vec<&str> = tool
            .parameters
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut params = Vec::new();
        if let Some(props) = tool.parameters.get("properties").and_then(Value::as_object) {
            for (j, (key, schema)) in props.iter().enumerate() {
                let strings: Option<Vec<String>> = schema
                    .get("enum")
                    .and_then(Value::as_array)
                    .and_then(|e| e.iter().map(|v| v.as_str().map(lark_string)).collect());
                let value = match strings {
                    Some(options) if !options.is_empty() => ValueKind::Enum(options),
                    _ if schema.get("type").and_then(Value::as_str) == Some("string") => {
                        ValueKind::Text(match schema.get("maxLength").and_then(Value::as_u64) {
                            Some(n) => format!("{{0,{n}}}"),
                            None => "*".to_owned(),
                        })
                    }
                    _ => ValueKind::Json(schema),
                };
                rules.extend(param(&Param {
                    id: format!("{i}_{j}"),
                    key,
                    first: j == 0,
                    value,
                }));
                let optional = if required.contains(&key.as_str()) {
                    ""
                } else {
                    "?"
                };
                params.push(format!("p_{i}_{j}{optional}"));
            }
        }
        rules.push(format!("call_{i}: {}", call(&tool.name, &params.join(" "))));
        calls.push(format!("call_{i}"));
    }
    (rules, calls)
}

/// Gemma 4's calls: per tool, `call:NAME{` and its parameters in schema order, `key:VALUE`
/// separated by commas (an absent optional one may leave a stray comma, which the parser
/// skips). A string value is raw text between `<|"|>` marks (at most `maxLength` characters
/// when the schema says), an enum of strings one of its
/// values so quoted, anything else JSON valid against its schema (numbers and booleans are
/// the same in Gemma's notation; nested objects come out as JSON, which the parser reads too).
fn gemma_grammar(tools: &ToolSet, parallel: bool) -> String {
    let quote = lark_string(gemma::QUOTE);
    let (rules, calls) = per_parameter_grammar(
        tools,
        |p| {
            let (id, value) = (&p.id, format!("v_{}", p.id));
            let mut rules = match &p.value {
                ValueKind::Enum(options) => {
                    vec![format!(
                        "{value}: {quote} ({}) {quote}",
                        options.join(" | ")
                    )]
                }
                ValueKind::Text(length) => vec![
                    format!("{value}: {quote} s_{id}"),
                    format!("s_{id}[suffix={quote}]: /(?s:.{length})/"),
                ],
                ValueKind::Json(schema) => {
                    vec![format!("{value}: %json {}", with_layout((*schema).clone()))]
                }
            };
            let comma = if p.first { "" } else { "\",\" " };
            let open = lark_string(&format!("{}:", p.key));
            rules.push(format!("p_{id}: {comma}{open} {value}"));
            rules
        },
        |name, params| format!("{} {params} \"}}\"", lark_string(&format!("call:{name}{{"))),
    );
    let more = if parallel { " body*" } else { "" };
    format!(
        "start: body{more}\nbody: {} ({}) {}\n{}\n",
        lark_string(gemma::CALL_BEGIN),
        calls.join(" | "),
        lark_string(gemma::CALL_END),
        rules.join("\n")
    )
}

/// Qwen3.5's XML calls: per tool, `<function=NAME>` and its parameters in schema order
/// (required ones always, the others optional). A string value is raw text ended by
/// `\n</parameter>` (at most `maxLength` characters when the schema says), an enum of strings
/// one of its values, anything else JSON valid against its schema.
fn qwen_xml_grammar(tools: &ToolSet, parallel: bool) -> String {
    let close = lark_string("\n</parameter>\n");
    let (rules, calls) = per_parameter_grammar(
        tools,
        |p| {
            let (id, value) = (&p.id, format!("v_{}", p.id));
            let open = lark_string(&format!("<parameter={}>\n", p.key));
            match &p.value {
                ValueKind::Enum(options) => vec![
                    format!("{value}: {}", options.join(" | ")),
                    format!("p_{id}: {open} {value} {close}"),
                ],
                ValueKind::Text(length) => vec![
                    format!("{value}[suffix={close}]: /(?s:.{length})/"),
                    format!("p_{id}: {open} {value}"),
                ],
                ValueKind::Json(schema) => vec![
                    format!("{value}: %json {}", with_layout((*schema).clone())),
                    format!("p_{id}: {open} {value} {close}"),
                ],
            }
        },
        |name, params| {
            format!(
                "{} {params} {}",
                lark_string(&format!("<function={name}>\n")),
                lark_string("</function>")
            )
        },
    );
    let more = if parallel { " (\"\\n\" body)*" } else { "" };
    format!(
        "start: body{more}\nbody: \"<tool_call>\\n\" ({}) \"\\n</tool_call>\"\n{}\n",
        calls.join(" | "),
        rules.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_deepseek_r1_family_of_the_registry_reads_deepseek_calls() {
        let families: Vec<Value> =
            serde_json::from_str(include_str!("../../../registry/data/llm.json")).unwrap();
        let mut seen = 0;
        for family in families {
            let name = family["model_name"].as_str().unwrap();
            if !name.starts_with("deepseek-r1") {
                continue;
            }
            seen += 1;
            let by_parser = family["tool_parser"]
                .as_str()
                .and_then(ToolFormat::from_parser_name);
            let by_template = family["chat_template"]
                .as_str()
                .and_then(ToolFormat::from_template);
            assert_eq!(
                by_parser.or(by_template),
                Some(ToolFormat::DeepSeekR1),
                "{name}"
            );
        }
        assert_eq!(seen, 3, "the three R1 families");
    }

    #[test]
    fn gemma_4_reads_gemma_calls_by_its_parser_name_and_google_s_template() {
        let families: Vec<Value> =
            serde_json::from_str(include_str!("../../../registry/data/llm.json")).unwrap();
        let gemma4 = families
            .iter()
            .find(|f| f["model_name"] == "gemma-4")
            .unwrap();
        let parser = gemma4["tool_parser"].as_str().unwrap();
        assert_eq!(
            ToolFormat::from_parser_name(parser),
            Some(ToolFormat::Gemma4)
        );
        // The call line of google's gemma-4 template.
        let template = "{{- '<|tool_call>call:' + function['name'] + '{' -}}";
        assert_eq!(
            ToolFormat::from_template(template),
            Some(ToolFormat::Gemma4)
        );
    }
}
