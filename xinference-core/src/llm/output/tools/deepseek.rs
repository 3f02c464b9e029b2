//! DeepSeek-R1 / V3's tool calls, as their chat templates write them:
//! `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{...}\n```
//! <｜tool▁call▁end｜>` per call (calls separated by a newline), then `<｜tool▁calls▁end｜>`.
//! The R1 distills (Qwen, Llama) and R1-0528-Qwen3 share it. A call written V3.1's way
//! (`NAME<｜tool▁sep｜>{...}`, no type and no fence) is read too.

use super::parse::{call_arguments, cut_partial, non_empty, read_blocks, ParsedCall, ParsedOutput};
use super::prompt::ToolSet;

/// Opens the list of calls.
pub(super) const CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
/// Closes the list of calls.
pub(super) const CALLS_END: &str = "<｜tool▁calls▁end｜>";
/// Opens one call.
pub(super) const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
/// Closes one call.
pub(super) const CALL_END: &str = "<｜tool▁call▁end｜>";
/// Between the call's type and its name.
pub(super) const SEP: &str = "<｜tool▁sep｜>";
/// The common start of [`CALLS_BEGIN`] and [`CALL_BEGIN`]: models sometimes skip the list
/// marker and open a call directly.
pub(super) const MARKER: &str = "<｜tool▁call";

/// Splits `text` into content and DeepSeek calls of `tools` (`None`: no call, or a call that
/// is not one of an offered tool). The last call may be cut off at its end marker; the list's
/// markers around the calls (one of them possibly cut off at the end) are not content.
pub(super) fn parse_deepseek(text: &str, tools: &ToolSet) -> Option<ParsedOutput> {
    let mut out = read_blocks(text, (CALL_BEGIN, CALL_END), |body| {
        deepseek_call(body, tools)
    })?;
    if let Some(content) = &out.content {
        let content = content.replace(CALLS_BEGIN, "").replace(CALLS_END, "");
        out.content = non_empty(cut_partial(&content, CALLS_END));
    }
    Some(out)
}

/// One call's body: `TYPE<｜tool▁sep｜>NAME\n```json\nARGS\n```` (or V3.1's `NAME<｜tool▁sep｜>ARGS`).
fn deepseek_call(body: &str, tools: &ToolSet) -> Option<ParsedCall> {
    let (head, tail) = body.split_once(SEP)?;
    let (name, args) = match tail.split_once('\n') {
        Some((name, args)) if tools.get(name.trim()).is_some() => (name.trim(), args),
        _ => (head.trim(), tail),
    };
    tools.get(name)?;
    let args = args.trim();
    let args = args
        .strip_prefix("```json")
        .or_else(|| args.strip_prefix("```"))
        .unwrap_or(args);
    let args = args.trim_end();
    let args = args.strip_suffix("```").unwrap_or(args);
    Some(ParsedCall {
        name: name.to_owned(),
        arguments: call_arguments(args.trim())?,
    })
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

    /// Two calls exactly as the R1 templates render an assistant's `tool_calls`.
    const TWO_CALLS: &str = "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

    #[test]
    fn template_calls_are_read_with_the_text_before_them() {
        let out = parse_deepseek(TWO_CALLS, &tools()).unwrap();
        assert_eq!(out.content.as_deref(), Some("I will look."));
        assert_eq!(out.calls.len(), 2);
        assert_eq!(out.calls[0].name, "get_weather");
        assert_eq!(out.calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(out.calls[1].name, "get_time");
        assert_eq!(out.calls[1].arguments, json!({}));
    }

    #[test]
    fn a_missing_list_marker_an_unfenced_body_and_v31_calls_are_read() {
        let t = tools();
        for text in [
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n{\"city\": \"Oslo\"}<｜tool▁call▁end｜>",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Oslo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            // Cut off by max_tokens inside the end markers.
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call",
        ] {
            let out = parse_deepseek(text, &t).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(out.content, None, "{text}");
            assert_eq!(out.calls.len(), 1, "{text}");
            assert_eq!(out.calls[0].arguments, json!({"city": "Oslo"}), "{text}");
        }
    }

    #[test]
    fn unknown_tools_bad_json_and_plain_text_are_not_calls() {
        let t = tools();
        for text in [
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>launch\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Par\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            "<｜tool▁calls▁begin｜>no calls here",
            "It is sunny.",
        ] {
            assert_eq!(parse_deepseek(text, &t), None, "{text}");
        }
        // A second call cut off mid-way stays content beside the first.
        let text = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"ci";
        let out = parse_deepseek(text, &t).unwrap();
        assert_eq!(out.calls.len(), 1);
        assert!(out.content.unwrap().ends_with("{\"ci"));
    }
}
