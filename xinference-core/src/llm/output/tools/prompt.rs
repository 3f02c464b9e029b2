//! The tools of a request: validated OpenAI function definitions, and the built-in prompt that
//! describes them to a model whose chat template has no tool support.

use super::format::ToolFormat;
use crate::{Error, Result};
use serde_json::{json, Value};

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// The function name.
    pub name: String,
    /// The JSON schema of its arguments (`{"type": "object"}` when not given).
    pub parameters: Value,
    /// Whether the caller asked for schema-exact arguments (`strict: true`).
    pub strict: bool,
}

/// The validated `tools` of a request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolSet {
    /// The functions, in request order.
    pub tools: Vec<ToolDef>,
    /// The request's `tools` array as given (for the chat template).
    pub raw: Vec<Value>,
}

impl ToolSet {
    /// Validates OpenAI `tools`: `[{"type": "function", "function": {"name", "parameters"?,
    /// "description"?, "strict"?}}]`.
    pub fn from_openai(tools: &[Value]) -> Result<ToolSet> {
        let mut out = ToolSet::default();
        for (i, tool) in tools.iter().enumerate() {
            let kind = tool
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("function");
            if kind != "function" {
                return Err(Error::bad_request(format!(
                    "tools[{i}].type must be \"function\", not {kind:?}"
                )));
            }
            let function = tool.get("function").ok_or_else(|| {
                Error::bad_request(format!("tools[{i}] has no `function` object"))
            })?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| Error::bad_request(format!("tools[{i}].function has no name")))?;
            if out.tools.iter().any(|t| t.name == name) {
                return Err(Error::bad_request(format!(
                    "tools[{i}]: the function name {name:?} is used twice"
                )));
            }
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(Error::bad_request(format!(
                        "tools[{i}].function.parameters must be a JSON schema object"
                    )))
                }
            };
            out.tools.push(ToolDef {
                name: name.to_owned(),
                parameters,
                strict: function.get("strict").and_then(Value::as_bool) == Some(true),
            });
            out.raw.push(tool.clone());
        }
        Ok(out)
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&ToolDef> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Only the tool called `name` (for a named `tool_choice`).
    pub fn only(&self, name: &str) -> Option<ToolSet> {
        let i = self.tools.iter().position(|t| t.name == name)?;
        Some(ToolSet {
            tools: vec![self.tools[i].clone()],
            raw: vec![self.raw[i].clone()],
        })
    }

    /// Whether any tool asks for schema-exact arguments.
    pub fn any_strict(&self) -> bool {
        self.tools.iter().any(|t| t.strict)
    }
}

/// The system-prompt text that teaches a model without template tool support to call `tools`
/// in `format`: Qwen3.5's XML calls for [`ToolFormat::QwenXml`], DeepSeek's call markers for
/// [`ToolFormat::DeepSeekR1`], Gemma 4's for [`ToolFormat::Gemma4`], the Hermes format otherwise.
pub fn tools_system_prompt(tools: &ToolSet, format: ToolFormat) -> String {
    let mut text = String::from("# Tools\n\n");
    text.push_str(match format {
        ToolFormat::QwenXml | ToolFormat::DeepSeekR1 | ToolFormat::Gemma4 => "<tools>",
        _ => {
            "You may call one or more functions to assist with the user query.\n\n\
             You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
        }
    });
    for tool in &tools.raw {
        text.push('\n');
        text.push_str(&tool.to_string());
    }
    text.push_str(match format {
        ToolFormat::QwenXml => {
            "\n</tools>\n\nTo call a function, reply only with:\n<tool_call>\n<function=NAME>\n\
             <parameter=KEY>\nVALUE\n</parameter>\n</function>\n</tool_call>"
        }
        ToolFormat::DeepSeekR1 => {
            "\n</tools>\n\nTo call functions, reply only with:\n<｜tool▁calls▁begin｜>\
             <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{ARGUMENTS}\n```\
             <｜tool▁call▁end｜><｜tool▁calls▁end｜>"
        }
        ToolFormat::Gemma4 => {
            "\n</tools>\n\nTo call a function, reply only with:\n\
             <|tool_call>call:NAME{KEY:VALUE,...}<tool_call|>\n\
             (string values between <|\"|> and <|\"|>)"
        }
        _ => {
            "\n</tools>\n\nFor each function call, return a json object with function name and \
             arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n\
             {\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
        }
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_validated() {
        let ok = ToolSet::from_openai(&[json!({"type": "function", "function": {"name": "f"}})])
            .unwrap();
        assert_eq!(ok.tools[0].parameters["type"], "object");
        assert!(!ok.any_strict());
        for bad in [
            json!({"type": "retrieval"}),
            json!({"type": "function"}),
            json!({"type": "function", "function": {"name": ""}}),
            json!({"type": "function", "function": {"name": "f", "parameters": 3}}),
        ] {
            assert!(ToolSet::from_openai(&[bad]).is_err());
        }
        let twice = json!({"type": "function", "function": {"name": "f"}});
        assert!(ToolSet::from_openai(&[twice.clone(), twice]).is_err());
    }
}
