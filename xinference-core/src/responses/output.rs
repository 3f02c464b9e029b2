//! A chat answer as a response object: the request's settings echoed ([`shell`]), reasoning,
//! text and function calls as output items, `status` and `usage` ([`to_response`]).

use super::request::new_id;
use crate::protocol::chat::{ChatCompletion, CompletionUsage};
use crate::protocol::responses::Response;
use crate::protocol::responses::{
    IncompleteDetails, InputTokensDetails, OutputContent, OutputItem, OutputTokensDetails,
    ResponseUsage, ResponsesRequest, SummaryText, TextConfig, TextFormat,
};
use serde_json::json;

/// Unix time now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The response `id` for `request`, `in_progress` with no output: its settings echoed as
/// OpenAI echoes them.
pub fn shell(request: &ResponsesRequest, id: String, model: String) -> Response {
    Response {
        id,
        object: "response".into(),
        created_at: now(),
        status: "in_progress".into(),
        completed_at: None,
        error: None,
        incomplete_details: None,
        instructions: request.instructions.clone(),
        max_output_tokens: request.max_output_tokens,
        metadata: request.metadata.clone().unwrap_or_default(),
        model,
        output: Vec::new(),
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        previous_response_id: request.previous_response_id.clone(),
        reasoning: request.reasoning.clone(),
        store: request.store.unwrap_or(true),
        temperature: request.temperature,
        text: request.text.clone().unwrap_or(TextConfig {
            format: Some(TextFormat::Text),
            extra: Default::default(),
        }),
        tool_choice: request.tool_choice.clone().unwrap_or(json!("auto")),
        tools: request.tools.clone().unwrap_or_default(),
        top_p: request.top_p,
        truncation: "disabled".into(),
        usage: None,
        user: request.user.clone(),
    }
}

/// OpenAI's usage for the chat path's counts (reasoning tokens as the chat path counted them).
pub fn usage(u: &CompletionUsage) -> ResponseUsage {
    ResponseUsage {
        input_tokens: u.prompt_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: u
                .prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens),
            cache_write_tokens: 0,
        },
        output_tokens: u.completion_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: u
                .completion_tokens_details
                .as_ref()
                .map_or(0, |d| d.reasoning_tokens),
        },
        total_tokens: u.total_tokens,
    }
}

/// Ends `response`: `incomplete` (reason `max_output_tokens`) when the chat answer ended on
/// its length, else `completed`.
pub fn finish(response: &mut Response, finish_reason: &str, usage: ResponseUsage) {
    if finish_reason == "length" {
        response.status = "incomplete".into();
        response.incomplete_details = Some(IncompleteDetails {
            reason: "max_output_tokens".into(),
        });
    } else {
        response.status = "completed".into();
    }
    response.completed_at = Some(now());
    response.usage = Some(usage);
}

/// A function call item; a chat call without an id gets a `call_...` one.
pub fn function_call(
    call_id: Option<String>,
    name: String,
    arguments: String,
    status: &str,
) -> OutputItem {
    OutputItem::FunctionCall {
        id: new_id("fc"),
        call_id: call_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| new_id("call")),
        name,
        arguments,
        status: status.into(),
    }
}

/// The whole chat answer as the output of `response` (reasoning, text, function calls), which
/// it ends.
pub fn to_response(mut response: Response, completion: ChatCompletion) -> Response {
    let mut finish_reason = "stop".to_owned();
    if let Some(choice) = completion.choices.into_iter().next() {
        let m = choice.message;
        let status = if choice.finish_reason == "length" {
            "incomplete"
        } else {
            "completed"
        };
        if let Some(reasoning) = m.reasoning_content.filter(|s| !s.is_empty()) {
            response.output.push(OutputItem::Reasoning {
                id: new_id("rs"),
                summary: vec![SummaryText::new(reasoning)],
                status: Some(status.into()),
            });
        }
        if let Some(text) = m.content.filter(|s| !s.is_empty()) {
            response.output.push(OutputItem::Message {
                id: new_id("msg"),
                role: "assistant".into(),
                status: status.into(),
                content: vec![OutputContent::text(text)],
            });
        }
        for call in m.tool_calls.unwrap_or_default() {
            response.output.push(function_call(
                Some(call.id),
                call.function.name,
                call.function.arguments,
                "completed",
            ));
        }
        finish_reason = choice.finish_reason;
    }
    finish(&mut response, &finish_reason, usage(&completion.usage));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chat::{AssistantMessage, ChatChoice, FunctionCall, ToolCall};
    use serde_json::Value;

    fn completion(message: AssistantMessage, finish: &str) -> ChatCompletion {
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
                stop_sequence: None,
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

    fn request() -> ResponsesRequest {
        serde_json::from_value(json!({"model": "qwen", "input": "hi", "metadata": {"k": "v"}}))
            .unwrap()
    }

    #[test]
    fn a_text_answer_is_one_completed_message() {
        let message = AssistantMessage {
            role: "assistant".into(),
            content: Some("Paris.".into()),
            reasoning_content: None,
            tool_calls: None,
        };
        let r = to_response(
            shell(&request(), "resp_1".into(), "qwen".into()),
            completion(message, "stop"),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["object"], "response");
        assert_eq!(v["metadata"], json!({"k": "v"}));
        assert_eq!(v["incomplete_details"], Value::Null);
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["text"], json!({"format": {"type": "text"}}));
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(v["output"][0]["role"], "assistant");
        assert_eq!(
            v["output"][0]["content"],
            json!([{"type": "output_text", "text": "Paris.", "annotations": [], "logprobs": []}])
        );
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 12, "output_tokens": 7, "total_tokens": 19,
                   "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                   "output_tokens_details": {"reasoning_tokens": 0}})
        );
        assert_eq!(r.output_text(), "Paris.");
    }

    #[test]
    fn reasoning_calls_and_length_map_to_items_and_incomplete() {
        let message = AssistantMessage {
            role: "assistant".into(),
            content: None,
            reasoning_content: Some("Need weather.".into()),
            tool_calls: Some(vec![ToolCall {
                id: "call_9".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                },
            }]),
        };
        let r = to_response(
            shell(&request(), "resp_1".into(), "qwen".into()),
            completion(message, "tool_calls"),
        );
        assert_eq!(r.status, "completed");
        assert_eq!(r.output.len(), 2);
        let v = serde_json::to_value(&r.output).unwrap();
        assert_eq!(v[0]["type"], "reasoning");
        assert_eq!(
            v[0]["summary"],
            json!([{"type": "summary_text", "text": "Need weather."}])
        );
        assert_eq!(v[1]["type"], "function_call");
        assert_eq!(v[1]["call_id"], "call_9");
        assert_eq!(v[1]["name"], "get_weather");
        assert!(v[1]["id"].as_str().unwrap().starts_with("fc_"));

        let cut = AssistantMessage {
            role: "assistant".into(),
            content: Some("Once upon".into()),
            reasoning_content: None,
            tool_calls: None,
        };
        let r = to_response(
            shell(&request(), "resp_2".into(), "qwen".into()),
            completion(cut, "length"),
        );
        assert_eq!(r.status, "incomplete");
        assert_eq!(
            r.incomplete_details.as_ref().map(|d| d.reason.as_str()),
            Some("max_output_tokens")
        );
        let OutputItem::Message { status, .. } = &r.output[0] else {
            panic!("{:?}", r.output)
        };
        assert_eq!(status, "incomplete");
    }
}
