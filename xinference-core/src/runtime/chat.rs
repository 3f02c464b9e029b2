//! The LLM capability of the runtime: `/v1/chat/completions` and `/v1/completions`, whole or
//! streamed, with `n` choices. Rendering, tokenizing and generating all happen on the model's
//! worker threads (`llm_run.rs`); the request checks and JSON pieces are in `chat_input.rs`.

use super::answer::AnswerFormat;
use super::chat_input::{
    describe_tools_in_messages, legacy_logprobs_json, logprobs_json, normalise_messages, now, plan,
    reasoning_tags, template_kwargs, usage, PromptInput,
};
use super::llm_run::{Event, Prepared, PromptBuilder};
use super::structured::{requested_grammar, ToolRequest};
use super::Runtime;
use crate::llm::reasoning::{ReasoningSplitter, ReasoningTags};
use crate::llm::tools::{tools_system_prompt, ToolFormat};
use crate::llm::{Generated, LlmEngine};
use crate::protocol::chat::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, Completion, CompletionChoice, CompletionRequest, CompletionUsage,
};
use crate::{Error, Result};
use futures::stream::{self, BoxStream, StreamExt};
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

/// The ends of a request's choices as they come; the usage once all have ended.
struct Ends {
    done: Vec<Option<Generated>>,
}

impl Ends {
    fn new(n: usize) -> Self {
        Ends {
            done: vec![None; n],
        }
    }

    /// Records choice `i`'s end; the usage of all choices when this was the last.
    fn end(&mut self, i: usize, g: Generated) -> Option<CompletionUsage> {
        self.done[i] = Some(g);
        let all: Option<Vec<&Generated>> = self.done.iter().map(Option::as_ref).collect();
        all.map(|all| usage(&all))
    }
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
        let kwargs = template_kwargs(&request)?;
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
        let spec_reasoning = reasoning_tags(&family.json);
        let build: PromptBuilder = Box::new(move |engine: &LlmEngine| {
            let format = spec_tool_format
                .or(engine.template_tool_format())
                .unwrap_or(ToolFormat::Hermes);
            let (messages, template_tools) = match &tools {
                Some(t) if engine.template_renders_tools() => (messages, Some(t.tools.raw.clone())),
                Some(t) => (
                    describe_tools_in_messages(messages, &tools_system_prompt(&t.tools)),
                    None,
                ),
                None => (messages, None),
            };
            let text = engine.render_chat(&messages, template_tools.as_deref(), &kwargs)?;
            let reasoning = spec_reasoning.clone().or_else(|| {
                // A template that writes <think> blocks marks a reasoning model too.
                text.contains("<think>").then(|| ReasoningTags {
                    start: "<think>".into(),
                    end: "</think>".into(),
                })
            });
            let answer = AnswerFormat {
                reasoning_opened: reasoning
                    .as_ref()
                    .is_some_and(|tags| ReasoningSplitter::prompt_opens_reasoning(&text, tags)),
                reasoning,
                tools: tools.as_ref().map(|t| (format, t.tools.clone())),
                single_call: tools.as_ref().is_some_and(|t| !t.parallel),
            };
            let grammar = tools
                .as_ref()
                .and_then(|t| t.grammar(format))
                .or(output_grammar);
            Ok(Prepared {
                prompt: engine.tokenize(&text)?,
                grammar,
                answer,
            })
        });
        let model = request.model.clone();
        let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
        let created = now();
        let n = plan.n;
        if !plan.stream {
            let (done, answer) = self
                .run_choices(&model, "chat", build, plan.options.clone(), n, false)
                .await?
                .whole()
                .await?;
            let choices = done
                .iter()
                .enumerate()
                .map(|(index, g)| {
                    let (message, has_calls) = answer.message(&g.text);
                    let finish_reason = if has_calls {
                        "tool_calls".to_owned()
                    } else {
                        g.finish_reason.as_str().to_owned()
                    };
                    ChatChoice {
                        index,
                        message,
                        logprobs: plan.options.logprobs.map(|_| logprobs_json(&g.logprobs)),
                        finish_reason,
                        stop_sequence: g.stop_sequence.clone(),
                    }
                })
                .collect();
            return Ok(ChatOutput::Whole(ChatCompletion {
                id,
                object: "chat.completion".into(),
                created,
                model,
                choices,
                usage: usage(&done.iter().collect::<Vec<_>>()),
            }));
        }
        let want_logprobs = plan.options.logprobs.is_some();
        let choices = self
            .run_choices(&model, "chat", build, plan.options, n, true)
            .await?;
        let mut shapers: Vec<_> = (0..n).map(|_| choices.answer.streamer()).collect();
        let splits_reasoning = shapers[0].splits_reasoning();
        let chunk = move |index: usize,
                          delta: ChatDelta,
                          logprobs: Option<Value>,
                          finish: Option<String>,
                          usage: Option<CompletionUsage>| ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.clone(),
            choices: if usage.is_some() && finish.is_none() && delta == ChatDelta::default() {
                Vec::new()
            } else {
                vec![ChatChunkChoice {
                    index,
                    delta,
                    logprobs,
                    finish_reason: finish,
                    stop_sequence: None,
                }]
            },
            usage,
        };
        // As Xinference: `content: ""` first, or `reasoning_content: ""` for reasoning models.
        let first: Vec<Result<ChatCompletionChunk>> = (0..n)
            .map(|index| {
                let delta = if splits_reasoning {
                    ChatDelta {
                        role: Some("assistant".into()),
                        reasoning_content: Some(String::new()),
                        ..ChatDelta::default()
                    }
                } else {
                    ChatDelta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..ChatDelta::default()
                    }
                };
                Ok(chunk(index, delta, None, None, None))
            })
            .collect();
        let include_usage = plan.include_usage;
        let mut ends = Ends::new(n);
        let rest = choices.merged().flat_map(move |(i, event)| {
            let items: Vec<Result<ChatCompletionChunk>> = match event {
                Event::Step(step) => {
                    let mut deltas = shapers[i].push(&step.text);
                    let logprobs = want_logprobs.then(|| logprobs_json(&step.logprobs));
                    if deltas.is_empty() && logprobs.is_some() {
                        deltas.push(ChatDelta {
                            content: Some(String::new()),
                            ..ChatDelta::default()
                        });
                    }
                    let mut logprobs = logprobs;
                    deltas
                        .into_iter()
                        .map(|d| Ok(chunk(i, d, logprobs.take(), None, None)))
                        .collect()
                }
                Event::Done(g) => {
                    let (deltas, has_calls) = shapers[i].finish();
                    let mut v: Vec<Result<ChatCompletionChunk>> = deltas
                        .into_iter()
                        .map(|d| Ok(chunk(i, d, None, None, None)))
                        .collect();
                    let finish = if has_calls {
                        "tool_calls".to_owned()
                    } else {
                        g.finish_reason.as_str().to_owned()
                    };
                    let mut last = chunk(
                        i,
                        ChatDelta {
                            content: Some(String::new()),
                            ..ChatDelta::default()
                        },
                        None,
                        Some(finish),
                        None,
                    );
                    last.choices[0].stop_sequence = g.stop_sequence.clone();
                    v.push(Ok(last));
                    if let (Some(all), true) = (ends.end(i, g), include_usage) {
                        v.push(Ok(chunk(i, ChatDelta::default(), None, None, Some(all))));
                    }
                    v
                }
                Event::Failed(e) => vec![Err(e)],
                Event::Started(_) => vec![],
            };
            stream::iter(items)
        });
        Ok(ChatOutput::Stream(stream::iter(first).chain(rest).boxed()))
    }

    /// `POST /v1/completions`.
    pub async fn completion(&self, request: CompletionRequest) -> Result<CompletionOutput> {
        let prompt = match &request.prompt {
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
        let plan = plan(&request.generation, request.logprobs, Some(1024))?;
        let echo = request.echo;
        let prompt_text = match &prompt {
            PromptInput::Text(t) => t.clone(),
            PromptInput::Tokens(_) => String::new(),
        };
        let grammar = requested_grammar(&request.extra)?;
        let build: PromptBuilder = Box::new(move |engine: &LlmEngine| {
            let ids = match prompt {
                PromptInput::Text(t) => engine.tokenize(&t)?,
                PromptInput::Tokens(ids) => {
                    let vocab = engine.tokenizer().get_vocab_size(true) as u32;
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
        let model = request.model.clone();
        let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
        let created = now();
        let want_logprobs = plan.options.logprobs.is_some();
        let n = plan.n;
        let echoed = move |text: &str| {
            if echo {
                format!("{prompt_text}{text}")
            } else {
                text.to_owned()
            }
        };
        if !plan.stream {
            let (done, _) = self
                .run_choices(&model, "generate", build, plan.options.clone(), n, false)
                .await?
                .whole()
                .await?;
            let choices = done
                .iter()
                .enumerate()
                .map(|(index, g)| CompletionChoice {
                    text: echoed(&g.text),
                    index,
                    logprobs: want_logprobs.then(|| legacy_logprobs_json(&g.logprobs)),
                    finish_reason: Some(g.finish_reason.as_str().into()),
                })
                .collect();
            return Ok(CompletionOutput::Whole(Completion {
                id,
                object: "text_completion".into(),
                created,
                model,
                choices,
                usage: Some(usage(&done.iter().collect::<Vec<_>>())),
            }));
        }
        let choices = self
            .run_choices(&model, "generate", build, plan.options, n, true)
            .await?;
        let chunk = move |index: usize,
                          text: String,
                          logprobs: Option<Value>,
                          finish: Option<String>,
                          usage: Option<CompletionUsage>| Completion {
            id: id.clone(),
            object: "text_completion".into(),
            created,
            model: model.clone(),
            choices: if usage.is_some() {
                Vec::new()
            } else {
                vec![CompletionChoice {
                    text,
                    index,
                    logprobs,
                    finish_reason: finish,
                }]
            },
            usage,
        };
        let include_usage = plan.include_usage;
        let echo_first = echoed("");
        let first: Vec<Result<Completion>> = if !echo_first.is_empty() {
            (0..n)
                .map(|index| Ok(chunk(index, echo_first.clone(), None, None, None)))
                .collect()
        } else {
            Vec::new()
        };
        let mut ends = Ends::new(n);
        let rest = choices.merged().flat_map(move |(i, event)| {
            let items: Vec<Result<Completion>> = match event {
                Event::Step(step) => vec![Ok(chunk(
                    i,
                    step.text,
                    want_logprobs.then(|| legacy_logprobs_json(&step.logprobs)),
                    None,
                    None,
                ))],
                Event::Done(g) => {
                    let finish = Some(g.finish_reason.as_str().into());
                    let mut v = vec![Ok(chunk(i, String::new(), None, finish, None))];
                    if let (Some(all), true) = (ends.end(i, g), include_usage) {
                        v.push(Ok(chunk(i, String::new(), None, None, Some(all))));
                    }
                    v
                }
                Event::Failed(e) => vec![Err(e)],
                Event::Started(_) => vec![],
            };
            stream::iter(items)
        });
        Ok(CompletionOutput::Stream(
            stream::iter(first).chain(rest).boxed(),
        ))
    }
}
