//! Continuous batching of decode steps. Each sequence keeps its own generation loop on its own
//! slot thread (sampling, grammar, stop strings, logprobs, streaming and cancellation stay per
//! sequence), but its decode steps meet here: whichever waiting sequence finds no pass running
//! leads one, gathering every step already waiting (and, for a moment, those of the other
//! sequences still decoding), and runs them as one [`CausalLm::decode_batch`] over the shared
//! weights. Sequences join when their prompt is in and leave when they end, between passes.

use crate::llm::model::{CausalLm, DecodeStep, KvState};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a leader waits for the steps of sequences still decoding (their sampling and
/// streaming between two steps takes well under this).
const GATHER: Duration = Duration::from_millis(3);

/// Counters of the passes run, as the model's description shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BatchStats {
    /// Batched decode passes run.
    pub passes: u64,
    /// Sequence steps they computed (`steps / passes` is the mean batch size).
    pub steps: u64,
    /// The largest batch so far.
    pub largest: usize,
}

#[derive(Default)]
struct State {
    /// Sequences between their prompt and their end (their steps come here).
    decoding: usize,
    /// Steps waiting for a pass, by ticket.
    pending: Vec<(u64, DecodeStep)>,
    /// Finished steps, by ticket: logits and the extended cache, or why the pass failed.
    done: HashMap<u64, std::result::Result<(Vec<f32>, KvState), String>>,
    /// A pass is being gathered or run.
    leading: bool,
    next_ticket: u64,
    stats: BatchStats,
}

/// The meeting point of one replica's sequences (shared by its slot engines).
#[derive(Default)]
pub struct StepBatcher {
    state: Mutex<State>,
    changed: Condvar,
}

/// A sequence counted as decoding until dropped.
pub struct Decoding(Arc<StepBatcher>);

impl Drop for Decoding {
    fn drop(&mut self) {
        self.0.lock().decoding -= 1;
        self.0.changed.notify_all();
    }
}

impl StepBatcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a sequence as decoding (leaders wait briefly for its steps) until the guard drops.
    pub fn enter(self: &Arc<Self>) -> Decoding {
        self.lock().decoding += 1;
        Decoding(self.clone())
    }

    /// The counters now.
    pub fn stats(&self) -> BatchStats {
        self.lock().stats
    }

    /// Feeds `token` at `position` to the sequence whose cache `model` holds, in a pass shared
    /// with whatever other sequences step now, and returns its logits. `model` keeps the
    /// extended cache. Runs within the shared compute budget.
    pub fn step(&self, model: &mut dyn CausalLm, token: u32, position: usize) -> Result<Vec<f32>> {
        let kv = model
            .take_kv(position)
            .ok_or_else(|| Error::internal("this model cannot hand out its cache"))?;
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push((ticket, DecodeStep { token, kv }));
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
            if state.leading {
                state = self.wait(state);
                continue;
            }
            // Lead a pass: gather the other decoding sequences' steps for a moment.
            state.leading = true;
            let deadline = Instant::now() + GATHER;
            while state.pending.len() < state.decoding {
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
            let (tickets, mut steps): (Vec<u64>, Vec<DecodeStep>) =
                std::mem::take(&mut state.pending).into_iter().unzip();
            drop(state);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::compute::with_budget(|| model.decode_batch(&mut steps))
            }));
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
            state.stats.passes += 1;
            state.stats.steps += steps.len() as u64;
            state.stats.largest = state.stats.largest.max(steps.len());
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
