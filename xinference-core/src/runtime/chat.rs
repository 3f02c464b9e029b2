//! The LLM capability of the runtime: `/v1/chat/completions` and `/v1/completions`, whole or
//! streamed, with `n` choices. Rendering, tokenizing and generating all happen on the model's
//! worker threads (`llm_run.rs`); the request checks and JSON pieces are in `chat_input.rs`,
//! and both endpoints write their answers through `chat_output.rs`.

use super::answer::AnswerFormat;
use super::chat_input::{
    describe_tools_in_messages, normalise_messages, now, plan, reasoning_tags, template_kwargs,
    PromptInput,
};
use super::chat_output::{self, ChatShape, CompletionShape};
use super::llm_run::{Prepared, PromptBuilder};
use super::structured::{requested_grammar, ToolRequest};
use super::Runtime;
use crate::llm::reasoning::{
    special_tokens_of, tag_special_tokens, ReasoningSplitter, ReasoningTags,
};
use crate::llm::tools::{tools_system_prompt, ToolFormat};
use crate::llm::LlmEngine;
use crate::protocol::chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest,
};
use crate::{Error, Result};
use futures::stream::BoxStream;
use serde_json::Value;

/// A streamed answer: chunks in order; an `Err` item is a failure after the stream started.
pub type ChunkStream<T> = BoxStream<'static, Result<T>>;

/// A chat answer: whole, or a stream of chunks.
pub enum ChatOutput {
    /// `stream: false`.
    Whole(ChatCompletion),
    /// `stream: true`.
    Stream(ChunkStream<ChatCompletionChunk>),
}

/// A completion answer: whole, or a stream of chunks.
pub enum CompletionOutput {
    /// `stream: false`.
    Whole(Completion),
    /// `stream: true`.
    Stream(ChunkStream<Completion>),
}

impl Runtime {
    /// `POST /v1/chat/completions`.
    pub async fn chat(&self, request: ChatCompletionRequest) -> Result<ChatOutput> {
        let messages = normalise_messages(&request.messages)?;
        let top = if request.logprobs == Some(true) {
            Some(request.top_logprobs.unwrap_or(0))
        } else {
            None
        };
        let plan = plan(&request.generation, top, None)?;
        let build = self.chat_prompt(&request, messages)?;
        let mut shape = ChatShape {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: now(),
            model: request.model.clone(),
            logprobs: plan.options.logprobs.is_some(),
            readers: Vec::new(),
        };
        let choices = self
            .run_choices(
                &request.model,
                "chat",
                build,
                plan.options,
                plan.n,
                plan.stream,
            )
            .await?;
        if !plan.stream {
            return Ok(ChatOutput::Whole(
                chat_output::whole(&shape, choices).await?,
            ));
        }
        shape.readers = (0..plan.n).map(|_| choices.answer.streamer()).collect();
        Ok(ChatOutput::Stream(chat_output::chunks(
            shape,
            choices,
            plan.include_usage,
        )))
    }

    /// Checks a chat request's tools, template variables and output grammar, and returns the
    /// job that renders its prompt on the worker (where the template is).
    fn chat_prompt(
        &self,
        request: &ChatCompletionRequest,
        messages: Vec<Value>,
    ) -> Result<PromptBuilder> {
        let kwargs = template_kwargs(request)?;
        let tools = ToolRequest::from_request(
            request.tools.as_deref(),
            request.tool_choice.as_ref(),
            request.extra.get("parallel_tool_calls"),
        )?;
        let output_grammar = requested_grammar(&request.extra)?;
        if tools
            .as_ref()
            .is_some_and(|t| t.grammar(ToolFormat::Hermes).is_some())
            && output_grammar.is_some()
        {
            return Err(Error::bad_request(
                "a forced or strict tool call cannot be combined with response_format or guided_* fields",
            ));
        }
        let family = self.instance(&request.model)?.family.clone();
        let spec_tool_format = family
            .json
            .get("tool_parser")
            .and_then(Value::as_str)
            .and_then(ToolFormat::from_parser_name);
        // Xinference's `qwen` parser reads Qwen3.5's XML calls too: the registry template
        // (or the model's own) says which of the two a model is taught.
        let spec_template_tool_format = family
            .json
            .get("chat_template")
            .and_then(Value::as_str)
            .and_then(ToolFormat::from_template);
        let spec_reasoning = reasoning_tags(&family.json);
        Ok(Box::new(move |engine: &LlmEngine| {
            let template_format = engine.template_tool_format().or(spec_template_tool_format);
            let format = match (spec_tool_format, template_format) {
                (Some(ToolFormat::Hermes), Some(ToolFormat::QwenXml)) => ToolFormat::QwenXml,
                (Some(spec), _) => spec,
                (None, template) => template.unwrap_or(ToolFormat::Hermes),
            };
            let (messages, template_tools) = match &tools {
                Some(t) if engine.template_renders_tools() => (messages, Some(t.tools.raw.clone())),
                Some(t) => (
                    describe_tools_in_messages(messages, &tools_system_prompt(&t.tools, format)),
                    None,
                ),
                None => (messages, None),
            };
            let text = engine.render_chat(&messages, template_tools.as_deref(), &kwargs)?;
            // A template that writes reasoning tags marks a reasoning model too.
            let reasoning = spec_reasoning
                .clone()
                .or_else(|| ReasoningTags::from_prompt(&text));
            let grammar = tools
                .as_ref()
                .and_then(|t| t.grammar(format))
                .or(output_grammar);
            // Markup the answer's parsers read, decoded as text where the model writes it as
            // special tokens: the reasoning tags, and the tool-call marks of the call format.
            let mut kept_tokens = reasoning
                .as_ref()
                .map(|tags| tag_special_tokens(engine.tokenizer(), tags))
                .unwrap_or_default();
            if tools.is_some() {
                kept_tokens.extend(special_tokens_of(
                    engine.tokenizer(),
                    format.special_markup(),
                ));
                kept_tokens.sort_unstable();
                kept_tokens.dedup();
            }
            let answer = AnswerFormat {
                kept_tokens,
                // A grammar holds the answer from its first token, so no reasoning block the
                // prompt opened is written: the answer is all content.
                reasoning_opened: grammar.is_none()
                    && reasoning
                        .as_ref()
                        .is_some_and(|tags| ReasoningSplitter::prompt_opens_reasoning(&text, tags)),
                reasoning,
                tools: tools.as_ref().map(|t| (format, t.tools.clone())),
                single_call: tools.as_ref().is_some_and(|t| !t.parallel),
            };
            Ok(Prepared {
                prompt: engine.tokenize(&text)?,
                grammar,
                answer,
            })
        }))
    }

    /// `POST /v1/completions`.
    pub async fn completion(&self, request: CompletionRequest) -> Result<CompletionOutput> {
        let prompt = completion_prompt(&request.prompt)?;
        let plan = plan(&request.generation, request.logprobs, Some(1024))?;
        let echo = match &prompt {
            PromptInput::Text(t) if request.echo => t.clone(),
            _ => String::new(),
        };
        let grammar = requested_grammar(&request.extra)?;
        let build: PromptBuilder = Box::new(move |engine: &LlmEngine| {
            let ids = match prompt {
                PromptInput::Text(t) => engine.tokenize(&t)?,
                PromptInput::Tokens(ids) => {
                    let vocab = engine.tokenizer().vocab_size() as u32;
                    if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
                        return Err(Error::bad_request(format!(
                            "token id {bad} is outside the vocabulary (size {vocab})"
                        )));
                    }
                    ids
                }
            };
            Ok(Prepared::plain(ids, grammar))
        });
        let shape = CompletionShape {
            id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
            created: now(),
            model: request.model.clone(),
            logprobs: plan.options.logprobs.is_some(),
            echo,
        };
        let choices = self
            .run_choices(
                &request.model,
                "generate",
                build,
                plan.options,
                plan.n,
                plan.stream,
            )
            .await?;
        if !plan.stream {
            return Ok(CompletionOutput::Whole(
                chat_output::whole(&shape, choices).await?,
            ));
        }
        Ok(CompletionOutput::Stream(chat_output::chunks(
            shape,
            choices,
            plan.include_usage,
        )))
    }
}

/// A completion's `prompt`: one non-empty string, or one list of token ids.
fn completion_prompt(prompt: &Value) -> Result<PromptInput> {
    let prompt = match prompt {
        Value::String(s) => PromptInput::Text(s.clone()),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            PromptInput::Text(items[0].as_str().unwrap_or_default().to_owned())
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(|v| v.is_u64()) => {
            // Ids past u32 are outside every vocabulary: refused, never wrapped.
            let ids = items
                .iter()
                .filter_map(Value::as_u64)
                .map(|v| {
                    u32::try_from(v).map_err(|_| {
                        Error::bad_request(format!("token id {v} is outside the vocabulary"))
                    })
                })
                .collect::<Result<Vec<u32>>>()?;
            PromptInput::Tokens(ids)
        }
        Value::Array(items) if items.len() > 1 => {
            return Err(Error::bad_request(
                "only one prompt per request is supported",
            ))
        }
        _ => {
            return Err(Error::bad_request(
                "prompt must be a non-empty string or a list of token ids",
            ))
        }
    };
    if matches!(&prompt, PromptInput::Text(t) if t.is_empty()) {
        return Err(Error::bad_request("prompt must not be empty"));
    }
    Ok(prompt)
}
