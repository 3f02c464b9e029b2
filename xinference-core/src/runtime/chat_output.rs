//! The one output-shaping path of `/v1/chat/completions` and `/v1/completions`: the whole
//! answer once every choice has ended, or a stream of chunks from the choices' events (opening
//! chunks, a step's text, each choice's closing chunk, the usage chunk once all have ended).
//! Each endpoint only says how its objects look ([`OutputShape`]).

use super::answer::{AnswerFormat, AnswerStream};
use super::chat::ChunkStream;
use super::chat_input::{legacy_logprobs_json, logprobs_json, usage};
use super::llm_run::{Choices, Event};
use crate::llm::{Generated, StepOutput};
use crate::protocol::chat::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatDelta, Completion,
    CompletionChoice, CompletionUsage,
};
use crate::Result;
use futures::stream::{self, StreamExt};
use serde_json::Value;

/// How one endpoint writes its answer: the whole object and the chunks of a stream.
pub(super) trait OutputShape: Send + 'static {
    /// The whole answer.
    type Whole;
    /// One chunk of a streamed answer.
    type Chunk: Send + 'static;
    /// The whole answer from every choice's generation, in order.
    fn whole(
        &self,
        done: &[Generated],
        answer: &AnswerFormat,
        usage: CompletionUsage,
    ) -> Self::Whole;
    /// The chunks that open choice `index`'s stream.
    fn opening(&self, index: usize) -> Vec<Self::Chunk>;
    /// The chunks for the text a step of choice `index` released.
    fn step(&mut self, index: usize, step: StepOutput) -> Vec<Self::Chunk>;
    /// The chunks that close choice `index`.
    fn done(&mut self, index: usize, generated: &Generated) -> Vec<Self::Chunk>;
    /// The chunk that carries the whole request's usage.
    fn usage(&self, index: usize, usage: CompletionUsage) -> Self::Chunk;
}

/// The ends of a request's choices as they come; the usage once all have ended.
struct Ends {
    done: Vec<Option<Generated>>,
}

impl Ends {
    /// Records choice `i`'s end; the usage of all choices when this was the last.
    fn end(&mut self, i: usize, g: Generated) -> Option<CompletionUsage> {
        self.done[i] = Some(g);
        let all: Option<Vec<&Generated>> = self.done.iter().map(Option::as_ref).collect();
        all.map(|all| usage(&all))
    }
}

/// Waits for every choice and writes the whole answer.
pub(super) async fn whole<S: OutputShape>(shape: &S, choices: Choices) -> Result<S::Whole> {
    let (done, answer) = choices.whole().await?;
    let all = usage(&done.iter().collect::<Vec<_>>());
    Ok(shape.whole(&done, &answer, all))
}

/// The choices' events as a stream of chunks; with `include_usage`, a usage chunk once every
/// choice has ended. A failure ends the stream with an `Err` item.
pub(super) fn chunks<S: OutputShape>(
    mut shape: S,
    choices: Choices,
    include_usage: bool,
) -> ChunkStream<S::Chunk> {
    let n = choices.events.len();
    let first: Vec<Result<S::Chunk>> = (0..n).flat_map(|i| shape.opening(i)).map(Ok).collect();
    let mut ends = Ends {
        done: vec![None; n],
    };
    let rest = choices.merged().flat_map(move |(i, event)| {
        let items: Vec<Result<S::Chunk>> = match event {
            Event::Step(step) => shape.step(i, step).into_iter().map(Ok).collect(),
            Event::Done(g) => {
                let mut v: Vec<_> = shape.done(i, &g).into_iter().map(Ok).collect();
                if let (Some(all), true) = (ends.end(i, g), include_usage) {
                    v.push(Ok(shape.usage(i, all)));
                }
                v
            }
            Event::Failed(e) => vec![Err(e)],
            Event::Started(_) => vec![],
        };
        stream::iter(items)
    });
    stream::iter(first).chain(rest).boxed()
}

/// The finish reason of a chat choice: `tool_calls` when its answer held calls.
fn chat_finish(has_calls: bool, g: &Generated) -> String {
    if has_calls {
        "tool_calls".to_owned()
    } else {
        g.finish_reason.as_str().to_owned()
    }
}

/// `chat.completion` objects and `chat.completion.chunk`s, with the assistant message read
/// by the request's [`AnswerFormat`] (reasoning, tool calls).
pub(super) struct ChatShape {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix time.
    pub created: u64,
    /// The model uid.
    pub model: String,
    /// Whether log-probabilities were asked for.
    pub logprobs: bool,
    /// One stream reader per choice (streams only).
    pub readers: Vec<AnswerStream>,
}

impl ChatShape {
    fn chunk(
        &self,
        index: usize,
        delta: ChatDelta,
        logprobs: Option<Value>,
        finish: Option<String>,
        usage: Option<CompletionUsage>,
    ) -> ChatCompletionChunk {
        let usage_only = usage.is_some() && finish.is_none() && delta == ChatDelta::default();
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: if usage_only {
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
        }
    }
}

fn empty_content() -> ChatDelta {
    ChatDelta {
        content: Some(String::new()),
        ..ChatDelta::default()
    }
}

impl OutputShape for ChatShape {
    type Whole = ChatCompletion;
    type Chunk = ChatCompletionChunk;

    fn whole(
        &self,
        done: &[Generated],
        answer: &AnswerFormat,
        usage: CompletionUsage,
    ) -> Self::Whole {
        let choices = done
            .iter()
            .enumerate()
            .map(|(index, g)| {
                let (message, has_calls) = answer.message(&g.text);
                ChatChoice {
                    index,
                    message,
                    logprobs: self.logprobs.then(|| logprobs_json(&g.logprobs)),
                    finish_reason: chat_finish(has_calls, g),
                    stop_sequence: g.stop_sequence.clone(),
                }
            })
            .collect();
        ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    /// As Xinference: `content: ""` first, or `reasoning_content: ""` for reasoning models.
    fn opening(&self, index: usize) -> Vec<Self::Chunk> {
        let reasoning = self.readers.first().is_some_and(|r| r.splits_reasoning());
        let delta = if reasoning {
            ChatDelta {
                role: Some("assistant".into()),
                reasoning_content: Some(String::new()),
                ..ChatDelta::default()
            }
        } else {
            ChatDelta {
                role: Some("assistant".into()),
                ..empty_content()
            }
        };
        vec![self.chunk(index, delta, None, None, None)]
    }

    fn step(&mut self, index: usize, step: StepOutput) -> Vec<Self::Chunk> {
        let mut deltas = self.readers[index].push(&step.text);
        let mut logprobs = self.logprobs.then(|| logprobs_json(&step.logprobs));
        if deltas.is_empty() && logprobs.is_some() {
            deltas.push(empty_content());
        }
        deltas
            .into_iter()
            .map(|d| self.chunk(index, d, logprobs.take(), None, None))
            .collect()
    }

    fn done(&mut self, index: usize, g: &Generated) -> Vec<Self::Chunk> {
        let (deltas, has_calls) = self.readers[index].finish();
        let mut v: Vec<_> = deltas
            .into_iter()
            .map(|d| self.chunk(index, d, None, None, None))
            .collect();
        let finish = chat_finish(has_calls, g);
        let mut last = self.chunk(index, empty_content(), None, Some(finish), None);
        last.choices[0].stop_sequence = g.stop_sequence.clone();
        v.push(last);
        v
    }

    fn usage(&self, index: usize, usage: CompletionUsage) -> Self::Chunk {
        self.chunk(index, ChatDelta::default(), None, None, Some(usage))
    }
}

/// `text_completion` objects, whole and as chunks, with the prompt in front under `echo`.
pub(super) struct CompletionShape {
    /// `cmpl-...`.
    pub id: String,
    /// Unix time.
    pub created: u64,
    /// The model uid.
    pub model: String,
    /// Whether log-probabilities were asked for.
    pub logprobs: bool,
    /// The prompt text when `echo` is on (empty otherwise).
    pub echo: String,
}

impl CompletionShape {
    fn chunk(
        &self,
        index: usize,
        text: String,
        logprobs: Option<Value>,
        finish: Option<String>,
        usage: Option<CompletionUsage>,
    ) -> Completion {
        Completion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
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
        }
    }
}

impl OutputShape for CompletionShape {
    type Whole = Completion;
    type Chunk = Completion;

    fn whole(&self, done: &[Generated], _: &AnswerFormat, usage: CompletionUsage) -> Self::Whole {
        let choices = done
            .iter()
            .enumerate()
            .map(|(index, g)| CompletionChoice {
                text: format!("{}{}", self.echo, g.text),
                index,
                logprobs: self.logprobs.then(|| legacy_logprobs_json(&g.logprobs)),
                finish_reason: Some(g.finish_reason.as_str().into()),
            })
            .collect();
        Completion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: Some(usage),
        }
    }

    fn opening(&self, index: usize) -> Vec<Self::Chunk> {
        if self.echo.is_empty() {
            return Vec::new();
        }
        vec![self.chunk(index, self.echo.clone(), None, None, None)]
    }

    fn step(&mut self, index: usize, step: StepOutput) -> Vec<Self::Chunk> {
        let logprobs = self.logprobs.then(|| legacy_logprobs_json(&step.logprobs));
        vec![self.chunk(index, step.text, logprobs, None, None)]
    }

    fn done(&mut self, index: usize, g: &Generated) -> Vec<Self::Chunk> {
        let finish = Some(g.finish_reason.as_str().into());
        vec![self.chunk(index, String::new(), None, finish, None)]
    }

    fn usage(&self, index: usize, usage: CompletionUsage) -> Self::Chunk {
        self.chunk(index, String::new(), None, None, Some(usage))
    }
}
