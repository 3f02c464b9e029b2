//! Gemma 4's tool calls, as its chat template writes them:
//! `<|tool_call>call:NAME{key:VALUE,...}<tool_call|>` per call. Values are Gemma's own
//! notation: strings between `<|"|>` marks, bare keys, numbers, `true`/`false`/`null`, and
//! nested `{...}` / `[...]` in the same notation (JSON strings are read too, for values a
//! grammar wrote as JSON).

use super::parse::{read_blocks, ParsedCall, ParsedOutput};
use super::prompt::ToolSet;
use serde_json::{Map, Number, Value};

/// Opens one call.
pub(super) const CALL_BEGIN: &str = "<|tool_call>";
/// Closes one call.
pub(super) const CALL_END: &str = "<tool_call|>";
/// Quotes a string value.
pub(super) const QUOTE: &str = "<|\"|>";

/// Splits `text` into content and Gemma 4 calls of `tools` (`None`: no call, or a call of no
/// offered tool). The last call may be cut off at its end marker.
pub(super) fn parse_gemma(text: &str, tools: &ToolSet) -> Option<ParsedOutput> {
    read_blocks(text, (CALL_BEGIN, CALL_END), |body| gemma_call(body, tools))
}

/// `call:NAME{...}`.
fn gemma_call(body: &str, tools: &ToolSet) -> Option<ParsedCall> {
    let body = body.trim();
    let body = body.strip_prefix("call:").unwrap_or(body);
    let open = body.find('{')?;
    let name = body[..open].trim();
    tools.get(name)?;
    let mut reader = Reader {
        text: &body[open..],
    };
    let arguments = reader.value()?;
    if !arguments.is_object() || !reader.text.trim().is_empty() {
        return None;
    }
    Some(ParsedCall {
        name: name.to_owned(),
        arguments,
    })
}

/// A recursive-descent reader of Gemma's value notation.
struct Reader<'a> {
    text: &'a str,
}

impl Reader<'_> {
    fn skip_blank(&mut self) {
        self.text = self.text.trim_start();
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_blank();
        match self.text.strip_prefix(s) {
            Some(rest) => {
                self.text = rest;
                true
            }
            None => false,
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_blank();
        if self.eat(QUOTE) {
            let end = self.text.find(QUOTE)?;
            let s = self.text[..end].to_owned();
            self.text = &self.text[end + QUOTE.len()..];
            return Some(Value::String(s));
        }
        if self.text.starts_with('"') {
            let mut stream = serde_json::Deserializer::from_str(self.text).into_iter::<Value>();
            let v = stream.next()?.ok()?;
            self.text = &self.text[stream.byte_offset()..];
            return Some(v);
        }
        if self.eat("{") {
            let mut map = Map::new();
            loop {
                if self.eat("}") {
                    return Some(Value::Object(map));
                }
                if self.eat(",") {
                    continue;
                }
                let key = match self.value_key()? {
                    Value::String(k) => k,
                    _ => return None,
                };
                if !self.eat(":") {
                    return None;
                }
                let v = self.value()?;
                map.insert(key, v);
            }
        }
        if self.eat("[") {
            let mut items = Vec::new();
            loop {
                if self.eat("]") {
                    return Some(Value::Array(items));
                }
                if self.eat(",") {
                    continue;
                }
                items.push(self.value()?);
            }
        }
        // A bare scalar runs to the next separator.
        let end = self.text.find([',', '}', ']']).unwrap_or(self.text.len());
        let raw = self.text[..end].trim();
        if raw.is_empty() {
            return None;
        }
        self.text = &self.text[end..];
        Some(match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => match raw.parse::<i64>() {
                Ok(i) => Value::from(i),
                Err(_) => raw
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(raw.to_owned())),
            },
        })
    }

    /// A key: quoted, or bare up to the `:`.
    fn value_key(&mut self) -> Option<Value> {
        self.skip_blank();
        if self.text.starts_with(QUOTE) || self.text.starts_with('"') {
            return self.value();
        }
        let end = self.text.find(':')?;
        let key = self.text[..end].trim().to_owned();
        self.text = &self.text[end..];
        (!key.is_empty()).then_some(Value::String(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> ToolSet {
        ToolSet::from_openai(&[
            json!({"type": "function", "function": {"name": "get_weather"}}),
            json!({"type": "function", "function": {"name": "get_time"}}),
        ])
        .unwrap()
    }

    #[test]
    fn template_calls_are_read_with_typed_values() {
        // As google's template renders `{"city": "Paris, FR", "days": 3, ...}` (keys sorted).
        let text = "Let me see.<|tool_call>call:get_weather{city:<|\"|>Paris, FR<|\"|>,days:3,metric:true,opts:{<|\"|>unit<|\"|>:<|\"|>C<|\"|>,hours:[6,12.5]},tag:null}<tool_call|><|tool_call>call:get_time{}<tool_call|>";
        let out = parse_gemma(text, &tools()).unwrap();
        assert_eq!(out.content.as_deref(), Some("Let me see."));
        assert_eq!(out.calls.len(), 2);
        assert_eq!(out.calls[0].name, "get_weather");
        assert_eq!(
            out.calls[0].arguments,
            json!({"city": "Paris, FR", "days": 3, "metric": true,
                   "opts": {"unit": "C", "hours": [6, 12.5]}, "tag": null})
        );
        assert_eq!(out.calls[1].arguments, json!({}));
    }

    #[test]
    fn json_values_and_a_cut_off_end_marker_are_read() {
        let text = "<|tool_call>call:get_weather{city:\"Oslo\",days:2}<tool_c";
        let out = parse_gemma(text, &tools()).unwrap();
        assert_eq!(out.content, None);
        assert_eq!(out.calls[0].arguments, json!({"city": "Oslo", "days": 2}));
    }

    #[test]
    fn unknown_tools_broken_values_and_text_are_not_calls() {
        let t = tools();
        for text in [
            "<|tool_call>call:launch{}<tool_call|>",
            "<|tool_call>call:get_weather{city:<|\"|>Par<tool_call|>",
            "<|tool_call>call:get_weather[1]<tool_call|>",
            "<|tool_call>call:get_weather{city:<|\"|>x<|\"|>} trailing<tool_call|>",
            "Sunny today.",
        ] {
            assert_eq!(parse_gemma(text, &t), None, "{text}");
        }
        let text =
            "<|tool_call>call:get_time{}<tool_call|><|tool_call>call:get_weather{city:<|\"|>Pa";
        let out = parse_gemma(text, &t).unwrap();
        assert_eq!(out.calls.len(), 1);
        assert!(out.content.unwrap().ends_with("Pa"));
    }
}
