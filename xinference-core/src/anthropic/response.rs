//! A whole chat answer as an Anthropic message; ids, stop reasons and the error shape.

use crate::protocol::anthropic::{ContentBlock, ErrorDetail, ErrorResponse, Message, Usage};
use crate::protocol::chat::ChatCompletion;
use crate::{Error, ErrorKind};
use serde_json::{json, Value};

/// A new Anthropic message id.
pub(super) fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// A new Anthropic tool-use id.
pub(super) fn new_tool_id() -> String {
    format!("toolu_{}", uuid::Uuid::new_v4().simple())
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason` and the stop string that ended the
/// answer (counted only when it is one of the request's `stop_sequences`).
pub fn stop_reason(
    finish_reason: &str,
    stop_sequence: Option<&str>,
    requested: &[String],
) -> (String, Option<String>) {
    let matched = stop_sequence.filter(|s| requested.iter().any(|r| r == s));
    match (finish_reason, matched) {
        ("tool_calls", _) => ("tool_use".into(), None),
        ("length", _) => ("max_tokens".into(), None),
        (_, Some(s)) => ("stop_sequence".into(), Some(s.to_owned())),
        _ => ("end_turn".into(), None),
    }
}

/// A tool call's `input`: its arguments when they are a JSON object, else `{}`.
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// The Anthropic message for a whole chat answer: thinking, text, then tool calls.
pub fn to_message(completion: ChatCompletion, stop_sequences: &[String]) -> Message {
    let mut content = Vec::new();
    let (mut finish, mut matched) = ("stop".to_owned(), None);
    if let Some(choice) = completion.choices.into_iter().next() {
        let m = choice.message;
        if let Some(thinking) = m.reasoning_content.filter(|s| !s.is_empty()) {
            content.push(ContentBlock::Thinking {
                thinking,
                signature: String::new(),
            });
        }
        if let Some(text) = m.content.filter(|s| !s.is_empty()) {
            content.push(ContentBlock::Text { text });
        }
        for call in m.tool_calls.unwrap_or_default() {
            content.push(ContentBlock::ToolUse {
                id: if call.id.is_empty() {
                    new_tool_id()
                } else {
                    call.id
                },
                name: call.function.name,
                input: tool_input(&call.function.arguments),
            });
        }
        finish = choice.finish_reason;
        matched = choice.stop_sequence;
    }
    let (reason, stop_sequence) = stop_reason(&finish, matched.as_deref(), stop_sequences);
    Message {
        id: new_message_id(),
        kind: "message".into(),
        role: "assistant".into(),
        content,
        model: completion.model,
        stop_reason: Some(reason),
        stop_sequence,
        usage: Usage {
            input_tokens: completion.usage.prompt_tokens,
            output_tokens: completion.usage.completion_tokens,
        },
    }
}

/// Anthropic's HTTP status and error `type` for a failure of `kind`. The status is
/// [`ErrorKind::http_status`]'s, except that Anthropic answers every invalid request with a 400
/// (it has no 422 or 501).
pub fn error_status(kind: ErrorKind) -> (u16, &'static str) {
    let kind_name = match kind {
        ErrorKind::BadRequest | ErrorKind::Unprocessable | ErrorKind::NotImplemented => {
            return (ErrorKind::BadRequest.http_status(), "invalid_request_error")
        }
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::Conflict => "invalid_request_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::Overloaded => "rate_limit_error",
        ErrorKind::NotReady => "overloaded_error",
        ErrorKind::Cancelled | ErrorKind::Internal => "api_error",
    };
    (kind.http_status(), kind_name)
}

/// The Anthropic error body for `error`.
pub fn error_response(error: &Error) -> ErrorResponse {
    ErrorResponse {
        kind: "error".into(),
        error: ErrorDetail {
            kind: error_status(error.kind()).1.into(),
            message: error.message().into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chat::{
        AssistantMessage, ChatChoice, CompletionUsage, FunctionCall, ToolCall,
    };

    fn completion(message: AssistantMessage, finish: &str, stop: Option<&str>) -> ChatCompletion {
        ChatCompletion {
            id: "chatcmpl-1".into(),
            object: "chat.completion".into(),
            created: 0,
            model: "qwen".into(),
            choices: vec![ChatChoice {
                index: 0,
                message,
                logprobs: None,
                finish_reason: finish.into(),
                stop_sequence: stop.map(str::to_owned),
            }],
            usage: CompletionUsage {
                prompt_tokens: 12,
                completion_tokens: 7,
                total_tokens: 19,
                prompt_tokens_details: None,
                completion_tokens_details: None,
            },
        }
    }

    fn text_answer(text: &str) -> AssistantMessage {
        AssistantMessage {
            role: "assistant".into(),
            content: Some(text.into()),
            reasoning_content: None,
            tool_calls: None,
        }
    }

    fn tool_call(id: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: arguments.into(),
            },
        }
    }

    #[test]
    fn maps_a_text_answer_and_its_stop_reasons() {
        let m = to_message(completion(text_answer("Paris."), "stop", None), &[]);
        assert!(m.id.starts_with("msg_"), "{}", m.id);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({
                "id": m.id, "type": "message", "role": "assistant", "model": "qwen",
                "content": [{"type": "text", "text": "Paris."}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 7},
            })
        );
        let stops = vec!["END".to_owned()];
        let m = to_message(completion(text_answer("a"), "stop", Some("END")), &stops);
        assert_eq!(m.stop_reason.as_deref(), Some("stop_sequence"));
        assert_eq!(m.stop_sequence.as_deref(), Some("END"));
        // A model's own stop string is the end of its turn.
        let m = to_message(
            completion(text_answer("a"), "stop", Some("<|im_end|>")),
            &stops,
        );
        assert_eq!(
            (m.stop_reason.as_deref(), m.stop_sequence),
            (Some("end_turn"), None)
        );
        let m = to_message(completion(text_answer("a"), "length", None), &stops);
        assert_eq!(m.stop_reason.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn maps_reasoning_text_and_tool_calls_into_blocks() {
        let message = AssistantMessage {
            role: "assistant".into(),
            content: Some("Checking.".into()),
            reasoning_content: Some("The user wants weather.".into()),
            tool_calls: Some(vec![
                tool_call("call_1", r#"{"city": "Paris"}"#),
                tool_call("", r#"{"city":"Lyon"}"#),
            ]),
        };
        let m = to_message(completion(message, "tool_calls", None), &[]);
        assert_eq!(m.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(m.content.len(), 4);
        assert_eq!(
            m.content[0],
            ContentBlock::Thinking {
                thinking: "The user wants weather.".into(),
                signature: String::new()
            }
        );
        assert_eq!(
            m.content[1],
            ContentBlock::Text {
                text: "Checking.".into()
            }
        );
        assert_eq!(
            m.content[2],
            ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "get_weather".into(),
                input: json!({"city": "Paris"})
            }
        );
        let ContentBlock::ToolUse { id, input, .. } = &m.content[3] else {
            panic!("{:?}", m.content[3]);
        };
        assert!(id.starts_with("toolu_"), "{id}");
        assert_eq!(input, &json!({"city": "Lyon"}));
        // A null content with tool calls only gives tool_use blocks only.
        let only_tools = AssistantMessage {
            content: None,
            reasoning_content: None,
            ..AssistantMessage {
                tool_calls: Some(vec![tool_call("c", "{}")]),
                ..text_answer("")
            }
        };
        let m = to_message(completion(only_tools, "tool_calls", None), &[]);
        assert_eq!(m.content.len(), 1);
    }

    #[test]
    fn invalid_tool_arguments_become_an_empty_input() {
        for arguments in ["{invalid", "[]", "\"value\"", "1", "null", ""] {
            let message = AssistantMessage {
                tool_calls: Some(vec![tool_call("call_1", arguments)]),
                ..text_answer("")
            };
            let m = to_message(completion(message, "tool_calls", None), &[]);
            assert_eq!(
                m.content,
                vec![ContentBlock::ToolUse {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    input: json!({})
                }],
                "{arguments}"
            );
        }
    }

    #[test]
    fn error_kinds_map_to_anthropic_types() {
        assert_eq!(
            error_status(ErrorKind::BadRequest),
            (400, "invalid_request_error")
        );
        assert_eq!(
            error_status(ErrorKind::Unprocessable),
            (400, "invalid_request_error")
        );
        assert_eq!(error_status(ErrorKind::NotFound), (404, "not_found_error"));
        assert_eq!(
            error_status(ErrorKind::PayloadTooLarge),
            (413, "request_too_large")
        );
        assert_eq!(
            error_status(ErrorKind::Overloaded),
            (429, "rate_limit_error")
        );
        assert_eq!(error_status(ErrorKind::NotReady), (503, "overloaded_error"));
        assert_eq!(error_status(ErrorKind::Internal), (500, "api_error"));
        assert_eq!(
            error_status(ErrorKind::Forbidden),
            (403, "permission_error")
        );
        assert_eq!(
            error_status(ErrorKind::Unauthorized),
            (401, "authentication_error")
        );
    }
}
