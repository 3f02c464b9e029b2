//! Tool calls in a streamed answer: text is passed on as it comes, except what may be the start
//! of a call; from the first call marker on (or from the start, when the answer opens like a
//! bare JSON call) the text is held and parsed at the end, so raw call markup never leaks out
//! as content.

use super::format::ToolFormat;
use super::parse::{parse_tool_output, ParsedCall};
use super::prompt::ToolSet;
use crate::llm::output::marker::partial_suffix;

/// What the stream parser releases.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolStreamEvent {
    /// Plain answer text.
    Content(String),
    /// A complete call, the `index`-th of the answer.
    Call {
        /// Position of the call in the answer.
        index: usize,
        /// The call.
        call: ParsedCall,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Only whitespace so far.
    Start,
    /// Plain text, watching for a call marker.
    Text,
    /// Holding everything until the end.
    Holding,
}

/// Splits a streamed answer into text and tool calls.
pub struct ToolStreamParser {
    format: ToolFormat,
    tools: ToolSet,
    state: State,
    pending: String,
}

impl ToolStreamParser {
    /// A parser for answers in `format` that may call `tools`.
    pub fn new(format: ToolFormat, tools: ToolSet) -> Self {
        ToolStreamParser {
            format,
            tools,
            state: State::Start,
            pending: String::new(),
        }
    }

    /// Takes the next piece of the answer; returns what can be released now.
    pub fn push(&mut self, text: &str) -> Vec<ToolStreamEvent> {
        self.pending.push_str(text);
        if self.state == State::Start {
            let trimmed = self.pending.trim_start();
            let Some(first) = trimmed.chars().next() else {
                return Vec::new();
            };
            self.state = if matches!(first, '{' | '[' | '`') {
                State::Holding
            } else if self.format == ToolFormat::Glm4 {
                // GLM-4 opens a call with the bare function name on its own line.
                match trimmed.split_once('\n') {
                    Some((line, _)) if self.tools.get(line.trim()).is_some() => State::Holding,
                    Some(_) => State::Text,
                    None if self.tools.tools.iter().any(|t| t.name.starts_with(trimmed)) => {
                        return Vec::new()
                    }
                    None => State::Text,
                }
            } else {
                State::Text
            };
        }
        if self.state != State::Text {
            return Vec::new();
        }
        let marker = self.format.call_marker().unwrap_or("\u{0}");
        if let Some(at) = self.pending.find(marker) {
            let before: String = self.pending.drain(..at).collect();
            self.state = State::Holding;
            return content(before);
        }
        let keep = partial_suffix(&self.pending, marker);
        let release: String = self.pending.drain(..self.pending.len() - keep).collect();
        content(release)
    }

    /// The answer ended: releases what was held, as calls when it reads as calls.
    pub fn finish(&mut self) -> Vec<ToolStreamEvent> {
        let held = std::mem::take(&mut self.pending);
        if self.state != State::Holding {
            return content(held);
        }
        let parsed = parse_tool_output(self.format, &held, &self.tools);
        let mut events = content(parsed.content.unwrap_or_default());
        events.extend(
            parsed
                .calls
                .into_iter()
                .enumerate()
                .map(|(index, call)| ToolStreamEvent::Call { index, call }),
        );
        events
    }
}

fn content(text: String) -> Vec<ToolStreamEvent> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![ToolStreamEvent::Content(text)]
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

    /// Feeds `text` in pieces of `step` characters; returns (content, calls).
    fn run(format: ToolFormat, text: &str, step: usize) -> (String, Vec<(usize, String)>) {
        let mut parser = ToolStreamParser::new(format, tools());
        let chars: Vec<char> = text.chars().collect();
        let mut events = Vec::new();
        for piece in chars.chunks(step) {
            events.extend(parser.push(&piece.iter().collect::<String>()));
        }
        events.extend(parser.finish());
        let mut content = String::new();
        let mut calls = Vec::new();
        for e in events {
            match e {
                ToolStreamEvent::Content(t) => content.push_str(&t),
                ToolStreamEvent::Call { index, call } => calls.push((index, call.name)),
            }
        }
        (content, calls)
    }

    /// Feeds `text` in pieces of `step` characters, checking that no markup (`<`) reaches the
    /// content and no call comes out before the end; returns (content, calls).
    fn run_markup_free(
        format: ToolFormat,
        tools: ToolSet,
        text: &str,
        step: usize,
    ) -> (String, Vec<(usize, ParsedCall)>) {
        let mut parser = ToolStreamParser::new(format, tools);
        let chars: Vec<char> = text.chars().collect();
        let mut content = String::new();
        let mut calls = Vec::new();
        for piece in chars.chunks(step) {
            for e in parser.push(&piece.iter().collect::<String>()) {
                match e {
                    ToolStreamEvent::Content(t) => {
                        assert!(!t.contains('<'), "markup leaked at step {step}: {t:?}");
                        content.push_str(&t);
                    }
                    ToolStreamEvent::Call { .. } => panic!("a call before the end"),
                }
            }
        }
        for e in parser.finish() {
            match e {
                ToolStreamEvent::Content(t) => content.push_str(&t),
                ToolStreamEvent::Call { index, call } => calls.push((index, call)),
            }
        }
        (content, calls)
    }

    #[test]
    fn markup_never_leaks_and_calls_come_out_whole() {
        let text = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        for step in [1, 2, 3, 7, 1000] {
            let (content, calls) = run(ToolFormat::Hermes, text, step);
            assert_eq!(content, "Sure.\n", "step {step}");
            assert_eq!(
                calls,
                vec![(0, "get_weather".into()), (1, "get_time".into())]
            );
        }
    }

    #[test]
    fn plain_text_streams_through_and_a_near_marker_is_released() {
        let (content, calls) = run(ToolFormat::Hermes, "a < b and <tool is not a call", 1);
        assert_eq!(content, "a < b and <tool is not a call");
        assert!(calls.is_empty());
    }

    #[test]
    fn bare_json_answers_are_held_and_parsed() {
        let (content, calls) = run(
            ToolFormat::Hermes,
            "```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n```",
            2,
        );
        assert_eq!(content, "");
        assert_eq!(calls, vec![(0, "get_weather".into())]);
        let (content, calls) = run(ToolFormat::Hermes, "{\"not\": \"a call\"}", 2);
        assert_eq!(content, "{\"not\": \"a call\"}");
        assert!(calls.is_empty());
    }

    #[test]
    fn a_broken_call_comes_back_as_content() {
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"argu";
        let (content, calls) = run(ToolFormat::Hermes, text, 3);
        assert_eq!(content, text);
        assert!(calls.is_empty());
    }

    #[test]
    fn glm4_name_lines_are_held() {
        let (content, calls) = run(ToolFormat::Glm4, "get_weather\n{\"city\": \"Paris\"}", 2);
        assert_eq!(content, "");
        assert_eq!(calls, vec![(0, "get_weather".into())]);
        let (content, calls) = run(ToolFormat::Glm4, "get ready: it is sunny", 2);
        assert_eq!(content, "get ready: it is sunny");
        assert!(calls.is_empty());
    }

    #[test]
    fn qwen_xml_calls_are_read_whole_from_any_chunking() {
        let tools = ToolSet::from_openai(&[json!({"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}
            }}
        }})])
        .unwrap();
        let text = "I will check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\n10\n</parameter>\n</function>\n</tool_call>";
        for step in [1, 2, 5, 11, 10_000] {
            let (content, calls) = run_markup_free(ToolFormat::QwenXml, tools.clone(), text, step);
            assert_eq!(content, "I will check.\n", "step {step}");
            assert_eq!(calls.len(), 2, "step {step}");
            assert_eq!(
                calls[0].1.arguments,
                json!({"city": "San Francisco", "days": 3, "metric": true})
            );
            assert_eq!(
                (calls[1].0, &calls[1].1.arguments),
                (1, &json!({"city": "10"}))
            );
        }
    }

    #[test]
    fn a_qwen_xml_call_cut_off_mid_parameter_comes_back_as_content() {
        let text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar";
        let (content, calls) = run(ToolFormat::QwenXml, text, 4);
        assert_eq!(content, text);
        assert!(calls.is_empty());
    }

    #[test]
    fn deepseek_calls_are_read_whole_from_any_chunking() {
        let text = "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        for step in [1, 2, 3, 7, 10_000] {
            let (content, calls) = run_markup_free(ToolFormat::DeepSeekR1, tools(), text, step);
            assert_eq!(content, "I will look.", "step {step}");
            assert_eq!(calls.len(), 2, "step {step}");
            assert_eq!(calls[0].1.name, "get_weather");
            assert_eq!(calls[0].1.arguments, json!({"city": "Paris"}));
            assert_eq!((calls[1].0, calls[1].1.name.as_str()), (1, "get_time"));
        }
        // Text that only looks like the start of a marker streams through; a broken call
        // comes back as content.
        let (content, calls) = run(ToolFormat::DeepSeekR1, "a <｜tool is not a call", 1);
        assert_eq!(content, "a <｜tool is not a call");
        assert!(calls.is_empty());
        let broken = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"ci";
        let (content, calls) = run(ToolFormat::DeepSeekR1, broken, 3);
        assert_eq!(content, broken);
        assert!(calls.is_empty());
    }

    #[test]
    fn gemma4_calls_are_read_whole_from_any_chunking() {
        let text = "Checking.<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:3}<tool_call|><|tool_call>call:get_time{}<tool_call|>";
        for step in [1, 2, 3, 7, 10_000] {
            let (content, calls) = run_markup_free(ToolFormat::Gemma4, tools(), text, step);
            assert_eq!(content, "Checking.", "step {step}");
            assert_eq!(calls.len(), 2, "step {step}");
            assert_eq!(calls[0].1.arguments, json!({"city": "Paris", "days": 3}));
            assert_eq!((calls[1].0, calls[1].1.name.as_str()), (1, "get_time"));
        }
        let broken = "<|tool_call>call:get_weather{city:<|\"|>Pa";
        let (content, calls) = run(ToolFormat::Gemma4, broken, 3);
        assert_eq!(content, broken);
        assert!(calls.is_empty());
    }
}
