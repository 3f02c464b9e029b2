//! Concurrent requests to one Whisper model share their passes, as the embedding batcher and
//! the LLM's step batcher do. Each request keeps its own window loop on its own slot thread
//! (temperature fallback, beam or best-of search, timestamps, streaming), but its model calls
//! meet here: whichever waiting call finds no pass running leads one, gathering every call
//! already waiting (and, for a moment, those of the other requests still transcribing). The
//! windows to encode go through the encoder side by side, one per pool thread, each as alone
//! (their audio keys/values too), the decoder steps through one [`WhisperNet::decode_many`]
//! pass (each request with its own tokens and caches), then the logits of all of them through
//! one product. Every row comes out rounded as it would alone, so a request's tokens do not
//! depend on its neighbours.

use super::model::{DecoderState, Step, WhisperNet, SMALL_ROWS};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a leader waits for the calls of requests still transcribing (their work between
/// two decoder steps takes well under this).
const GATHER: Duration = Duration::from_millis(3);

/// A model call of one request.
pub(crate) enum Call {
    /// Encode one window of features (`n_mels x 3000`, row after row).
    Encode(Vec<f32>),
    /// Feed `tokens` to `state` (all its sequences; see [`WhisperNet::decode`]) and return the
    /// logits of the rows `at`, or of every row when `None`.
    Step {
        /// The tokens, sequence after sequence.
        tokens: Vec<u32>,
        /// The request's decoder state, handed to the pass and back.
        state: DecoderState,
        /// Rows whose logits are wanted (`None`: all).
        at: Option<Vec<usize>>,
    },
}

/// What a [`Call`] gets back.
pub(crate) enum Answer {
    /// A fresh decoder state over the window's audio (its cross-attention keys/values).
    Encoded(DecoderState),
    /// The state, extended, and the logits asked for.
    Stepped(DecoderState, Vec<Vec<f32>>),
}

/// Counters of the passes run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PassStats {
    /// Passes run.
    pub passes: u64,
    /// Calls they served (`calls / passes` is the mean batch).
    pub calls: u64,
    /// Windows encoded.
    pub windows: u64,
    /// The most calls one pass served.
    pub largest: usize,
}

#[derive(Default)]
struct State {
    /// Requests between their start and their end (their calls come here).
    transcribing: usize,
    pending: Vec<(u64, Call)>,
    done: HashMap<u64, Result<Answer>>,
    leading: bool,
    next_ticket: u64,
    stats: PassStats,
}

/// The meeting point of one model's concurrent requests.
#[derive(Default)]
pub struct PassBatcher {
    state: Mutex<State>,
    changed: Condvar,
}

/// A request counted as transcribing until dropped.
pub(crate) struct Transcribing<'a>(&'a PassBatcher);

impl Drop for Transcribing<'_> {
    fn drop(&mut self) {
        self.0.lock().transcribing -= 1;
        self.0.changed.notify_all();
    }
}

impl PassBatcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request as transcribing (leaders wait briefly for its calls) until the guard
    /// drops.
    pub(crate) fn enter(&self) -> Transcribing<'_> {
        self.lock().transcribing += 1;
        Transcribing(self)
    }

    /// The counters now.
    pub fn stats(&self) -> PassStats {
        self.lock().stats
    }

    /// Runs `call` on `net` in a pass shared with whatever other requests call now.
    pub(crate) fn call(&self, net: &WhisperNet, call: Call) -> Result<Answer> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push((ticket, call));
        self.changed.notify_all();
        loop {
            if let Some(answer) = state.done.remove(&ticket) {
                return answer;
            }
            if state.leading {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.leading = true;
            let deadline = Instant::now() + GATHER;
            while state.pending.len() < state.transcribing {
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
            let (tickets, calls): (Vec<u64>, Vec<Call>) =
                std::mem::take(&mut state.pending).into_iter().unzip();
            drop(state);
            let windows = calls
                .iter()
                .filter(|c| matches!(c, Call::Encode(_)))
                .count();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::compute::with_budget(|| crate::kernels::on_pool(|| run_pass(net, calls)))
            }))
            .unwrap_or_else(|panic| {
                Err(Error::internal(format!(
                    "Whisper pass panicked: {}",
                    crate::error::panic_text(&panic)
                )))
            });
            state = self.lock();
            state.stats.passes += 1;
            state.stats.calls += tickets.len() as u64;
            state.stats.windows += windows as u64;
            state.stats.largest = state.stats.largest.max(tickets.len());
            match outcome {
                Ok(answers) => {
                    for (t, a) in tickets.into_iter().zip(answers) {
                        state.done.insert(t, Ok(a));
                    }
                }
                Err(e) => {
                    for t in tickets {
                        state.done.insert(t, Err(e.clone()));
                    }
                }
            }
            state.leading = false;
            self.changed.notify_all();
        }
    }
}

/// Runs the gathered calls: encodes the windows side by side, the decoder steps
/// of at most [`SMALL_ROWS`] rows in one shared pass (longer ones, prompts, alone through
/// `gemm`), then the wanted logits of all steps in one product. Answers in the calls' order.
pub(crate) fn run_pass(net: &WhisperNet, calls: Vec<Call>) -> Result<Vec<Answer>> {
    let mut answers: Vec<Option<Answer>> = (0..calls.len()).map(|_| None).collect();
    let mut encodes = Vec::new();
    let mut steps = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        match call {
            Call::Encode(mel) => encodes.push((i, mel)),
            Call::Step { tokens, state, at } => steps.push((i, tokens, state, at)),
        }
    }
    for ((i, _), state) in encodes.iter().zip(encode_windows(net, &encodes)?) {
        answers[*i] = Some(Answer::Encoded(state));
    }
    if !steps.is_empty() {
        let mut hidden: Vec<Option<Tensor>> = (0..steps.len()).map(|_| None).collect();
        let mut shared: Vec<(usize, Step)> = Vec::new();
        for (j, (_, tokens, state, _)) in steps.iter_mut().enumerate() {
            if tokens.len() <= SMALL_ROWS {
                shared.push((j, Step { tokens, state }));
            } else {
                hidden[j] = Some(net.decode(tokens, state)?);
            }
        }
        let (order, mut group): (Vec<usize>, Vec<Step>) = shared.into_iter().unzip();
        for (j, h) in order.into_iter().zip(net.decode_many(&mut group)?) {
            hidden[j] = Some(h);
        }
        // The wanted rows of every step, then one product over the embedding matrix.
        let mut rows = Vec::new();
        let mut counts = Vec::with_capacity(steps.len());
        for ((_, tokens, _, at), h) in steps.iter().zip(&hidden) {
            let h = h.as_ref().expect("every step has its hidden states");
            match at {
                Some(at) => {
                    for &r in at {
                        rows.push(h.narrow(0, r, 1)?);
                    }
                    counts.push(at.len());
                }
                None => {
                    rows.push(h.clone());
                    counts.push(tokens.len());
                }
            }
        }
        let mut logits = net.logits_rows(&Tensor::cat(&rows, 0)?)?.into_iter();
        for ((i, _, state, _), count) in steps.into_iter().zip(counts) {
            answers[i] = Some(Answer::Stepped(
                state,
                logits.by_ref().take(count).collect(),
            ));
        }
    }
    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| Error::internal("a Whisper call got no answer")))
        .collect()
}

/// Encodes windows of features and starts a decoder state over each: the windows side by side
/// on the pool, each encoded as a request alone encodes it (a batch of one: the same products,
/// so the same bits). One batch of all of them (`b x 1500` rows per product) did no less work
/// per window, held every window's activations at once (the MLP's `[b x 1500, 4d]` alone is
/// 37 MB for four tiny.en windows, past the cache) and split every product over both threads;
/// side by side, each thread keeps one window's activations and its products' parts mostly to
/// itself (the other thread takes them only when idle). Measured, four tiny.en windows on a
/// loaded 2-core machine, three alternating rounds: 7-8% less time and CPU than one batch.
fn encode_windows(net: &WhisperNet, windows: &[(usize, Vec<f32>)]) -> Result<Vec<DecoderState>> {
    let n_mels = net.dims.n_mels;
    windows
        .par_iter()
        .map(|(_, mel)| {
            let frames = mel.len() / n_mels;
            if frames * n_mels != mel.len() {
                return Err(Error::internal("a Whisper window of partial mel frames"));
            }
            let x = Tensor::from_slice(mel, (1, n_mels, frames), &Device::Cpu)?;
            net.start(&net.encode(&x)?)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audio::mel::{log_mel, N_FRAMES};
    use crate::audio::whisper::WhisperModel;
    use std::path::{Path, PathBuf};

    /// The whisper-tiny.en test model (fails with the fix when it is missing).
    pub(crate) fn tiny_en() -> WhisperModel {
        let dir = std::env::var_os("XINFERENCE_TEST_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                    .join(".cache/xinference-rs/test-models")
            })
            .join("whisper-tiny.en-ct2");
        assert!(
            dir.join("model.bin").is_file(),
            "the whisper-tiny.en test model is missing: run `python3 scripts/fetch-test-models.py \
             whisper` (or `bash .ci/run`), or point XINFERENCE_TEST_MODELS at its folder ({})",
            dir.display()
        );
        WhisperModel::load(&dir).expect("tiny.en loads")
    }

    /// The encoder input of the 30 s window at `start` seconds of a test clip.
    fn window(file: &str, start: usize) -> Vec<f32> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/audio")
            .join(file);
        let samples = crate::audio::input::decode_audio(&std::fs::read(path).unwrap()).unwrap();
        let (features, frames) = log_mel(&samples, 80, 160);
        let seek = start * 100;
        let size = N_FRAMES.min(frames - 1 - seek);
        crate::audio::decode::window_mel(&features, frames, 80, seek, size)
    }

    /// One request's calls: encode its window, feed its prompt, grow to `beams` sequences
    /// and feed two more tokens to each. Returns every logits row it got, in order.
    fn drive(
        mel: Vec<f32>,
        prompt: &[u32],
        beams: usize,
        call: &dyn Fn(Call) -> Answer,
    ) -> Vec<Vec<f32>> {
        let Answer::Encoded(mut state) = call(Call::Encode(mel)) else {
            panic!("an encode answer")
        };
        let mut all = Vec::new();
        let at = Some(vec![0, prompt.len() - 1]);
        let tokens = prompt.to_vec();
        let Answer::Stepped(back, logits) = call(Call::Step { tokens, state, at }) else {
            panic!("a step answer")
        };
        all.extend(logits);
        state = back;
        state.reorder(&vec![0; beams]).unwrap();
        for step in 0..2u32 {
            let tokens: Vec<u32> = (0..beams as u32).map(|r| 300 + 7 * r + step).collect();
            let Answer::Stepped(back, logits) = call(Call::Step {
                tokens,
                state,
                at: None,
            }) else {
                panic!("a step answer")
            };
            all.extend(logits);
            state = back;
        }
        all
    }

    fn max_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
            .fold(0.0, f32::max)
    }

    #[test]
    fn shared_pass_matches_one_at_a_time() {
        let model = tiny_en();
        let sp = model.special.clone();
        // Three windows of different speech, prompts of 1, 4 and 20 tokens (the last one
        // longer than a shared step: it goes through the pass alone), 1, 5 and 2 sequences.
        let long: Vec<u32> = std::iter::once(sp.sot_prev)
            .chain(400..418)
            .chain([sp.sot])
            .collect();
        let requests = [
            (window("short_en.flac", 0), vec![sp.sot], 1),
            (
                window("spanish.flac", 0),
                vec![sp.sot_prev, 220, 264, sp.sot],
                5,
            ),
            (window("long_en.flac", 20), long, 2),
        ];
        let alone: Vec<Vec<Vec<f32>>> = requests
            .iter()
            .map(|(mel, prompt, beams)| {
                drive(mel.clone(), prompt, *beams, &|c| {
                    run_pass(&model.net, vec![c]).unwrap().pop().unwrap()
                })
            })
            .collect();
        // The same calls on threads that meet in the model's pass batcher.
        let barrier = std::sync::Barrier::new(requests.len());
        let together: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = requests
                .iter()
                .map(|(mel, prompt, beams)| {
                    let (model, barrier) = (&model, &barrier);
                    s.spawn(move || {
                        let _transcribing = model.passes.enter();
                        barrier.wait();
                        drive(mel.clone(), prompt, *beams, &|c| {
                            model.passes.call(&model.net, c).unwrap()
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let stats = model.passes.stats();
        assert!(stats.largest >= 2, "no pass was shared: {stats:?}");
        assert_eq!(stats.windows, 3, "{stats:?}");
        for (a, t) in alone.iter().zip(&together) {
            let diff = max_difference(a, t);
            assert!(diff <= 1e-4, "shared passes changed the logits by {diff}");
        }
        // Different windows give different logits (the comparison above is not vacuous).
        assert!(max_difference(&alone[0][..1], &alone[1][..1]) > 1e-2);
    }
}
