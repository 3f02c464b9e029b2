//! Chat chunks as Responses stream events, numbered by `sequence_number`:
//! `response.created`, `response.in_progress`; per item `response.output_item.added`, its
//! parts and deltas, `response.output_item.done`; then `response.completed` (or
//! `response.incomplete`, or `response.failed`).
//!
//! Reasoning streams as a `reasoning` item's summary text, the answer as a `message` item's
//! `output_text`; a switch between them closes the open item. Each tool call is a
//! `function_call` item, opened on its first fragment and closed when the answer ends (the
//! chat path's stream parser keeps tool-call markup out of the text).

use super::output::{finish, function_call, usage};
use super::request::new_id;
use crate::protocol::chat::ChatCompletionChunk;
use crate::protocol::responses::ResponseUsage;
use crate::protocol::responses::{
    OutputContent, OutputItem, Response, ResponseError, ResponseEvent, ResponseStreamEvent,
    SummaryText,
};
use crate::Error;
use std::collections::BTreeMap;

/// Which item streams text now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning(usize),
    Message(usize),
}

/// Turns the chunks of one streamed chat answer into the events of one response.
#[derive(Debug)]
pub struct EventTranslator {
    response: Response,
    next_sequence: u64,
    /// Output items by output index (a function call's arguments grow in place).
    items: Vec<OutputItem>,
    open: Option<Open>,
    /// Output index of each chat tool-call index.
    calls: BTreeMap<usize, usize>,
    finish_reason: Option<String>,
    usage: ResponseUsage,
}

impl EventTranslator {
    /// A translator for `response` (as [`super::output::shell`] makes it).
    pub fn new(response: Response) -> Self {
        EventTranslator {
            response,
            next_sequence: 0,
            items: Vec::new(),
            open: None,
            calls: BTreeMap::new(),
            finish_reason: None,
            usage: ResponseUsage::default(),
        }
    }

    fn emit(&mut self, event: ResponseEvent, out: &mut Vec<ResponseStreamEvent>) {
        out.push(ResponseStreamEvent {
            sequence_number: self.next_sequence,
            event,
        });
        self.next_sequence += 1;
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Vec<ResponseStreamEvent> {
        let mut out = Vec::new();
        let response = Box::new(self.response.clone());
        self.emit(
            ResponseEvent::Created {
                response: response.clone(),
            },
            &mut out,
        );
        self.emit(ResponseEvent::InProgress { response }, &mut out);
        out
    }

    fn add_item(&mut self, item: OutputItem, out: &mut Vec<ResponseStreamEvent>) -> usize {
        let output_index = self.items.len();
        self.items.push(item.clone());
        self.emit(ResponseEvent::OutputItemAdded { output_index, item }, out);
        output_index
    }

    /// Closes the reasoning or message item that streams text, with `status`.
    fn close_open(&mut self, status: &str, out: &mut Vec<ResponseStreamEvent>) {
        match self.open.take() {
            None => {}
            Some(Open::Reasoning(index)) => {
                let OutputItem::Reasoning {
                    id,
                    summary,
                    status: item_status,
                } = &mut self.items[index]
                else {
                    return;
                };
                *item_status = Some(status.into());
                let (item_id, part) = (id.clone(), summary[0].clone());
                let item = self.items[index].clone();
                let at = (item_id, index, 0);
                self.emit(
                    ResponseEvent::ReasoningSummaryTextDone {
                        item_id: at.0.clone(),
                        output_index: at.1,
                        summary_index: at.2,
                        text: part.text.clone(),
                    },
                    out,
                );
                self.emit(
                    ResponseEvent::ReasoningSummaryPartDone {
                        item_id: at.0,
                        output_index: at.1,
                        summary_index: at.2,
                        part,
                    },
                    out,
                );
                self.emit(
                    ResponseEvent::OutputItemDone {
                        output_index: index,
                        item,
                    },
                    out,
                );
            }
            Some(Open::Message(index)) => {
                let OutputItem::Message {
                    id,
                    content,
                    status: item_status,
                    ..
                } = &mut self.items[index]
                else {
                    return;
                };
                *item_status = status.into();
                let (item_id, part) = (id.clone(), content[0].clone());
                let text = match &part {
                    OutputContent::OutputText { text, .. } => text.clone(),
                    OutputContent::Refusal { refusal } => refusal.clone(),
                };
                let item = self.items[index].clone();
                self.emit(
                    ResponseEvent::OutputTextDone {
                        item_id: item_id.clone(),
                        output_index: index,
                        content_index: 0,
                        text,
                        logprobs: Vec::new(),
                    },
                    out,
                );
                self.emit(
                    ResponseEvent::ContentPartDone {
                        item_id,
                        output_index: index,
                        content_index: 0,
                        part,
                    },
                    out,
                );
                self.emit(
                    ResponseEvent::OutputItemDone {
                        output_index: index,
                        item,
                    },
                    out,
                );
            }
        }
    }

    fn reasoning_delta(&mut self, delta: &str, out: &mut Vec<ResponseStreamEvent>) {
        let index = match self.open {
            Some(Open::Reasoning(i)) => i,
            _ => {
                self.close_open("completed", out);
                let id = new_id("rs");
                let index = self.add_item(
                    OutputItem::Reasoning {
                        id: id.clone(),
                        summary: Vec::new(),
                        status: Some("in_progress".into()),
                    },
                    out,
                );
                if let OutputItem::Reasoning { summary, .. } = &mut self.items[index] {
                    summary.push(SummaryText::new(""));
                }
                self.emit(
                    ResponseEvent::ReasoningSummaryPartAdded {
                        item_id: id,
                        output_index: index,
                        summary_index: 0,
                        part: SummaryText::new(""),
                    },
                    out,
                );
                self.open = Some(Open::Reasoning(index));
                index
            }
        };
        let OutputItem::Reasoning { id, summary, .. } = &mut self.items[index] else {
            return;
        };
        summary[0].text.push_str(delta);
        let item_id = id.clone();
        self.emit(
            ResponseEvent::ReasoningSummaryTextDelta {
                item_id,
                output_index: index,
                summary_index: 0,
                delta: delta.to_owned(),
            },
            out,
        );
    }

    fn text_delta(&mut self, delta: &str, out: &mut Vec<ResponseStreamEvent>) {
        let index = match self.open {
            Some(Open::Message(i)) => i,
            _ => {
                self.close_open("completed", out);
                let id = new_id("msg");
                let index = self.add_item(
                    OutputItem::Message {
                        id: id.clone(),
                        role: "assistant".into(),
                        status: "in_progress".into(),
                        content: Vec::new(),
                    },
                    out,
                );
                if let OutputItem::Message { content, .. } = &mut self.items[index] {
                    content.push(OutputContent::text(""));
                }
                self.emit(
                    ResponseEvent::ContentPartAdded {
                        item_id: id,
                        output_index: index,
                        content_index: 0,
                        part: OutputContent::text(""),
                    },
                    out,
                );
                self.open = Some(Open::Message(index));
                index
            }
        };
        let OutputItem::Message { id, content, .. } = &mut self.items[index] else {
            return;
        };
        if let Some(OutputContent::OutputText { text, .. }) = content.first_mut() {
            text.push_str(delta);
        }
        let item_id = id.clone();
        self.emit(
            ResponseEvent::OutputTextDelta {
                item_id,
                output_index: index,
                content_index: 0,
                delta: delta.to_owned(),
                logprobs: Vec::new(),
            },
            out,
        );
    }

    /// The events of one chat chunk.
    pub fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<ResponseStreamEvent> {
        let mut out = Vec::new();
        if let Some(u) = &chunk.usage {
            self.usage = usage(u);
        }
        let Some(choice) = chunk.choices.first() else {
            return out;
        };
        let delta = &choice.delta;
        if let Some(r) = delta.reasoning_content.as_deref().filter(|s| !s.is_empty()) {
            self.reasoning_delta(r, &mut out);
        }
        if let Some(t) = delta.content.as_deref().filter(|s| !s.is_empty()) {
            self.text_delta(t, &mut out);
        }
        for call in delta.tool_calls.iter().flatten() {
            let index = match self.calls.get(&call.index) {
                Some(i) => *i,
                None => {
                    self.close_open("completed", &mut out);
                    let name = call
                        .function
                        .as_ref()
                        .and_then(|f| f.name.clone())
                        .unwrap_or_default();
                    let item = function_call(call.id.clone(), name, String::new(), "in_progress");
                    let index = self.add_item(item, &mut out);
                    self.calls.insert(call.index, index);
                    index
                }
            };
            let fragment = call
                .function
                .as_ref()
                .and_then(|f| f.arguments.as_deref())
                .filter(|s| !s.is_empty());
            let OutputItem::FunctionCall { id, arguments, .. } = &mut self.items[index] else {
                continue;
            };
            if let Some(fragment) = fragment {
                arguments.push_str(fragment);
                let item_id = id.clone();
                self.emit(
                    ResponseEvent::FunctionCallArgumentsDelta {
                        item_id,
                        output_index: index,
                        delta: fragment.to_owned(),
                    },
                    &mut out,
                );
            }
        }
        if let Some(f) = &choice.finish_reason {
            self.finish_reason = Some(f.clone());
        }
        out
    }

    /// The closing events once the chunks have ended, and the finished response (the last
    /// event carries it too).
    pub fn finish(&mut self) -> (Vec<ResponseStreamEvent>, Response) {
        let mut out = Vec::new();
        let reason = self.finish_reason.clone().unwrap_or_else(|| "stop".into());
        let status = if reason == "length" {
            "incomplete"
        } else {
            "completed"
        };
        self.close_open(status, &mut out);
        for index in self.calls.values().copied().collect::<Vec<_>>() {
            let OutputItem::FunctionCall {
                id,
                name,
                arguments,
                status,
                ..
            } = &mut self.items[index]
            else {
                continue;
            };
            *status = "completed".into();
            let event = ResponseEvent::FunctionCallArgumentsDone {
                item_id: id.clone(),
                output_index: index,
                name: name.clone(),
                arguments: arguments.clone(),
            };
            let item = self.items[index].clone();
            self.emit(event, &mut out);
            self.emit(
                ResponseEvent::OutputItemDone {
                    output_index: index,
                    item,
                },
                &mut out,
            );
        }
        let mut response = self.response.clone();
        response.output = std::mem::take(&mut self.items);
        finish(&mut response, &reason, self.usage.clone());
        let boxed = Box::new(response.clone());
        let event = if response.status == "incomplete" {
            ResponseEvent::Incomplete { response: boxed }
        } else {
            ResponseEvent::Completed { response: boxed }
        };
        self.emit(event, &mut out);
        (out, response)
    }

    /// `response.failed` for a failure after the stream started.
    pub fn fail(&mut self, error: &Error) -> Vec<ResponseStreamEvent> {
        let mut out = Vec::new();
        let mut response = self.response.clone();
        response.status = "failed".into();
        response.output = std::mem::take(&mut self.items);
        response.error = Some(ResponseError {
            code: super::error_type(error.kind())
                .2
                .unwrap_or("server_error")
                .into(),
            message: error.message().into(),
        });
        self.emit(
            ResponseEvent::Failed {
                response: Box::new(response),
            },
            &mut out,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chat::ChatDelta;
    use crate::protocol::responses::ResponsesRequest;
    use crate::protocol::test_chunks::{chunk, reasoning, text, tool_delta, tools, usage_chunk};
    use serde_json::{json, Value};

    fn call(index: usize, id: Option<&str>, name: Option<&str>, args: &str) -> ChatDelta {
        tools(vec![tool_delta(index, id, name, args)])
    }

    fn run(chunks: Vec<ChatCompletionChunk>) -> (Vec<Value>, Response) {
        let request: ResponsesRequest =
            serde_json::from_value(json!({"model": "qwen", "input": "x"})).unwrap();
        let mut t = EventTranslator::new(super::super::output::shell(
            &request,
            "resp_1".into(),
            "qwen".into(),
        ));
        let mut events = t.start();
        for c in &chunks {
            events.extend(t.chunk(c));
        }
        let (end, response) = t.finish();
        events.extend(end);
        let values: Vec<Value> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let v = serde_json::to_value(e).unwrap();
                assert_eq!(v["type"], e.name(), "{v}");
                assert_eq!(v["sequence_number"], i as u64, "{v}");
                // The events read back as they were sent.
                assert_eq!(
                    &serde_json::from_value::<ResponseStreamEvent>(v.clone()).unwrap(),
                    e
                );
                v
            })
            .collect();
        (values, response)
    }

    fn names(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_text_stream_has_openais_event_sequence() {
        let (events, response) = run(vec![
            chunk(text(""), None),
            chunk(text("Hel"), None),
            chunk(text("lo"), None),
            chunk(text(""), Some("stop")),
            usage_chunk(9, 4),
        ]);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(events[0]["response"]["status"], "in_progress");
        assert_eq!(events[0]["response"]["output"], json!([]));
        assert_eq!(events[2]["item"]["status"], "in_progress");
        assert_eq!(events[6]["text"], "Hello");
        assert_eq!(events[8]["item"]["content"][0]["text"], "Hello");
        assert_eq!(events[8]["item"]["status"], "completed");
        let last = &events[9]["response"];
        assert_eq!(last["status"], "completed");
        assert_eq!(last["usage"]["total_tokens"], 13);
        assert_eq!(response.output_text(), "Hello");
        let item_id = events[2]["item"]["id"].as_str().unwrap();
        assert!(events[3..9]
            .iter()
            .all(|e| e["item_id"] == item_id || e["item"]["id"] == item_id));
    }

    #[test]
    fn reasoning_text_and_calls_are_items_in_order_and_length_is_incomplete() {
        let (events, response) = run(vec![
            chunk(reasoning("Need "), None),
            chunk(reasoning("weather."), None),
            chunk(text("Checking."), None),
            chunk(
                call(0, Some("call_1"), Some("get_weather"), "{\"city\":"),
                None,
            ),
            chunk(call(1, Some("call_2"), Some("get_time"), "{}"), None),
            chunk(call(0, None, None, "\"Paris\"}"), Some("length")),
        ]);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.incomplete",
            ]
        );
        assert_eq!(events[6]["text"], "Need weather.");
        assert_eq!(events[15]["item"]["call_id"], "call_1");
        assert_eq!(events[15]["output_index"], 2);
        assert_eq!(events[19]["output_index"], 2);
        assert_eq!(events[20]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(events[20]["name"], "get_weather");
        assert_eq!(events[22]["name"], "get_time");
        assert_eq!(response.status, "incomplete");
        assert_eq!(response.output.len(), 4);
        let last = &events[24]["response"];
        assert_eq!(last["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(last["output"][3]["arguments"], "{}");
    }

    #[test]
    fn a_failure_is_response_failed() {
        let request: ResponsesRequest =
            serde_json::from_value(json!({"model": "qwen", "input": "x"})).unwrap();
        let mut t = EventTranslator::new(super::super::output::shell(
            &request,
            "resp_1".into(),
            "qwen".into(),
        ));
        let mut events = t.start();
        events.extend(t.chunk(&chunk(text("a"), None)));
        events.extend(t.fail(&Error::overloaded("busy")));
        let last = serde_json::to_value(events.last().unwrap()).unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["sequence_number"], events.len() as u64 - 1);
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["message"], "busy");
    }
}
