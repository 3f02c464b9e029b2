//! The LLM capability of the runtime: `/v1/chat/completions` and `/v1/completions`, whole or
//! streamed. Rendering, tokenizing and generating all happen on the model's worker thread.

use super::answer::AnswerFormat;
use super::structured::{requested_grammar, ToolRequest};
use super::{Loaded, Runtime, Worker};
use crate::llm::reasoning::{ReasoningSplitter, ReasoningTags};
use crate::llm::tools::{tools_system_prompt, ToolFormat};
use crate::llm::{
    GenerateOptions, Generated, Grammar, LlmEngine, SamplingParams, StepOutput, TokenLogprob,
};
use crate::protocol::chat::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, Completion, CompletionChoice, CompletionRequest, CompletionUsage, GenerationFields,
};
use crate::{Error, ErrorKind, Result};
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

/// What the worker sends while streaming.
enum Event {
    /// The prompt was accepted: how to read the answer.
    Started(AnswerFormat),
    /// Text released by a step.
    Step(StepOutput),
    /// Generation ended.
    Done(Generated),
    /// Generation failed.
    Failed(Error),
}

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

/// Validated generation settings of a request.
struct Plan {
    options: GenerateOptions,
    stream: bool,
    include_usage: bool,
}

fn plan(
    fields: &GenerationFields,
    logprobs: Option<usize>,
    default_max_tokens: Option<usize>,
) -> Result<Plan> {
    if fields.n.is_some_and(|n| n != 1) {
        return Err(Error::bad_request("only n=1 is supported"));
    }
    if fields.logit_bias.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(Error::new(
            ErrorKind::NotImplemented,
            "logit_bias is not supported",
        ));
    }
    let temperature = fields.temperature.unwrap_or(0.8);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(Error::bad_request(format!(
            "temperature must be between 0 and 2, not {temperature}"
        )));
    }
    let top_p = fields.top_p.unwrap_or(0.95);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Error::bad_request(format!(
            "top_p must be in (0, 1], not {top_p}"
        )));
    }
    let min_p = fields.min_p.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_p) {
        return Err(Error::bad_request(format!(
            "min_p must be in [0, 1], not {min_p}"
        )));
    }
    let repetition_penalty = fields.repetition_penalty.unwrap_or(1.0);
    if repetition_penalty <= 0.0 {
        return Err(Error::bad_request("repetition_penalty must be positive"));
    }
    for (name, v) in [
        ("presence_penalty", fields.presence_penalty),
        ("frequency_penalty", fields.frequency_penalty),
    ] {
        if v.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(Error::bad_request(format!(
                "{name} must be between -2 and 2"
            )));
        }
    }
    let max_tokens = fields.max_completion_tokens.or(fields.max_tokens);
    if max_tokens == Some(0) {
        return Err(Error::bad_request("max_tokens must be at least 1"));
    }
    if logprobs.is_some_and(|n| n > 20) {
        return Err(Error::bad_request("top_logprobs must be at most 20"));
    }
    let top_k = fields.top_k.unwrap_or(40);
    Ok(Plan {
        options: GenerateOptions {
            max_tokens: max_tokens.map(|m| m as usize).or(default_max_tokens),
            sampling: SamplingParams {
                temperature,
                top_p,
                top_k: if top_k <= 0 { 0 } else { top_k as usize },
                min_p,
                repetition_penalty,
                presence_penalty: fields.presence_penalty.unwrap_or(0.0),
                frequency_penalty: fields.frequency_penalty.unwrap_or(0.0),
                seed: fields.seed,
            },
            stop: fields
                .stop
                .clone()
                .map(|s| s.into_vec())
                .unwrap_or_default(),
            stop_token_ids: fields.stop_token_ids.clone().unwrap_or_default(),
            logprobs,
            grammar: None,
        },
        stream: fields.stream,
        include_usage: fields
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
    })
}

/// Checks messages and turns multi-part text content into plain strings for the template.
fn normalise_messages(messages: &[Value]) -> Result<Vec<Value>> {
    if messages.is_empty() {
        return Err(Error::bad_request("messages must not be empty"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let Value::Object(map) = m else {
                return Err(Error::bad_request(format!("messages[{i}] must be an object")));
            };
            let role = map.get("role").and_then(Value::as_str).ok_or_else(|| {
                Error::bad_request(format!("messages[{i}] has no role"))
            })?;
            if !matches!(role, "system" | "user" | "assistant" | "tool" | "developer" | "function") {
                return Err(Error::bad_request(format!("messages[{i}] has an unknown role `{role}`")));
            }
            let mut out = map.clone();
            let content = match map.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            (Some(kind), _) => {
                                return Err(Error::bad_request(format!(
                                    "messages[{i}] has a `{kind}` content part; this model reads text only"
                                )))
                            }
                            _ => return Err(Error::bad_request(format!("messages[{i}] has a malformed content part"))),
                        }
                    }
                    Value::String(text)
                }
                None | Some(Value::Null) if role == "assistant" => Value::Null,
                None | Some(Value::Null) => {
                    return Err(Error::bad_request(format!("messages[{i}] ({role}) has no content")))
                }
                Some(_) => return Err(Error::bad_request(format!("messages[{i}].content must be a string or a list of parts"))),
            };
            out.insert("content".into(), content);
            if let Some(calls) = map.get("tool_calls") {
                out.insert("tool_calls".into(), template_tool_calls(i, calls)?);
            }
            if role == "developer" {
                out.insert("role".into(), Value::String("system".into()));
            }
            Ok(Value::Object(out))
        })
        .collect()
}

/// The chat template's extra variables: `chat_template_kwargs`, plus `enable_thinking` and
/// `reasoning_effort` given at the top level (or in the OpenAI SDK's `extra_body`, which lands
/// there). `enable_thinking` is also passed as `thinking`, the name some templates read.
fn template_kwargs(request: &ChatCompletionRequest) -> Result<Map<String, Value>> {
    let mut kwargs = request.chat_template_kwargs.clone().unwrap_or_default();
    for key in ["enable_thinking", "reasoning_effort"] {
        if let Some(v) = request.extra.get(key) {
            kwargs.entry(key.to_owned()).or_insert(v.clone());
        }
    }
    if let Some(v) = kwargs.get("enable_thinking").cloned() {
        if !v.is_boolean() {
            return Err(Error::bad_request(format!(
                "enable_thinking must be true or false, not {v}"
            )));
        }
        kwargs.entry("thinking".to_owned()).or_insert(v);
    }
    if let Some(v) = kwargs.get("reasoning_effort") {
        if !matches!(v.as_str(), Some("low" | "medium" | "high")) {
            return Err(Error::bad_request(format!(
                "reasoning_effort must be low, medium or high, not {v}"
            )));
        }
    }
    Ok(kwargs)
}

/// The reasoning tags of a registry family (`reasoning_start_tag` / `reasoning_end_tag`).
fn reasoning_tags(family: &Value) -> Option<ReasoningTags> {
    let tag = |key: &str| {
        family
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    Some(ReasoningTags {
        start: tag("reasoning_start_tag")?,
        end: tag("reasoning_end_tag")?,
    })
}

/// For a template without tool support: the tools described in the system prompt, earlier
/// calls written as `<tool_call>` blocks and tool results as `<tool_response>` user turns.
fn describe_tools_in_messages(messages: Vec<Value>, tools_prompt: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
        match role {
            "assistant" if m.get("tool_calls").is_some_and(|c| c.is_array()) => {
                let mut text = content.to_owned();
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let f = &call["function"];
                    let body = json!({"name": f["name"], "arguments": f["arguments"]});
                    text.push_str(&format!("\n<tool_call>\n{body}\n</tool_call>"));
                }
                out.push(json!({"role": "assistant", "content": text.trim_start()}));
            }
            "tool" => out.push(json!({
                "role": "user",
                "content": format!("<tool_response>\n{content}\n</tool_response>"),
            })),
            _ => out.push(m),
        }
    }
    match out.first_mut() {
        Some(first) if first["role"] == "system" => {
            let text = first["content"].as_str().unwrap_or_default();
            first["content"] = Value::String(format!("{text}\n\n{tools_prompt}"));
        }
        _ => out.insert(0, json!({"role": "system", "content": tools_prompt})),
    }
    out
}

/// An assistant message's `tool_calls` as templates read them: `arguments` as an object (OpenAI
/// sends a JSON string; templates `tojson` it, which would quote it twice).
fn template_tool_calls(i: usize, calls: &Value) -> Result<Value> {
    let Value::Array(calls) = calls else {
        return Err(Error::bad_request(format!(
            "messages[{i}].tool_calls must be a list"
        )));
    };
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        let mut call = call.clone();
        let function = call.get_mut("function").ok_or_else(|| {
            Error::bad_request(format!(
                "messages[{i}].tool_calls has a call without `function`"
            ))
        })?;
        if function.get("name").and_then(Value::as_str).is_none() {
            return Err(Error::bad_request(format!(
                "messages[{i}].tool_calls has a function without a name"
            )));
        }
        if let Some(Value::String(args)) = function.get("arguments") {
            if let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(args) {
                function["arguments"] = parsed;
            }
        }
        out.push(call);
    }
    Ok(Value::Array(out))
}

fn logprobs_json(items: &[TokenLogprob]) -> Value {
    let entry = |token: &str, logprob: f32| json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
    let content: Vec<Value> = items
        .iter()
        .map(|t| {
            let mut e = entry(&t.token, t.logprob);
            e["top_logprobs"] =
                Value::Array(t.top.iter().map(|(tok, lp)| entry(tok, *lp)).collect());
            e
        })
        .collect();
    json!({"content": content})
}

fn legacy_logprobs_json(items: &[TokenLogprob]) -> Value {
    json!({
        "tokens": items.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": items.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": items.iter().map(|t| t.top.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>()).collect::<Vec<_>>(),
    })
}

fn usage(g: &Generated) -> CompletionUsage {
    CompletionUsage {
        prompt_tokens: g.prompt_tokens,
        completion_tokens: g.completion_tokens,
        total_tokens: g.prompt_tokens + g.completion_tokens,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A request made ready on the worker, where the model's template and tokenizer are.
struct Prepared {
    /// The prompt tokens.
    prompt: Vec<u32>,
    /// The grammar the answer must match.
    grammar: Option<Grammar>,
    /// How to read the answer.
    answer: AnswerFormat,
}

impl Prepared {
    fn plain(prompt: Vec<u32>, grammar: Option<Grammar>) -> Self {
        Prepared {
            prompt,
            grammar,
            answer: AnswerFormat::default(),
        }
    }
}

/// How a job turns a request into a prompt on the worker.
type PromptBuilder = Box<dyn FnOnce(&LlmEngine) -> Result<Prepared> + Send>;

impl Runtime {
    fn llm_workers(
        &self,
        uid: &str,
        ability: &str,
    ) -> Result<(std::sync::Arc<super::Instance>, std::sync::Arc<Loaded>)> {
        let instance = self.instance(uid)?;
        let serves = instance.family.has_ability(ability)
            || (ability == "generate" && instance.family.has_ability("chat"));
        if !serves {
            return Err(Error::bad_request(format!(
                "Model {uid} does not support {ability} (its abilities: {})",
                instance.family.abilities.join(", ")
            )));
        }
        let loaded = instance.loaded()?;
        if !matches!(&*loaded, Loaded::Llm(_)) {
            return Err(Error::bad_request(format!(
                "Model {uid} is not a language model"
            )));
        }
        Ok((instance, loaded))
    }

    async fn run_whole(
        &self,
        uid: &str,
        ability: &str,
        build: PromptBuilder,
        options: GenerateOptions,
    ) -> Result<(Generated, AnswerFormat)> {
        let (instance, loaded) = self.llm_workers(uid, ability)?;
        let Loaded::Llm(workers) = &*loaded else {
            unreachable!("checked above")
        };
        let worker = least_loaded(workers, instance.pick_replica(workers.len()));
        // Run as a stream of one result so that the generation sees when the caller is gone (an
        // HTTP client that disconnected drops this future) and stops at its next step instead of
        // holding the model for the rest of `max_tokens`.
        let mut rx = worker.stream(
            1,
            move |engine: &mut LlmEngine, tx: &mpsc::Sender<Result<(Generated, AnswerFormat)>>| {
                let result = build(engine).and_then(|prepared| {
                    let options = GenerateOptions {
                        grammar: prepared.grammar,
                        ..options
                    };
                    engine
                        .generate(&prepared.prompt, &options, &mut |_| !tx.is_closed())
                        .map(|g| (g, prepared.answer))
                });
                let _ = tx.blocking_send(result);
            },
            |panic| Err(Error::internal(format!("model panicked: {panic}"))),
        )?;
        rx.recv().await.unwrap_or_else(|| {
            Err(Error::internal(format!(
                "model {uid} stopped while serving the request"
            )))
        })
    }

    /// Starts a streamed generation; returns once the prompt is accepted (so prompt errors are
    /// ordinary error answers, not stream events).
    async fn run_stream(
        &self,
        uid: &str,
        ability: &str,
        build: PromptBuilder,
        options: GenerateOptions,
    ) -> Result<(AnswerFormat, mpsc::Receiver<Event>)> {
        let (instance, loaded) = self.llm_workers(uid, ability)?;
        let Loaded::Llm(workers) = &*loaded else {
            unreachable!("checked above")
        };
        let worker = least_loaded(workers, instance.pick_replica(workers.len()));
        let mut rx = worker.stream(
            32,
            move |engine: &mut LlmEngine, tx: &mpsc::Sender<Event>| {
                // Prompt errors (too long, empty) must come before `Started`, so that they are
                // ordinary error answers rather than events of an already started stream.
                let prepared = build(engine).and_then(|p| {
                    engine.check_prompt(&p.prompt)?;
                    if let Some(g) = &p.grammar {
                        engine.check_grammar(g)?;
                    }
                    Ok(p)
                });
                let prepared = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.blocking_send(Event::Failed(e));
                        return;
                    }
                };
                if tx.blocking_send(Event::Started(prepared.answer)).is_err() {
                    return;
                }
                let options = GenerateOptions {
                    grammar: prepared.grammar,
                    ..options
                };
                let result = engine.generate(&prepared.prompt, &options, &mut |step| {
                    tx.blocking_send(Event::Step(step)).is_ok()
                });
                let _ = tx.blocking_send(match result {
                    Ok(g) => Event::Done(g),
                    Err(e) => Event::Failed(e),
                });
            },
            |panic| Event::Failed(Error::internal(format!("model panicked: {panic}"))),
        )?;
        match rx.recv().await {
            Some(Event::Started(answer)) => Ok((answer, rx)),
            Some(Event::Failed(e)) => Err(e),
            _ => Err(Error::internal(format!(
                "model {uid} stopped before answering"
            ))),
        }
    }

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
        if !plan.stream {
            let (g, answer) = self
                .run_whole(&model, "chat", build, plan.options.clone())
                .await?;
            let (message, has_calls) = answer.message(&g.text);
            let finish_reason = if has_calls {
                "tool_calls".to_owned()
            } else {
                g.finish_reason.as_str().to_owned()
            };
            return Ok(ChatOutput::Whole(ChatCompletion {
                id,
                object: "chat.completion".into(),
                created,
                model,
                choices: vec![ChatChoice {
                    index: 0,
                    message,
                    logprobs: plan.options.logprobs.map(|_| logprobs_json(&g.logprobs)),
                    finish_reason,
                    stop_sequence: g.stop_sequence.clone(),
                }],
                usage: usage(&g),
            }));
        }
        let want_logprobs = plan.options.logprobs.is_some();
        let (answer, rx) = self.run_stream(&model, "chat", build, plan.options).await?;
        let mut shaper = answer.streamer();
        let chunk = move |delta: ChatDelta,
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
                    index: 0,
                    delta,
                    logprobs,
                    finish_reason: finish,
                    stop_sequence: None,
                }]
            },
            usage,
        };
        // As Xinference: `content: ""` first, or `reasoning_content: ""` for reasoning models.
        let first = chunk(
            if shaper.splits_reasoning() {
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
            },
            None,
            None,
            None,
        );
        let include_usage = plan.include_usage;
        let rest = events(rx).flat_map(move |event| {
            let items: Vec<Result<ChatCompletionChunk>> = match event {
                Event::Step(step) => {
                    let mut deltas = shaper.push(&step.text);
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
                        .map(|d| Ok(chunk(d, logprobs.take(), None, None)))
                        .collect()
                }
                Event::Done(g) => {
                    let (deltas, has_calls) = shaper.finish();
                    let mut v: Vec<Result<ChatCompletionChunk>> = deltas
                        .into_iter()
                        .map(|d| Ok(chunk(d, None, None, None)))
                        .collect();
                    let finish = if has_calls {
                        "tool_calls".to_owned()
                    } else {
                        g.finish_reason.as_str().to_owned()
                    };
                    let mut last = chunk(
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
                    if include_usage {
                        v.push(Ok(chunk(ChatDelta::default(), None, None, Some(usage(&g)))));
                    }
                    v
                }
                Event::Failed(e) => vec![Err(e)],
                Event::Started(_) => vec![],
            };
            stream::iter(items)
        });
        Ok(ChatOutput::Stream(
            stream::once(async move { Ok(first) }).chain(rest).boxed(),
        ))
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
        if !plan.stream {
            let (g, _) = self
                .run_whole(&model, "generate", build, plan.options.clone())
                .await?;
            let text = if echo {
                format!("{prompt_text}{}", g.text)
            } else {
                g.text.clone()
            };
            return Ok(CompletionOutput::Whole(Completion {
                id,
                object: "text_completion".into(),
                created,
                model,
                choices: vec![CompletionChoice {
                    text,
                    index: 0,
                    logprobs: want_logprobs.then(|| legacy_logprobs_json(&g.logprobs)),
                    finish_reason: Some(g.finish_reason.as_str().into()),
                }],
                usage: Some(usage(&g)),
            }));
        }
        let (_, rx) = self
            .run_stream(&model, "generate", build, plan.options)
            .await?;
        let chunk = move |text: String,
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
                    index: 0,
                    logprobs,
                    finish_reason: finish,
                }]
            },
            usage,
        };
        let include_usage = plan.include_usage;
        let first: Vec<Result<Completion>> = if echo && !prompt_text.is_empty() {
            vec![Ok(chunk(prompt_text, None, None, None))]
        } else {
            Vec::new()
        };
        let rest = events(rx).flat_map(move |event| {
            let items: Vec<Result<Completion>> = match event {
                Event::Step(step) => vec![Ok(chunk(
                    step.text,
                    want_logprobs.then(|| legacy_logprobs_json(&step.logprobs)),
                    None,
                    None,
                ))],
                Event::Done(g) => {
                    let mut v = vec![Ok(chunk(
                        String::new(),
                        None,
                        Some(g.finish_reason.as_str().into()),
                        None,
                    ))];
                    if include_usage {
                        v.push(Ok(chunk(String::new(), None, None, Some(usage(&g)))));
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

/// The worker (sequence slot) with the fewest requests, starting the search at `start` so that
/// ties rotate.
fn least_loaded(workers: &[Worker<LlmEngine>], start: usize) -> &Worker<LlmEngine> {
    let n = workers.len();
    (0..n)
        .map(|i| &workers[(start + i) % n])
        .min_by_key(|w| w.load())
        .expect("a model has at least one worker")
}

/// A prompt as text or token ids.
enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

fn events(rx: mpsc::Receiver<Event>) -> impl futures::Stream<Item = Event> + Send + 'static {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}
