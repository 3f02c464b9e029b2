//! Shaping generated text into an OpenAI assistant message: reasoning split off into
//! `reasoning_content`, tool calls parsed into `tool_calls`, whole or as stream deltas.

use crate::llm::reasoning::{ReasoningPiece, ReasoningSplitter, ReasoningTags};
use crate::llm::tools::{
    parse_tool_output, ParsedCall, ToolFormat, ToolSet, ToolStreamEvent, ToolStreamParser,
};
use crate::protocol::chat::{
    AssistantMessage, ChatDelta, FunctionCall, FunctionCallDelta, ToolCall, ToolCallDelta,
};

/// How answers of one request are read: known once the prompt is built on the worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnswerFormat {
    /// Split reasoning off with these tags.
    pub reasoning: Option<ReasoningTags>,
    /// The prompt ended inside an opened reasoning block.
    pub reasoning_opened: bool,
    /// Special tokens the answer is read with, decoded as text (the reasoning tags' own, e.g.
    /// Gemma 4's `<|channel>` and `<channel|>`, and its tool-call marks when tools are offered).
    pub kept_tokens: Vec<u32>,
    /// Parse calls of these tools in this format.
    pub tools: Option<(ToolFormat, ToolSet)>,
    /// `parallel_tool_calls: false`: only the first call is returned (as vLLM does), whether
    /// or not a grammar already held the model to one.
    pub single_call: bool,
}

fn tool_call_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &id[..24])
}

fn to_tool_call(call: ParsedCall) -> ToolCall {
    ToolCall {
        id: tool_call_id(),
        kind: "function".into(),
        function: FunctionCall {
            arguments: call.arguments_json(),
            name: call.name,
        },
    }
}

impl AnswerFormat {
    /// The assistant message of a whole answer, and whether it holds tool calls.
    pub fn message(&self, text: &str) -> (AssistantMessage, bool) {
        let (reasoning, content) = match &self.reasoning {
            Some(tags) => ReasoningSplitter::new(tags.clone(), self.reasoning_opened).split(text),
            None => (None, text.to_owned()),
        };
        let (content, tool_calls) = match &self.tools {
            Some((format, tools)) => {
                let parsed = parse_tool_output(*format, &content, tools);
                if parsed.calls.is_empty() {
                    (Some(content), Some(Vec::new()))
                } else {
                    let keep = if self.single_call { 1 } else { usize::MAX };
                    let calls = parsed
                        .calls
                        .into_iter()
                        .take(keep)
                        .map(to_tool_call)
                        .collect();
                    (parsed.content, Some(calls))
                }
            }
            None => (Some(content), None),
        };
        let has_calls = tool_calls.as_ref().is_some_and(|c| !c.is_empty());
        (
            AssistantMessage {
                role: "assistant".into(),
                content,
                reasoning_content: reasoning,
                tool_calls,
            },
            has_calls,
        )
    }

    /// A stream shaper for one answer.
    pub fn streamer(&self) -> AnswerStream {
        AnswerStream {
            reasoning: self
                .reasoning
                .clone()
                .map(|tags| ReasoningSplitter::new(tags, self.reasoning_opened)),
            tools: self
                .tools
                .clone()
                .map(|(format, tools)| ToolStreamParser::new(format, tools)),
            calls: 0,
            single_call: self.single_call,
        }
    }
}

/// Turns the text of a streamed answer into chat deltas.
pub(crate) struct AnswerStream {
    reasoning: Option<ReasoningSplitter>,
    tools: Option<ToolStreamParser>,
    calls: usize,
    single_call: bool,
}

impl AnswerStream {
    /// Whether answers are split into reasoning and content.
    pub fn splits_reasoning(&self) -> bool {
        self.reasoning.is_some()
    }

    /// Deltas for the next piece of text.
    pub fn push(&mut self, text: &str) -> Vec<ChatDelta> {
        let pieces = match &mut self.reasoning {
            Some(r) => r.push(text),
            None => vec![ReasoningPiece::Content(text.to_owned())],
        };
        self.deltas(pieces, false)
    }

    /// Deltas for what was held back, once the answer ended; and whether it held tool calls.
    pub fn finish(&mut self) -> (Vec<ChatDelta>, bool) {
        let pieces = match &mut self.reasoning {
            Some(r) => r.finish(),
            None => Vec::new(),
        };
        let deltas = self.deltas(pieces, true);
        (deltas, self.calls > 0)
    }

    fn deltas(&mut self, pieces: Vec<ReasoningPiece>, last: bool) -> Vec<ChatDelta> {
        let mut out = Vec::new();
        let mut events = Vec::new();
        for piece in pieces {
            match piece {
                ReasoningPiece::Reasoning(t) => out.push(ChatDelta {
                    reasoning_content: Some(t),
                    ..ChatDelta::default()
                }),
                ReasoningPiece::Content(t) => match &mut self.tools {
                    Some(parser) => events.extend(parser.push(&t)),
                    None => events.push(ToolStreamEvent::Content(t)),
                },
            }
        }
        if last {
            if let Some(parser) = &mut self.tools {
                events.extend(parser.finish());
            }
        }
        for event in events {
            match event {
                ToolStreamEvent::Content(t) => out.push(ChatDelta {
                    content: Some(t),
                    ..ChatDelta::default()
                }),
                ToolStreamEvent::Call { .. } if self.single_call && self.calls > 0 => {}
                ToolStreamEvent::Call { index, call } => {
                    self.calls += 1;
                    let call = to_tool_call(call);
                    // OpenAI's shape: the id, type and name once, then argument fragments.
                    out.push(ChatDelta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            id: Some(call.id),
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: Some(call.function.name),
                                arguments: Some(String::new()),
                            }),
                        }]),
                        ..ChatDelta::default()
                    });
                    out.push(ChatDelta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(call.function.arguments),
                            }),
                            ..ToolCallDelta::default()
                        }]),
                        ..ChatDelta::default()
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn format() -> AnswerFormat {
        AnswerFormat {
            reasoning: Some(ReasoningTags {
                start: "<think>".into(),
                end: "</think>".into(),
            }),
            reasoning_opened: false,
            kept_tokens: Vec::new(),
            tools: Some((
                ToolFormat::Hermes,
                ToolSet::from_openai(&[
                    json!({"type": "function", "function": {"name": "get_weather"}}),
                ])
                .unwrap(),
            )),
            single_call: false,
        }
    }

    const ANSWER: &str = "<think>I need the weather.</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    #[test]
    fn whole_answers_split_reasoning_and_calls() {
        let (message, has_calls) = format().message(ANSWER);
        assert!(has_calls);
        assert_eq!(message.content, None);
        assert_eq!(
            message.reasoning_content.as_deref(),
            Some("I need the weather.")
        );
        let calls = message.tool_calls.unwrap();
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, "{\"city\":\"Paris\"}");
        assert!(calls[0].id.starts_with("call_"));
    }

    #[test]
    fn streamed_answers_give_the_same_result() {
        let mut stream = format().streamer();
        let mut deltas = Vec::new();
        for piece in ANSWER.as_bytes().chunks(4) {
            deltas.extend(stream.push(std::str::from_utf8(piece).unwrap()));
        }
        let (rest, has_calls) = stream.finish();
        deltas.extend(rest);
        assert!(has_calls);
        let reasoning: String = deltas
            .iter()
            .filter_map(|d| d.reasoning_content.clone())
            .collect();
        assert_eq!(reasoning, "I need the weather.");
        assert!(deltas.iter().all(|d| d.content.is_none()), "{deltas:?}");
        let calls: Vec<&ToolCallDelta> = deltas
            .iter()
            .flat_map(|d| d.tool_calls.iter().flatten())
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0].function.as_ref().unwrap().name.as_deref(),
            Some("get_weather")
        );
        assert_eq!(calls[1].id, None);
        assert_eq!(
            calls[1].function.as_ref().unwrap().arguments.as_deref(),
            Some("{\"city\":\"Paris\"}")
        );
    }

    #[test]
    fn unreadable_calls_are_content() {
        let (message, has_calls) = format().message("<tool_call>{oops</tool_call>");
        assert!(!has_calls);
        assert_eq!(
            message.content.as_deref(),
            Some("<tool_call>{oops</tool_call>")
        );
        assert_eq!(message.tool_calls, Some(Vec::new()));
    }

    #[test]
    fn parallel_tool_calls_false_keeps_the_first_call() {
        let two = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}\n</tool_call>";
        let mut f = format();
        let (message, _) = f.message(two);
        assert_eq!(message.tool_calls.unwrap().len(), 2);
        f.single_call = true;
        let (message, has_calls) = f.message(two);
        let calls = message.tool_calls.unwrap();
        assert!(has_calls);
        assert_eq!(calls.len(), 1);
        assert!(calls[0].function.arguments.contains("Paris"));
        let mut stream = f.streamer();
        let mut deltas = Vec::new();
        for piece in two.split_inclusive('\n') {
            deltas.extend(stream.push(piece));
        }
        deltas.extend(stream.finish().0);
        let streamed: Vec<_> = deltas
            .iter()
            .filter_map(|d| d.tool_calls.as_ref())
            .flatten()
            .collect();
        assert!(!streamed.is_empty());
        assert!(streamed.iter().all(|c| c.index == 0), "{streamed:?}");
        let args: String = streamed
            .iter()
            .filter_map(|c| c.function.as_ref()?.arguments.clone())
            .collect();
        assert!(args.contains("Paris") && !args.contains("Lyon"), "{args}");
    }
}
