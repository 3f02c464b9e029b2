//! Generation jobs on an LLM's sequence slots: a request's prompt is built on the worker (where
//! the template and tokenizer are), then each of its `n` choices generates on a slot of its
//! own. With `n` > 1 the first choice computes the prompt once and leaves its keys and values
//! in the prefix cache; the other choices start from them and feed only its last token.

use super::answer::AnswerFormat;
use super::metrics::RequestRecord;
use super::{Loaded, Runtime, Worker};
use crate::llm::reasoning::reasoning_token_count;
use crate::llm::{Detokenizer, GenerateOptions, Generated, Grammar, LlmEngine, StepOutput};
use crate::{Error, Result};
use futures::stream::{self, StreamExt};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a choice's job sends.
pub(super) enum Event {
    /// The prompt was accepted: how to read the answer, and the prompt for the other choices.
    Started(Box<Prepared>),
    /// Text released by a step.
    Step(StepOutput),
    /// Generation ended.
    Done(Generated),
    /// Generation failed.
    Failed(Error),
}

/// A request made ready on the worker, where the model's template and tokenizer are.
#[derive(Clone)]
pub(super) struct Prepared {
    /// The prompt tokens.
    pub prompt: Vec<u32>,
    /// The grammar the answer must match.
    pub grammar: Option<Grammar>,
    /// How to read the answer.
    pub answer: AnswerFormat,
}

impl Prepared {
    /// A prompt read as plain text.
    pub fn plain(prompt: Vec<u32>, grammar: Option<Grammar>) -> Self {
        Prepared {
            prompt,
            grammar,
            answer: AnswerFormat::default(),
        }
    }
}

/// How a job turns a request into a prompt on the worker.
pub(super) type PromptBuilder = Box<dyn FnOnce(&LlmEngine) -> Result<Prepared> + Send>;

/// The running choices of one request, in order, once every one has accepted the prompt.
pub(super) struct Choices {
    /// How to read the answers.
    pub answer: AnswerFormat,
    /// Each choice's events after `Started`.
    pub events: Vec<mpsc::Receiver<Event>>,
}

impl Choices {
    /// Waits for every choice's end: the generations in order, or the first failure.
    pub async fn whole(self) -> Result<(Vec<Generated>, AnswerFormat)> {
        let mut done = Vec::with_capacity(self.events.len());
        for mut rx in self.events {
            loop {
                match rx.recv().await {
                    Some(Event::Done(g)) => {
                        done.push(g);
                        break;
                    }
                    Some(Event::Failed(e)) => return Err(e),
                    Some(_) => {}
                    None => return Err(Error::internal("the model stopped while serving")),
                }
            }
        }
        Ok((done, self.answer))
    }

    /// Every choice's events as one stream, tagged with the choice's index.
    pub fn merged(self) -> impl futures::Stream<Item = (usize, Event)> + Send + 'static {
        stream::select_all(
            self.events
                .into_iter()
                .enumerate()
                .map(|(i, rx)| events(rx).map(move |e| (i, e)).boxed()),
        )
    }
}

impl Runtime {
    fn llm_workers(&self, uid: &str, ability: &str) -> Result<(Arc<super::Instance>, Arc<Loaded>)> {
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

    /// Starts `n` choices of a request and returns once each has accepted the prompt (so that
    /// prompt errors are ordinary error answers, not stream events). `stream_steps`: send each
    /// step's text (streams); otherwise only the end. Choice `i` samples with `seed + i`, so a
    /// seeded request gives the same choices again.
    pub(super) async fn run_choices(
        &self,
        uid: &str,
        ability: &str,
        build: PromptBuilder,
        options: GenerateOptions,
        n: usize,
        stream_steps: bool,
    ) -> Result<Choices> {
        let (instance, loaded) = self.llm_workers(uid, ability)?;
        let record = instance.counters.begin();
        let choices = start_choices(
            &instance,
            &loaded,
            &record,
            build,
            options,
            n,
            stream_steps,
            uid,
        )
        .await;
        record.check(choices)
    }
}

/// [`Runtime::run_choices`] on the model's slots, each choice's job holding `record`.
#[allow(clippy::too_many_arguments)]
async fn start_choices(
    instance: &super::Instance,
    loaded: &Loaded,
    record: &Arc<RequestRecord>,
    build: PromptBuilder,
    options: GenerateOptions,
    n: usize,
    stream_steps: bool,
    uid: &str,
) -> Result<Choices> {
    let Loaded::Llm(workers) = loaded else {
        unreachable!("checked above")
    };
    let start = instance.pick_replica(workers.len());
    let options_of = |i: usize| {
        let mut o = options.clone();
        o.sampling.seed = o.sampling.seed.map(|s| s.wrapping_add(i as u64));
        o
    };
    let mut first = start_choice(
        least_loaded(workers, start),
        build,
        options_of(0),
        n > 1,
        stream_steps,
        (record.clone(), true),
    )?;
    let prepared = match first.recv().await {
        Some(Event::Started(p)) => p,
        Some(Event::Failed(e)) => return Err(e),
        _ => {
            return Err(Error::internal(format!(
                "model {uid} stopped before answering"
            )))
        }
    };
    let mut receivers = vec![first];
    for i in 1..n {
        let shared = (*prepared).clone();
        let build: PromptBuilder = Box::new(move |_| Ok(shared));
        let mut rx = start_choice(
            least_loaded(workers, start + i),
            build,
            options_of(i),
            false,
            stream_steps,
            (record.clone(), false),
        )?;
        match rx.recv().await {
            Some(Event::Started(_)) => receivers.push(rx),
            Some(Event::Failed(e)) => return Err(e),
            _ => {
                return Err(Error::internal(format!(
                    "model {uid} stopped before answering"
                )))
            }
        }
    }
    Ok(Choices {
        answer: prepared.answer,
        events: receivers,
    })
}

/// Queues one choice on `worker`: build and check the prompt, send `Started` (prompt errors
/// come before it), with `share` leave the prompt's keys and values in the prefix cache, then
/// generate. A client that went away (the receiver dropped) stops it at its next step.
/// `record` (the request's metrics, and whether this choice counts the prompt tokens) is
/// held until the choice ends.
fn start_choice(
    worker: &Worker<LlmEngine>,
    build: PromptBuilder,
    options: GenerateOptions,
    share: bool,
    stream_steps: bool,
    (record, counts_prompt): (Arc<RequestRecord>, bool),
) -> Result<mpsc::Receiver<Event>> {
    let panicked = record.clone();
    worker.stream(
        32,
        move |engine: &mut LlmEngine, tx: &mpsc::Sender<Event>| {
            let prepared = build(engine).and_then(|p| {
                super::health::panic_if_marked(|| engine.tokenizer().decode(&p.prompt, false).ok());
                engine.check_request(&p.prompt, &options)?;
                if let Some(g) = &p.grammar {
                    engine.check_grammar(g)?;
                }
                if share {
                    engine.share_prompt(&p.prompt)?;
                }
                Ok(p)
            });
            let prepared = match prepared {
                Ok(p) => p,
                Err(e) => {
                    record.fail();
                    let _ = tx.blocking_send(Event::Failed(e));
                    return;
                }
            };
            let (prompt, grammar) = (prepared.prompt.clone(), prepared.grammar.clone());
            let reasoning = prepared.answer.reasoning.clone();
            let reasoning_opened = prepared.answer.reasoning_opened;
            let kept_special_tokens = prepared.answer.kept_tokens.clone();
            if tx
                .blocking_send(Event::Started(Box::new(prepared)))
                .is_err()
            {
                return;
            }
            let options = GenerateOptions {
                grammar,
                kept_special_tokens: kept_special_tokens.clone(),
                ..options
            };
            let result = engine.generate(&prompt, &options, &mut |step| {
                record.first_token();
                if stream_steps {
                    tx.blocking_send(Event::Step(step)).is_ok()
                } else {
                    !tx.is_closed()
                }
            });
            let result = result.and_then(|mut g| {
                if let Some(tags) = &reasoning {
                    let mut detokenizer =
                        Detokenizer::keeping(engine.tokenizer(), &kept_special_tokens);
                    g.reasoning_tokens =
                        reasoning_token_count(tags, reasoning_opened, &g.tokens, |token| {
                            detokenizer.push(engine.tokenizer(), token)
                        })?;
                }
                Ok(g)
            });
            match &result {
                Ok(g) => {
                    record.first_token();
                    let input = if counts_prompt { g.prompt_tokens } else { 0 };
                    record.tokens(input, g.completion_tokens);
                }
                Err(_) => record.fail(),
            }
            let _ = tx.blocking_send(match result {
                Ok(g) => Event::Done(g),
                Err(e) => Event::Failed(e),
            });
        },
        move |error| {
            panicked.fail();
            Event::Failed(error)
        },
    )
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

/// A receiver as a stream.
fn events(rx: mpsc::Receiver<Event>) -> impl futures::Stream<Item = Event> + Send + 'static {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}
