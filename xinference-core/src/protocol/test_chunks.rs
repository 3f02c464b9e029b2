//! Builders of chat completion chunks for the unit tests of the stream translators (Anthropic
//! events, Responses events).

use super::chat::{
    ChatChunkChoice, ChatCompletionChunk, ChatDelta, CompletionUsage, FunctionCallDelta,
    ToolCallDelta,
};

/// A chunk of one choice with `delta` and `finish_reason`.
pub(crate) fn chunk(delta: ChatDelta, finish: Option<&str>) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: "chatcmpl-1".into(),
        object: "chat.completion.chunk".into(),
        created: 0,
        model: "qwen".into(),
        choices: vec![ChatChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish.map(str::to_owned),
            stop_sequence: None,
        }],
        usage: None,
    }
}

/// A content delta.
pub(crate) fn text(s: &str) -> ChatDelta {
    ChatDelta {
        content: Some(s.into()),
        ..ChatDelta::default()
    }
}

/// A reasoning delta.
pub(crate) fn reasoning(s: &str) -> ChatDelta {
    ChatDelta {
        reasoning_content: Some(s.into()),
        ..ChatDelta::default()
    }
}

/// A tool-call fragment (`id` and `name` only on the first fragment of a call).
pub(crate) fn tool_delta(
    index: usize,
    id: Option<&str>,
    name: Option<&str>,
    args: &str,
) -> ToolCallDelta {
    ToolCallDelta {
        index,
        id: id.map(str::to_owned),
        kind: id.map(|_| "function".to_owned()),
        function: Some(FunctionCallDelta {
            name: name.map(str::to_owned),
            arguments: Some(args.into()),
        }),
    }
}

/// A delta of tool-call fragments.
pub(crate) fn tools(calls: Vec<ToolCallDelta>) -> ChatDelta {
    ChatDelta {
        tool_calls: Some(calls),
        ..ChatDelta::default()
    }
}

/// The final usage chunk (no choices).
pub(crate) fn usage_chunk(prompt: usize, completion: usize) -> ChatCompletionChunk {
    ChatCompletionChunk {
        choices: Vec::new(),
        usage: Some(CompletionUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }),
        ..chunk(ChatDelta::default(), None)
    }
}
