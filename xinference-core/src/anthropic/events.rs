//! A streamed chat answer as Anthropic stream events.

use super::response::{new_message_id, new_tool_id, stop_reason};
use crate::protocol::anthropic::{
    BlockDelta, ContentBlock, DeltaUsage, Message, MessageDelta, StreamEvent, Usage,
};
use crate::protocol::chat::ChatCompletionChunk;
use crate::Result;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::json;
use std::collections::BTreeMap;

/// The stream of Anthropic events for a stream of chat chunks: [`EventTranslator`] applied
/// to each chunk, its closing events at the end; a failure ends the stream.
pub fn translate_stream(
    chunks: BoxStream<'static, Result<ChatCompletionChunk>>,
    model: String,
    stop_sequences: Vec<String>,
) -> BoxStream<'static, Result<StreamEvent>> {
    let translator = EventTranslator::new(new_message_id(), model, stop_sequences);
    let start = translator.start();
    let body = chunks
        .map(Some)
        .chain(stream::once(async { None }))
        .scan((translator, false), |(t, failed), item| {
            if *failed {
                return futures::future::ready(None);
            }
            let out: Vec<Result<StreamEvent>> = match item {
                Some(Ok(chunk)) => t.chunk(&chunk).into_iter().map(Ok).collect(),
                Some(Err(e)) => {
                    *failed = true;
                    vec![Err(e)]
                }
                None => t.finish().into_iter().map(Ok).collect(),
            };
            futures::future::ready(Some(stream::iter(out)))
        })
        .flatten();
    stream::iter(start.into_iter().map(Ok)).chain(body).boxed()
}

/// What the open block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
}

/// A tool call being collected from its fragments.
#[derive(Debug, Default)]
struct PendingTool {
    id: Option<String>,
    name: String,
    fragments: Vec<String>,
}

/// Turns the chunks of a streamed chat answer into Anthropic stream events, in Anthropic's
/// order: `message_start`; per block `content_block_start`, deltas, `content_block_stop`
/// (a `ping` after the first start); then `message_delta` and `message_stop`.
///
/// Thinking and text stream as they come; each switch between them closes the open block.
/// Tool-call fragments are collected by their OpenAI index and sent, whole and in index order,
/// when the answer ends.
#[derive(Debug)]
pub struct EventTranslator {
    id: String,
    model: String,
    stop_sequences: Vec<String>,
    next_index: usize,
    open: Option<Open>,
    pinged: bool,
    tools: BTreeMap<usize, PendingTool>,
    finish_reason: Option<String>,
    stop_sequence: Option<String>,
    input_tokens: Option<usize>,
    output_tokens: usize,
}

impl EventTranslator {
    /// A translator for the message `id` (`msg_...`) of `model`.
    pub fn new(id: String, model: String, stop_sequences: Vec<String>) -> Self {
        EventTranslator {
            id,
            model,
            stop_sequences,
            next_index: 0,
            open: None,
            pinged: false,
            tools: BTreeMap::new(),
            finish_reason: None,
            stop_sequence: None,
            input_tokens: None,
            output_tokens: 0,
        }
    }

    /// The first event: `message_start`, with empty content and zero usage (the prompt's
    /// length is reported in `message_delta`).
    pub fn start(&self) -> Vec<StreamEvent> {
        vec![StreamEvent::MessageStart {
            message: Message {
                id: self.id.clone(),
                kind: "message".into(),
                role: "assistant".into(),
                content: Vec::new(),
                model: self.model.clone(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage::default(),
            },
        }]
    }

    fn start_block(&mut self, block: ContentBlock, out: &mut Vec<StreamEvent>) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block: block,
        });
        if !self.pinged {
            self.pinged = true;
            out.push(StreamEvent::Ping);
        }
        index
    }

    fn close_open(&mut self, out: &mut Vec<StreamEvent>) {
        if self.open.take().is_some() {
            out.push(StreamEvent::ContentBlockStop {
                index: self.next_index - 1,
            });
        }
    }

    /// Streams `delta` into a block of kind `kind`, opening one (and closing another) first
    /// when needed.
    fn stream_into(&mut self, kind: Open, delta: BlockDelta, out: &mut Vec<StreamEvent>) {
        if self.open != Some(kind) {
            self.close_open(out);
            let block = match kind {
                Open::Thinking => ContentBlock::Thinking {
                    thinking: String::new(),
                    signature: String::new(),
                },
                Open::Text => ContentBlock::Text {
                    text: String::new(),
                },
            };
            self.start_block(block, out);
            self.open = Some(kind);
        }
        out.push(StreamEvent::ContentBlockDelta {
            index: self.next_index - 1,
            delta,
        });
    }

    /// The events for one chat chunk.
    pub fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if let Some(usage) = &chunk.usage {
            self.input_tokens = Some(usage.prompt_tokens);
            self.output_tokens = usage.completion_tokens;
        }
        let Some(choice) = chunk.choices.first() else {
            return out;
        };
        let delta = &choice.delta;
        if let Some(thinking) = delta.reasoning_content.as_ref().filter(|s| !s.is_empty()) {
            self.stream_into(
                Open::Thinking,
                BlockDelta::ThinkingDelta {
                    thinking: thinking.clone(),
                },
                &mut out,
            );
        }
        if let Some(text) = delta.content.as_ref().filter(|s| !s.is_empty()) {
            self.stream_into(
                Open::Text,
                BlockDelta::TextDelta { text: text.clone() },
                &mut out,
            );
        }
        for call in delta.tool_calls.iter().flatten() {
            let pending = self.tools.entry(call.index).or_default();
            if let Some(id) = call.id.as_ref().filter(|s| !s.is_empty()) {
                pending.id = Some(id.clone());
            }
            if let Some(f) = &call.function {
                if let Some(name) = f.name.as_ref().filter(|s| !s.is_empty()) {
                    pending.name = name.clone();
                }
                if let Some(a) = f.arguments.as_ref().filter(|s| !s.is_empty()) {
                    pending.fragments.push(a.clone());
                }
            }
        }
        if let Some(finish) = &choice.finish_reason {
            self.finish_reason = Some(finish.clone());
            self.stop_sequence = choice.stop_sequence.clone();
        }
        out
    }

    /// The closing events, once the chunks have ended: the open block's stop, the tool calls,
    /// `message_delta` and `message_stop`.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.close_open(&mut out);
        for (_, tool) in std::mem::take(&mut self.tools) {
            let index = self.start_block(
                ContentBlock::ToolUse {
                    id: tool.id.unwrap_or_else(new_tool_id),
                    name: tool.name,
                    input: json!({}),
                },
                &mut out,
            );
            for partial_json in tool.fragments {
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::InputJsonDelta { partial_json },
                });
            }
            out.push(StreamEvent::ContentBlockStop { index });
        }
        if !self.pinged {
            self.pinged = true;
            out.push(StreamEvent::Ping);
        }
        let (stop_reason, stop_sequence) = stop_reason(
            self.finish_reason.as_deref().unwrap_or("stop"),
            self.stop_sequence.as_deref(),
            &self.stop_sequences,
        );
        out.push(StreamEvent::MessageDelta {
            delta: MessageDelta {
                stop_reason: Some(stop_reason),
                stop_sequence,
            },
            usage: DeltaUsage {
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
            },
        });
        out.push(StreamEvent::MessageStop);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::error_response;
    use crate::protocol::chat::ChatDelta;
    use crate::protocol::test_chunks::{chunk, reasoning, text, tool_delta, tools, usage_chunk};
    use crate::Error;
    use serde_json::Value;

    fn run(chunks: Vec<ChatCompletionChunk>, stops: &[&str]) -> Vec<Value> {
        let mut t = EventTranslator::new(
            "msg_1".into(),
            "qwen".into(),
            stops.iter().map(|s| s.to_string()).collect(),
        );
        let mut events = t.start();
        for c in &chunks {
            events.extend(t.chunk(c));
        }
        events.extend(t.finish());
        events
            .iter()
            .map(|e| {
                let v = serde_json::to_value(e).unwrap();
                assert_eq!(v["type"], e.name(), "{v}");
                v
            })
            .collect()
    }

    fn names(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    /// Blocks open and close strictly one at a time, with indices 0, 1, 2...
    fn assert_blocks_sequential(events: &[Value]) {
        let mut open: Option<u64> = None;
        let mut next = 0;
        for e in events {
            match e["type"].as_str().unwrap() {
                "content_block_start" => {
                    assert!(open.is_none(), "{e} while {open:?} is open");
                    assert_eq!(e["index"], next);
                    open = Some(next);
                    next += 1;
                }
                "content_block_delta" => assert_eq!(e["index"].as_u64(), open, "{e}"),
                "content_block_stop" => {
                    assert_eq!(e["index"].as_u64(), open, "{e}");
                    open = None;
                }
                _ => {}
            }
        }
        assert!(open.is_none());
    }

    #[test]
    fn a_text_stream_has_anthropics_event_sequence() {
        let role = ChatDelta {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..ChatDelta::default()
        };
        let events = run(
            vec![
                chunk(role, None),
                chunk(text("Hel"), None),
                chunk(text("lo"), None),
                chunk(text(""), Some("length")),
                usage_chunk(9, 2),
            ],
            &[],
        );
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[0]["message"]["id"], "msg_1");
        assert_eq!(events[0]["message"]["content"], json!([]));
        assert_eq!(events[0]["message"]["stop_reason"], Value::Null);
        assert_eq!(
            events[1]["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(
            events[3]["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(
            events[6],
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                   "usage": {"input_tokens": 9, "output_tokens": 2}})
        );
        assert_eq!(events[7], json!({"type": "message_stop"}));
    }

    #[test]
    fn a_stream_reports_its_stop_sequence() {
        let mut last = chunk(text(""), Some("stop"));
        last.choices[0].stop_sequence = Some("END".into());
        let events = run(vec![chunk(text("a"), None), last], &["END"]);
        let delta = &events[events.len() - 2];
        assert_eq!(
            delta["delta"],
            json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
        );
        assert_eq!(delta["usage"], json!({"output_tokens": 0}));
    }

    #[test]
    fn interleaved_text_thinking_and_two_tool_calls_stream_in_order() {
        let events = run(
            vec![
                chunk(reasoning("Need "), None),
                chunk(reasoning("weather."), None),
                chunk(text("Checking"), None),
                // Fragments of two calls, interleaved and out of index order.
                chunk(
                    tools(vec![
                        tool_delta(1, Some("call_2"), Some("get_time"), "{\"tz\":"),
                        tool_delta(0, Some("call_1"), Some("get_weather"), "{\"city\":"),
                    ]),
                    None,
                ),
                chunk(text(" both."), None),
                chunk(
                    tools(vec![
                        tool_delta(1, None, None, "\"UTC\"}"),
                        tool_delta(0, None, None, "\"Paris\"}"),
                    ]),
                    Some("tool_calls"),
                ),
                usage_chunk(30, 20),
            ],
            &[],
        );
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start", // 0 thinking
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start", // 1 text
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start", // 2 tool call 0
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start", // 3 tool call 1
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_blocks_sequential(&events);
        assert_eq!(
            events[1]["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        assert_eq!(
            events[3]["delta"],
            json!({"type": "thinking_delta", "thinking": "Need "})
        );
        assert_eq!(
            events[8]["delta"],
            json!({"type": "text_delta", "text": " both."})
        );
        assert_eq!(
            events[10]["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}})
        );
        assert_eq!(
            events[14]["content_block"],
            json!({"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}})
        );
        let partial: Vec<&str> = events
            .iter()
            .filter(|e| e["delta"]["type"] == "input_json_delta")
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(
            partial,
            ["{\"city\":", "\"Paris\"}", "{\"tz\":", "\"UTC\"}"]
        );
        assert_eq!(events[18]["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[18]["usage"]["output_tokens"], 20);
    }

    #[test]
    fn a_tool_call_without_an_id_gets_a_toolu_id_and_an_empty_answer_still_closes() {
        let events = run(
            vec![chunk(
                tools(vec![tool_delta(0, None, Some("f"), "{}")]),
                Some("tool_calls"),
            )],
            &[],
        );
        let start = events
            .iter()
            .find(|e| e["type"] == "content_block_start")
            .unwrap();
        assert!(start["content_block"]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_"));
        let events = run(vec![chunk(text(""), Some("stop"))], &[]);
        assert_eq!(
            names(&events),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }

    #[tokio::test]
    async fn a_failed_stream_ends_with_its_error() {
        let chunks: BoxStream<'static, Result<ChatCompletionChunk>> = stream::iter(vec![
            Ok(chunk(text("a"), None)),
            Err(Error::overloaded("busy")),
            Ok(chunk(text("never"), None)),
        ])
        .boxed();
        let items: Vec<Result<StreamEvent>> = translate_stream(chunks, "qwen".into(), Vec::new())
            .collect()
            .await;
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.message(), "busy");
        assert_eq!(items.len(), 5, "start, block start, ping, delta, error");
        assert_eq!(
            serde_json::to_value(error_response(last)).unwrap(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "busy"}})
        );
    }
}
