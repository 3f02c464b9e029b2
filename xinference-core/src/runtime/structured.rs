//! What a chat or completion request asks of the output's shape: `tools` with `tool_choice`,
//! `response_format`, and Xinference's `guided_*` fields, validated up front (400s) and turned
//! into a grammar once the model's tool format is known.

use crate::llm::tools::{ToolFormat, ToolSet};
use crate::llm::Grammar;
use crate::{Error, Result};
use serde_json::{Map, Value};

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolChoice {
    /// The model decides (the default).
    Auto,
    /// No tool calls: tools are not shown to the model.
    None,
    /// At least one call, of any tool.
    Required,
    /// A call of this tool.
    Named(String),
}

impl ToolChoice {
    fn parse(value: Option<&Value>) -> Result<ToolChoice> {
        match value {
            None | Some(Value::Null) => Ok(ToolChoice::Auto),
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" | "any" => Ok(ToolChoice::Required),
                other => Err(Error::bad_request(format!(
                    "tool_choice must be \"auto\", \"none\", \"required\" or a function, not {other:?}"
                ))),
            },
            Some(Value::Object(o)) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Named(n.to_owned()))
                .ok_or_else(|| {
                    Error::bad_request(
                        "tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    )
                }),
            Some(_) => Err(Error::bad_request("tool_choice must be a string or an object")),
        }
    }
}

/// The tools of a chat request and how they may be used.
#[derive(Debug, Clone)]
pub(crate) struct ToolRequest {
    /// The offered tools (only the named one for a named choice).
    pub tools: ToolSet,
    /// The choice.
    pub choice: ToolChoice,
    /// Several calls may be made in one answer (`parallel_tool_calls`, default true).
    pub parallel: bool,
}

impl ToolRequest {
    /// Validates `tools` and `tool_choice`; `None` when no tools are in play.
    pub fn from_request(
        tools: Option<&[Value]>,
        choice: Option<&Value>,
        parallel: Option<&Value>,
    ) -> Result<Option<Self>> {
        let parallel = match parallel {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Error::bad_request(
                    "parallel_tool_calls must be true or false",
                ))
            }
        };
        let choice = ToolChoice::parse(choice)?;
        let tools = match tools {
            Some(t) if !t.is_empty() => ToolSet::from_openai(t)?,
            _ => {
                return match choice {
                    ToolChoice::Auto | ToolChoice::None => Ok(None),
                    _ => Err(Error::bad_request(
                        "tool_choice asks for a tool call, but the request has no tools",
                    )),
                }
            }
        };
        if let ToolChoice::Named(name) = &choice {
            if tools.get(name).is_none() {
                return Err(Error::bad_request(format!(
                    "tool_choice names {name:?}, which is not among the tools"
                )));
            }
        }
        if choice == ToolChoice::None {
            return Ok(None);
        }
        Ok(Some(ToolRequest {
            tools,
            choice,
            parallel,
        }))
    }

    /// The grammar that enforces this request's calls in `format`: always for a required or
    /// named choice, and for `auto` when a tool is `strict` (calls or plain text then).
    pub fn grammar(&self, format: ToolFormat) -> Option<Grammar> {
        match &self.choice {
            ToolChoice::Required => Some(Grammar::Lark(
                format.calls_grammar(&self.tools, self.parallel),
            )),
            ToolChoice::Named(name) => {
                let only = self.tools.only(name)?;
                Some(Grammar::Lark(format.calls_grammar(&only, self.parallel)))
            }
            ToolChoice::Auto if self.tools.any_strict() => Some(Grammar::Lark(
                format.calls_or_text_grammar(&self.tools, self.parallel),
            )),
            ToolChoice::Auto | ToolChoice::None => None,
        }
    }
}

/// The output grammar asked for by `response_format` or a `guided_*` field, if any.
pub(crate) fn requested_grammar(extra: &Map<String, Value>) -> Result<Option<Grammar>> {
    let mut found: Vec<Grammar> = Vec::new();
    if let Some(format) = extra.get("response_format").filter(|v| !v.is_null()) {
        let kind = format
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_request("response_format must be an object with a `type`"))?;
        match kind {
            "text" => {}
            "json_object" => found.push(Grammar::JsonSchema(any_object())),
            "json_schema" => {
                let spec = format.get("json_schema").ok_or_else(|| {
                    Error::bad_request("response_format json_schema needs a `json_schema` object")
                })?;
                let schema = spec.get("schema").cloned().unwrap_or_else(any_object);
                if !schema.is_object() {
                    return Err(Error::bad_request(
                        "response_format.json_schema.schema must be a JSON schema object",
                    ));
                }
                found.push(Grammar::JsonSchema(schema));
            }
            other => {
                return Err(Error::bad_request(format!(
                    "response_format type must be text, json_object or json_schema, not {other:?}"
                )))
            }
        }
    }
    if let Some(schema) = extra.get("guided_json").filter(|v| !v.is_null()) {
        let schema = match schema {
            Value::String(s) => serde_json::from_str(s)
                .map_err(|e| Error::bad_request(format!("guided_json is not JSON: {e}")))?,
            other => other.clone(),
        };
        if !schema.is_object() {
            return Err(Error::bad_request(
                "guided_json must be a JSON schema object",
            ));
        }
        found.push(Grammar::JsonSchema(schema));
    }
    if extra.get("guided_json_object").and_then(Value::as_bool) == Some(true) {
        found.push(Grammar::JsonSchema(any_object()));
    }
    if let Some(rx) = extra.get("guided_regex").filter(|v| !v.is_null()) {
        let rx = rx
            .as_str()
            .ok_or_else(|| Error::bad_request("guided_regex must be a string"))?;
        found.push(Grammar::Regex(rx.to_owned()));
    }
    if let Some(choices) = extra.get("guided_choice").filter(|v| !v.is_null()) {
        let choices: Vec<String> = choices
            .as_array()
            .and_then(|c| c.iter().map(|v| v.as_str().map(str::to_owned)).collect())
            .filter(|c: &Vec<String>| !c.is_empty())
            .ok_or_else(|| {
                Error::bad_request("guided_choice must be a non-empty list of strings")
            })?;
        found.push(Grammar::choice(&choices));
    }
    if let Some(g) = extra.get("guided_grammar").filter(|v| !v.is_null()) {
        let g = g
            .as_str()
            .ok_or_else(|| Error::bad_request("guided_grammar must be a string (Lark)"))?;
        found.push(Grammar::Lark(g.to_owned()));
    }
    if found.len() > 1 {
        return Err(Error::bad_request(
            "give one of response_format, guided_json, guided_regex, guided_choice and guided_grammar",
        ));
    }
    Ok(found.pop())
}

fn any_object() -> Value {
    serde_json::json!({"type": "object"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extra(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn output_shapes_are_read_and_checked() {
        assert_eq!(requested_grammar(&extra(json!({}))).unwrap(), None);
        assert_eq!(
            requested_grammar(&extra(json!({"response_format": {"type": "json_object"}}))).unwrap(),
            Some(Grammar::JsonSchema(json!({"type": "object"})))
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(
            requested_grammar(&extra(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}))).unwrap(),
            Some(Grammar::JsonSchema(schema.clone()))
        );
        assert_eq!(
            requested_grammar(&extra(json!({"guided_json": schema.to_string()}))).unwrap(),
            Some(Grammar::JsonSchema(schema))
        );
        assert_eq!(
            requested_grammar(&extra(json!({"guided_regex": "[0-9]+"}))).unwrap(),
            Some(Grammar::Regex("[0-9]+".into()))
        );
        for bad in [
            json!({"response_format": {"type": "xml"}}),
            json!({"response_format": "json"}),
            json!({"guided_choice": []}),
            json!({"guided_choice": [1, 2]}),
            json!({"guided_regex": "a", "guided_choice": ["b"]}),
            json!({"guided_json": "{not json"}),
        ] {
            assert!(requested_grammar(&extra(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn tool_choices_are_checked_against_the_tools() {
        let tools = vec![json!({"type": "function", "function": {"name": "f"}})];
        let named = json!({"type": "function", "function": {"name": "f"}});
        let r = ToolRequest::from_request(Some(&tools), Some(&named), None)
            .unwrap()
            .unwrap();
        assert_eq!(r.choice, ToolChoice::Named("f".into()));
        assert!(r.grammar(ToolFormat::Hermes).is_some());
        let auto = ToolRequest::from_request(Some(&tools), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(auto.grammar(ToolFormat::Hermes), None);
        assert!(
            ToolRequest::from_request(Some(&tools), Some(&json!("none")), None)
                .unwrap()
                .is_none()
        );
        let other = json!({"type": "function", "function": {"name": "g"}});
        assert!(ToolRequest::from_request(Some(&tools), Some(&other), None).is_err());
        assert!(ToolRequest::from_request(None, Some(&json!("required")), None).is_err());
        assert!(ToolRequest::from_request(Some(&tools), Some(&json!("sometimes")), None).is_err());
    }
}
