//! Continuous batching of decode steps and prompt chunks. Each sequence keeps its own
//! generation loop on its own slot thread (sampling, grammar, stop strings, logprobs, streaming
//! and cancellation stay per sequence), but its forward passes meet here: whichever waiting
//! sequence finds no pass running leads one, gathering every step already waiting (and, for a
//! moment, those of the other sequences still decoding), and runs them as one
//! [`CausalLm::decode_batch`] over the shared weights. A prompt is fed in chunks that ride in
//! the same passes as the others' decode steps, so a new long prompt does not stall them for
//! its whole prefill. Sequences join when their first chunk comes and leave when they end,
//! between passes.
//!
//! A leader waits only for sequences known to be on their way: those that entered or got
//! their last pass's result and have not stepped since (sampling, streaming). It waits for
//! them up to half the last pass's time (a missed step waits a whole pass, then runs in a
//! smaller one); a sequence that once kept a pass waiting that long (a client reading its
//! stream slowly, whose slot blocks on the full stream) is waited for only briefly until it
//! comes in time again.

use crate::llm::model::{CausalLm, DecodeStep, KvState};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a leader waits at least for the steps of sequences on their way (their sampling
/// and streaming between two steps takes well under this on an idle machine), and how long
/// for a sequence that came late before.
const GATHER: Duration = Duration::from_millis(3);

/// The longest a leader waits for sequences on their way (half the last pass's time, within
/// [`GATHER`] and this).
const GATHER_MAX: Duration = Duration::from_millis(40);

/// Most prompt rows one pass takes beside decode steps (more chunks wait for the next pass;
/// one chunk always goes, whatever its size). A decode step then waits for at most this
/// many prompt rows, not for a whole prompt.
pub(crate) const SHARED_PROMPT_ROWS: usize = 64;

/// Most prompt rows one pass takes when no decode step is in it.
pub(crate) const ALONE_PROMPT_ROWS: usize = 512;

/// Whether leaders gather with the earlier fixed window (`XINFERENCE_BATCH_GATHER=fixed`,
/// read once; for A/B benchmarks): up to [`GATHER`] for a step of every sequence counted.
fn fixed_window() -> bool {
    static FIXED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FIXED.get_or_init(|| std::env::var("XINFERENCE_BATCH_GATHER").is_ok_and(|v| v == "fixed"))
}

/// Counters of the passes run, as the model's description shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BatchStats {
    /// Passes run with decode steps in them (with or without prompt chunks).
    pub passes: u64,
    /// Decode steps they computed (`steps / passes` is the mean batch size).
    pub steps: u64,
    /// The most decode steps in one pass so far.
    pub largest: usize,
    /// Prompt chunks fed in passes.
    pub prompt_chunks: u64,
    /// Of those, chunks that shared their pass with decode steps of other sequences.
    pub shared_prompt_chunks: u64,
    /// Passes run with prompt chunks only.
    pub prompt_passes: u64,
    /// Prompt rows fed in passes (all chunks' tokens).
    pub prompt_rows: u64,
    /// Passes by their count of decode steps: `sizes[i]` passes had `i + 1` steps (the last
    /// counts those with more too).
    pub sizes: [u64; 8],
    /// Seconds spent in passes with decode steps.
    pub decode_pass_s: f64,
    /// Seconds spent in passes of prompt chunks only.
    pub prompt_pass_s: f64,
    /// Seconds leaders waited for the steps of sequences on their way.
    pub gather_s: f64,
}

impl BatchStats {
    /// Counts a pass of `decode` steps and `chunks` prompt chunks of `prompt_rows` rows that
    /// took `took`.
    fn record(&mut self, decode: usize, chunks: usize, prompt_rows: usize, took: Duration) {
        self.passes += u64::from(decode > 0);
        self.steps += decode as u64;
        self.largest = self.largest.max(decode);
        self.prompt_chunks += chunks as u64;
        self.prompt_rows += prompt_rows as u64;
        if decode > 0 {
            self.shared_prompt_chunks += chunks as u64;
            self.sizes[decode.min(self.sizes.len()) - 1] += 1;
            self.decode_pass_s += took.as_secs_f64();
        } else {
            self.prompt_passes += 1;
            self.prompt_pass_s += took.as_secs_f64();
        }
    }
}

/// A step waiting for a pass.
struct Pending {
    ticket: u64,
    /// The sequence's id ([`Decoding`]).
    sequence: u64,
    step: DecodeStep,
    /// A prompt chunk (else a decode step).
    prompt: bool,
}

/// Where a sequence counted by [`StepBatcher::enter`] stands.
#[derive(Default)]
struct Sequence {
    /// It has no step waiting or in a pass: it is preparing its next one (or ending).
    on_its_way: bool,
    /// It kept the last leader that waited for it waiting past [`GATHER`] without coming:
    /// waited for only that long until it comes in time.
    late: bool,
}

#[derive(Default)]
struct State {
    /// Sequences between their first prompt chunk and their end (their steps come here), by
    /// id.
    sequences: HashMap<u64, Sequence>,
    next_sequence: u64,
    /// How long the last pass with decode steps took.
    last_pass: Duration,
    /// Steps waiting for a pass.
    pending: Vec<Pending>,
    /// Finished steps, by ticket: logits and the extended cache, or why the pass failed.
    done: HashMap<u64, std::result::Result<(Vec<f32>, KvState), String>>,
    /// A pass is being gathered or run.
    leading: bool,
    /// A leader is waiting for the steps of sequences on their way.
    gathering: bool,
    next_ticket: u64,
    stats: BatchStats,
}

impl State {
    /// Takes what the next pass runs: every waiting decode step, and prompt chunks in their
    /// order of arrival up to the pass's prompt rows (at least one chunk).
    fn take_pass(&mut self) -> Vec<Pending> {
        let decode = self.pending.iter().filter(|p| !p.prompt).count();
        let budget = if decode > 0 {
            SHARED_PROMPT_ROWS
        } else {
            ALONE_PROMPT_ROWS
        };
        let mut rows = 0;
        let mut chunks = 0;
        let (taken, left): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| {
                if !p.prompt {
                    return true;
                }
                let len = p.step.tokens.len();
                if chunks == 0 || rows + len <= budget {
                    chunks += 1;
                    rows += len;
                    true
                } else {
                    false
                }
            });
        self.pending = left;
        taken
    }
}

/// The meeting point of one replica's sequences (shared by its slot engines).
#[derive(Default)]
pub struct StepBatcher {
    state: Mutex<State>,
    changed: Condvar,
}

/// A sequence counted as decoding until dropped; its steps and prompt chunks go through it.
pub struct Decoding {
    batcher: Arc<StepBatcher>,
    id: u64,
}

impl Drop for Decoding {
    fn drop(&mut self) {
        self.batcher.lock().sequences.remove(&self.id);
        self.batcher.changed.notify_all();
    }
}

impl Decoding {
    /// Feeds `token` at `position` to this sequence, whose cache `model` holds, in a pass
    /// shared with whatever other sequences step now, and returns its logits. `model` keeps
    /// the extended cache. Runs within the shared compute budget.
    pub fn step(&self, model: &mut dyn CausalLm, token: u32, position: usize) -> Result<Vec<f32>> {
        self.batcher
            .run(self.id, model, vec![token], position, false)
    }

    /// Feeds a chunk of this sequence's prompt, `tokens` at `position` (0 starts the
    /// sequence), in a pass shared with the decode steps of the other sequences, and returns
    /// the logits of its last token, exactly as feeding the chunk alone would. `model` keeps
    /// the extended cache.
    pub fn feed_prompt(
        &self,
        model: &mut dyn CausalLm,
        tokens: &[u32],
        position: usize,
    ) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::internal("an empty prompt chunk"));
        }
        self.batcher
            .run(self.id, model, tokens.to_vec(), position, true)
    }

    /// Sequences counted now, this one included: a prompt is fed in smaller chunks when
    /// others are among them.
    pub fn sequences(&self) -> usize {
        self.batcher.lock().sequences.len()
    }
}

impl StepBatcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a sequence as decoding (leaders wait briefly for its steps and prompt chunks)
    /// until the guard drops; its steps go through the guard.
    pub fn enter(self: &Arc<Self>) -> Decoding {
        let mut state = self.lock();
        let id = state.next_sequence;
        state.next_sequence += 1;
        state.sequences.insert(
            id,
            Sequence {
                on_its_way: true,
                late: false,
            },
        );
        Decoding {
            batcher: self.clone(),
            id,
        }
    }

    /// The counters now.
    pub fn stats(&self) -> BatchStats {
        self.lock().stats
    }

    /// Sequences counted by [`StepBatcher::enter`] now.
    pub fn sequences(&self) -> usize {
        self.lock().sequences.len()
    }

    /// Waits, as the leader of the next pass, for the sequences on their way: up to half the
    /// last pass's time (within [`GATHER`] and [`GATHER_MAX`]) for those that came in time
    /// before, up to [`GATHER`] for late ones. Those that do not come are marked late.
    fn gather<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let start = Instant::now();
        state = self.gather_from(state, start);
        state.stats.gather_s += start.elapsed().as_secs_f64();
        state
    }

    /// [`StepBatcher::gather`] from `start`.
    fn gather_from<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
        start: Instant,
    ) -> MutexGuard<'a, State> {
        if fixed_window() {
            // The earlier rule (A/B): up to GATHER for a step of every counted sequence.
            let deadline = start + GATHER;
            while state.pending.len() < state.sequences.len() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = self
                    .changed
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            return state;
        }
        let long = (state.last_pass / 2).clamp(GATHER, GATHER_MAX);
        state.gathering = true;
        loop {
            let (mut in_time, mut late) = (false, false);
            for s in state.sequences.values().filter(|s| s.on_its_way) {
                if s.late {
                    late = true;
                } else {
                    in_time = true;
                }
            }
            let wait = match (in_time, late) {
                (true, _) => long,
                (false, true) => GATHER,
                (false, false) => break,
            };
            let now = Instant::now();
            let deadline = start + wait;
            if now >= deadline {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.gathering = false;
        for s in state.sequences.values_mut() {
            if s.on_its_way {
                s.late = true;
            }
        }
        state
    }

    fn run(
        &self,
        sequence: u64,
        model: &mut dyn CausalLm,
        tokens: Vec<u32>,
        position: usize,
        prompt: bool,
    ) -> Result<Vec<f32>> {
        let kv = if position == 0 {
            // A new sequence: whatever the model held before is not its.
            KvState {
                layers: Vec::new(),
                len: 0,
            }
        } else {
            model
                .take_kv(position)
                .ok_or_else(|| Error::internal("this model cannot hand out its cache"))?
        };
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push(Pending {
            ticket,
            sequence,
            step: DecodeStep { tokens, kv },
            prompt,
        });
        // In time: a leader is waiting for steps, or none is running a pass.
        let in_time = state.gathering || !state.leading;
        if let Some(s) = state.sequences.get_mut(&sequence) {
            s.on_its_way = false;
            s.late &= !in_time;
        }
        self.changed.notify_all();
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                drop(state);
                let (logits, kv) = result.map_err(Error::internal)?;
                let len = kv.len;
                if !model.load_kv(&kv, len)? {
                    return Err(Error::internal("the model refused its own cache"));
                }
                return Ok(logits);
            }
            if state.leading || !state.pending.iter().any(|p| p.ticket == ticket) {
                state = self.wait(state);
                continue;
            }
            // Lead a pass: gather the steps of the sequences on their way for a moment.
            state.leading = true;
            state = self.gather(state);
            let pass = state.take_pass();
            drop(state);
            let decode = pass.iter().filter(|p| !p.prompt).count();
            let chunks = pass.len() - decode;
            let prompt_rows: usize = pass
                .iter()
                .filter(|p| p.prompt)
                .map(|p| p.step.tokens.len())
                .sum();
            let mut tickets = Vec::with_capacity(pass.len());
            let mut steps = Vec::with_capacity(pass.len());
            let mut sequences = Vec::with_capacity(pass.len());
            for p in pass {
                tickets.push(p.ticket);
                sequences.push(p.sequence);
                steps.push(p.step);
            }
            let began = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::compute::with_budget(|| model.decode_batch(&mut steps))
            }));
            let took = began.elapsed();
            let outcome = match outcome {
                Ok(Ok(Some(logits))) if logits.len() == steps.len() => Ok(logits),
                Ok(Ok(_)) => Err("this model cannot batch decode steps".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(format!(
                    "decode pass panicked: {}",
                    crate::error::panic_text(&panic)
                )),
            };
            state = self.lock();
            if decode > 0 {
                state.last_pass = took;
            }
            // Each sequence of the pass is on its way to its next step (or its end).
            for id in sequences {
                if let Some(s) = state.sequences.get_mut(&id) {
                    s.on_its_way = true;
                }
            }
            state.stats.record(decode, chunks, prompt_rows, took);
            match outcome {
                Ok(logits) => {
                    for ((t, step), l) in tickets.into_iter().zip(steps).zip(logits) {
                        state.done.insert(t, Ok((l, step.kv)));
                    }
                }
                Err(message) => {
                    for t in tickets {
                        state.done.insert(t, Err(message.clone()));
                    }
                }
            }
            state.leading = false;
            self.changed.notify_all();
        }
    }
}
