//! Qwen3-Coder / Qwen3.5's XML tool calls: the body of a `<tool_call>` block is
//! `<function=NAME>` followed by `<parameter=KEY>\nVALUE\n</parameter>` per argument, then
//! `</function>`. Values are raw text; each is typed by the tool's JSON schema the way Qwen's own
//! parser types them (integers, numbers, booleans, `null`, objects and arrays parsed; strings and
//! parameters the schema does not describe kept as text).

use super::parse::ParsedCall;
use super::prompt::ToolSet;
use serde_json::{Map, Value};

const FUNCTION: &str = "<function=";
const FUNCTION_END: &str = "</function>";
const PARAMETER: &str = "<parameter=";
const PARAMETER_END: &str = "</parameter>";

/// Reads one call from the inside of a `<tool_call>` block (`None`: not an XML call of an
/// offered tool, or a parameter left open).
pub(super) fn xml_call(body: &str, tools: &ToolSet) -> Option<ParsedCall> {
    let rest = body.trim().strip_prefix(FUNCTION)?;
    let name_end = rest.find('>')?;
    let name = rest[..name_end].trim();
    let tool = tools.get(name)?;
    let mut rest = &rest[name_end + 1..];
    // `</function>` may be missing at the very end of an answer; what follows it must be blank.
    if let Some(end) = rest.find(FUNCTION_END) {
        if !rest[end + FUNCTION_END.len()..].trim().is_empty() {
            return None;
        }
        rest = &rest[..end];
    }
    let properties = tool.parameters.get("properties").and_then(Value::as_object);
    let mut arguments = Map::new();
    loop {
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            break;
        }
        let after = trimmed.strip_prefix(PARAMETER)?;
        let key_end = after.find('>')?;
        let key = after[..key_end].trim();
        let after = &after[key_end + 1..];
        let value_end = after.find(PARAMETER_END)?;
        let raw = strip_one_newline(&after[..value_end]);
        let schema = properties.and_then(|p| p.get(key));
        arguments.insert(key.to_owned(), typed_value(raw, schema));
        rest = &after[value_end + PARAMETER_END.len()..];
    }
    Some(ParsedCall {
        name: name.to_owned(),
        arguments: Value::Object(arguments),
    })
}

/// The template writes a newline after the opening tag and before the closing one.
fn strip_one_newline(raw: &str) -> &str {
    let raw = raw.strip_prefix('\n').unwrap_or(raw);
    raw.strip_suffix('\n').unwrap_or(raw)
}

/// The schema's type name: `type`, the first non-null of a `type` list, else the type of its
/// `enum` values (`None`: the schema does not say).
fn schema_type(schema: &Value) -> Option<String> {
    match schema.get("type") {
        Some(Value::String(t)) => return Some(t.to_ascii_lowercase()),
        Some(Value::Array(types)) => {
            return types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .map(str::to_ascii_lowercase)
        }
        _ => {}
    }
    let values = schema.get("enum")?.as_array()?;
    values.iter().find(|v| !v.is_null()).map(|v| match v {
        Value::String(_) => "string".to_owned(),
        Value::Number(n) if n.is_f64() => "number".to_owned(),
        Value::Number(_) => "integer".to_owned(),
        Value::Bool(_) => "boolean".to_owned(),
        _ => "object".to_owned(),
    })
}

/// `raw` as the JSON value the schema asks for; text whenever it does not read as that type.
fn typed_value(raw: &str, schema: Option<&Value>) -> Value {
    let text = || Value::String(raw.to_owned());
    let Some(kind) = schema.and_then(schema_type) else {
        return text();
    };
    let trimmed = raw.trim();
    if trimmed.eq_ignore_ascii_case("null") && kind != "string" {
        return Value::Null;
    }
    match kind.as_str() {
        "string" | "str" | "text" | "varchar" | "char" | "enum" => text(),
        k if k.starts_with("int")
            || k.starts_with("uint")
            || k == "long"
            || k == "short"
            || k == "unsigned" =>
        {
            trimmed
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| text())
        }
        k if k.starts_with("num") || k.starts_with("float") || k == "double" => {
            if let Ok(i) = trimmed.parse::<i64>() {
                return Value::from(i);
            }
            trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(text)
        }
        "boolean" | "bool" | "binary" => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => text(),
        },
        // Objects, arrays and anything else: JSON when it parses.
        _ => serde_json::from_str(trimmed).unwrap_or_else(|_| text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> ToolSet {
        ToolSet::from_openai(&[json!({"type": "function", "function": {
            "name": "book",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "nights": {"type": "integer"},
                "budget": {"type": "number"},
                "late": {"type": "boolean"},
                "extras": {"type": "object"},
                "guests": {"type": "array", "items": {"type": "string"}},
                "note": {"type": ["string", "null"]},
                "room": {"enum": [1, 2, 3]}
            }}
        }})])
        .unwrap()
    }

    #[test]
    fn values_are_typed_by_the_schema() {
        let body = "\n<function=book>\n<parameter=city>\n42\n</parameter>\n\
                    <parameter=nights>\n3\n</parameter>\n<parameter=budget>\n99.5\n</parameter>\n\
                    <parameter=late>\nTrue\n</parameter>\n<parameter=extras>\n{\"bed\": \"king\"}\n</parameter>\n\
                    <parameter=guests>\n[\"Ann\", \"Bo\"]\n</parameter>\n<parameter=note>\nnull\n</parameter>\n\
                    <parameter=room>\n2\n</parameter>\n<parameter=unknown>\n7\n</parameter>\n</function>\n";
        let call = xml_call(body, &tools()).unwrap();
        assert_eq!(call.name, "book");
        assert_eq!(
            call.arguments,
            json!({"city": "42", "nights": 3, "budget": 99.5, "late": true,
                   "extras": {"bed": "king"}, "guests": ["Ann", "Bo"], "note": "null",
                   "room": 2, "unknown": "7"})
        );
    }

    #[test]
    fn multi_line_strings_and_bad_values_stay_text() {
        let body = "<function=book>\n<parameter=city>\nline one\nline two\n</parameter>\n\
                    <parameter=nights>\nthree\n</parameter>\n<parameter=budget>\n2\n</parameter>\n\
                    <parameter=late>\nmaybe\n</parameter>\n</function>";
        let call = xml_call(body, &tools()).unwrap();
        assert_eq!(
            call.arguments,
            json!({"city": "line one\nline two", "nights": "three", "budget": 2, "late": "maybe"})
        );
    }

    #[test]
    fn unknown_functions_open_parameters_and_trailing_text_are_not_calls() {
        let t = tools();
        for body in [
            "<function=launch>\n</function>",
            "<function=book>\n<parameter=city>\nParis",
            "<function=book>\n</function>\ntrailing words",
            "<function=book>\nstray text\n</function>",
            "{\"name\": \"book\"}",
        ] {
            assert_eq!(xml_call(body, &t), None, "{body}");
        }
        // No parameters, and a missing `</function>` at the end, are fine.
        let call = xml_call("<function=book>\n", &t).unwrap();
        assert_eq!(call.arguments, json!({}));
    }
}
