//! Dynamic batching for embedding models, in the manner of text-embeddings-inference.
//!
//! Each replica has one compute thread that owns the network. Requests are tokenized by their
//! caller, off that thread (inline when short, on the blocking pool when long, never a long job
//! on the async executor), then wait in a bounded queue (a full queue, or a reached
//! `request_limits`, is an immediate 429). Whenever the compute thread is free it takes every
//! queued request up to a token budget, drops those whose caller has gone, sorts all their
//! sequences by length and runs them in as few forward passes as the pass budget (counted as if
//! padded, which packing models beat) allows,
//! so concurrent single-sentence requests share passes instead of queueing one by one.

use super::health::ModelHealth;
use super::worker::{failed_message, panic_text};
use crate::embedding::{EmbedInput, EmbedTokenizer, Embedding, EmbeddingModel, Truncation};
use crate::{Error, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Real tokens taken from the queue at once (a larger single request is taken alone).
const DRAIN_TOKENS: usize = 16_384;
/// Padded tokens (sequences x longest) in one forward pass.
const PASS_TOKENS: usize = 8_192;
/// Sequences in one forward pass.
const PASS_SEQUENCES: usize = 128;
/// After a pass that served several requests at once, the compute thread waits up to this long
/// for as many to be queued again before it starts the next pass: concurrent clients whose
/// answers just went out send their next requests within a fraction of a millisecond, and one
/// full pass is cheaper than a pass of one followed by a pass of the rest.
const REGROUP_WAIT: std::time::Duration = std::time::Duration::from_millis(2);
/// Inputs with more text than this (bytes, all inputs together) are tokenized on the blocking
/// pool; shorter ones inline, where a thread hop would cost more than the tokenization.
const INLINE_TOKENIZE_BYTES: usize = 2_048;

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>>>;

/// A request waiting for the compute thread.
struct Job {
    sequences: Vec<Vec<u32>>,
    reply: Reply,
    _in_flight: InFlight,
}

struct Queue {
    jobs: VecDeque<Job>,
    open: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Set when a forward pass panicked: the replica then refuses requests with a 503.
    health: ModelHealth,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One replica of an embedding model: its tokenizer, bounded queue and compute thread.
pub struct EmbedBatcher {
    name: String,
    tokenizer: Arc<EmbedTokenizer>,
    dimensions: usize,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    in_flight: Arc<AtomicUsize>,
    request_limit: Option<usize>,
    capacity: usize,
}

impl EmbedBatcher {
    /// Starts the compute thread of replica `name`. At most `queue_capacity` requests wait;
    /// with `request_limit`, at most that many are queued or running at once.
    pub fn spawn(
        name: &str,
        model: EmbeddingModel,
        queue_capacity: usize,
        request_limit: Option<usize>,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                open: true,
            }),
            ready: Condvar::new(),
            health: ModelHealth::default(),
        });
        let dimensions = model.network.dimensions();
        let tokenizer = model.tokenizer.clone();
        let worker_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("embed-{name}"))
            .spawn({
                let name = name.to_owned();
                move || serve(model, &worker_shared, &name)
            })
            .map_err(|e| Error::internal(format!("cannot start a worker thread: {e}")))?;
        Ok(EmbedBatcher {
            name: name.to_owned(),
            tokenizer,
            dimensions,
            shared,
            thread: Mutex::new(Some(thread)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            request_limit,
            capacity: queue_capacity.max(1),
        })
    }

    /// Whether this replica's compute has panicked (then it serves no more requests).
    pub fn health(&self) -> &ModelHealth {
        &self.shared.health
    }

    /// Length of the vectors the model produces.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Embeds `inputs`, in order. 429 when the queue is full or `request_limits` is reached,
    /// 400 for an input that cannot be tokenized (or is too long with truncation off).
    pub async fn embed(
        &self,
        inputs: Vec<EmbedInput>,
        truncation: Truncation,
    ) -> Result<Vec<Embedding>> {
        let in_flight = self.admit()?;
        let text_bytes: usize = inputs
            .iter()
            .map(|i| match i {
                EmbedInput::Text(t) => t.len(),
                EmbedInput::Tokens(ids) => ids.len(),
            })
            .sum();
        let tokenizer = self.tokenizer.clone();
        let tokenize = move || {
            inputs
                .iter()
                .map(|i| tokenizer.encode(i, truncation))
                .collect::<Result<Vec<_>>>()
        };
        let sequences = if text_bytes <= INLINE_TOKENIZE_BYTES {
            tokenize()?
        } else {
            tokio::task::spawn_blocking(tokenize)
                .await
                .map_err(|e| Error::internal(format!("tokenizer task failed: {e}")))??
        };
        let tokens: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let (reply, answer) = oneshot::channel();
        self.enqueue(Job {
            sequences,
            reply,
            _in_flight: in_flight,
        })?;
        let vectors = answer.await.map_err(|_| {
            Error::internal(format!(
                "model {} stopped while serving the request",
                self.name
            ))
        })??;
        Ok(vectors
            .into_iter()
            .zip(tokens)
            .map(|(vector, tokens)| Embedding { vector, tokens })
            .collect())
    }

    /// Requests queued or running on this replica now.
    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests waiting in the queue now (not yet taken by the compute thread).
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    fn admit(&self) -> Result<InFlight> {
        let previous = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        match self.request_limit {
            Some(limit) if previous >= limit => Err(Error::overloaded(format!(
                "Rate limit reached for the model. Request limit {limit} for the model: {}",
                self.name
            ))),
            _ => Ok(guard),
        }
    }

    fn enqueue(&self, job: Job) -> Result<()> {
        if let Some(panic) = self.shared.health.failure() {
            return Err(Error::not_ready(failed_message(&self.name, panic)));
        }
        let mut queue = self.shared.lock();
        if !queue.open {
            return Err(Error::not_ready(format!(
                "model {} is terminating",
                self.name
            )));
        }
        if queue.jobs.len() >= self.capacity {
            // Requests whose callers have gone do not hold places in the queue.
            queue.jobs.retain(|j| !j.reply.is_closed());
        }
        if queue.jobs.len() >= self.capacity {
            return Err(Error::overloaded(format!(
                "the queue of model {} is full; retry later",
                self.name
            )));
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Closes the queue, lets queued requests finish, and joins the compute thread, so the
    /// model's memory is freed when this returns. Blocking: call off the async executor.
    pub fn shutdown(&self) {
        self.shared.lock().open = false;
        self.shared.ready.notify_all();
        if let Some(thread) = self.thread.lock().expect("batcher lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbedBatcher {
    fn drop(&mut self) {
        self.shared.lock().open = false;
        self.shared.ready.notify_all();
    }
}

/// The compute thread: take what is queued, run it, answer, repeat until closed and empty.
fn serve(mut model: EmbeddingModel, shared: &Shared, name: &str) {
    let mut last = 0;
    while let Some(jobs) = next_jobs(shared, last) {
        last = jobs.len();
        if let Some(panic) = shared.health.failure() {
            let error = Error::not_ready(failed_message(name, panic));
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
            continue;
        }
        run_jobs(&mut model, jobs, &shared.health, name);
    }
    // The model is dropped here, on its own thread, freeing its memory.
}

/// Waits for work, then takes queued requests up to [`DRAIN_TOKENS`] (at least one), leaving
/// out those whose caller has gone. `None` once the queue is closed and empty. When the last
/// pass served `last` > 1 requests, waits up to [`REGROUP_WAIT`] for that many to be queued.
fn next_jobs(shared: &Shared, last: usize) -> Option<Vec<Job>> {
    let mut queue = shared.lock();
    loop {
        while queue.jobs.is_empty() {
            if !queue.open {
                return None;
            }
            queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
        if last > 1 && queue.jobs.len() < last && queue.open {
            let deadline = std::time::Instant::now() + REGROUP_WAIT;
            while queue.jobs.len() < last {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                queue = shared
                    .ready
                    .wait_timeout(queue, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        let mut taken = Vec::new();
        let mut tokens = 0;
        while let Some(job) = queue.jobs.front() {
            let size: usize = job.sequences.iter().map(Vec::len).sum();
            if !taken.is_empty() && tokens + size > DRAIN_TOKENS {
                break;
            }
            let job = queue.jobs.pop_front().expect("front exists");
            if job.reply.is_closed() {
                continue; // The caller went away: spend no compute on it.
            }
            tokens += size;
            taken.push(job);
        }
        if !taken.is_empty() {
            return Some(taken);
        }
    }
}

/// A request being answered: its vectors as they come, and what is still missing.
struct Pending {
    vectors: Vec<Option<Vec<f32>>>,
    missing: usize,
    reply: Option<Reply>,
    /// The request counts as in flight until this is dropped, just before its answer goes.
    in_flight: Option<InFlight>,
}

/// Runs every sequence of `jobs` in length-sorted forward passes and answers each request as
/// soon as its last sequence is done.
fn run_jobs(model: &mut EmbeddingModel, jobs: Vec<Job>, health: &ModelHealth, name: &str) {
    let mut items: Vec<(usize, usize)> = Vec::new(); // (job, sequence)
    let mut pending = Vec::with_capacity(jobs.len());
    let mut sequences = Vec::with_capacity(jobs.len());
    for (j, job) in jobs.into_iter().enumerate() {
        let n = job.sequences.len();
        items.extend((0..n).map(|s| (j, s)));
        pending.push(Pending {
            vectors: vec![None; n],
            missing: n,
            reply: Some(job.reply),
            in_flight: Some(job._in_flight),
        });
        sequences.push(job.sequences);
    }
    items.sort_by_key(|&(j, s)| sequences[j][s].len());
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        while end < items.len()
            && end - start < PASS_SEQUENCES
            && (end - start + 1) * sequences[items[end].0][items[end].1].len() <= PASS_TOKENS
        {
            end += 1;
        }
        let pass = &items[start..end];
        start = end;
        // Skip a pass whose callers have all gone.
        if pass
            .iter()
            .all(|&(j, _)| pending[j].reply.as_ref().is_none_or(|r| r.is_closed()))
        {
            continue;
        }
        let batch: Vec<&[u32]> = pass
            .iter()
            .map(|&(j, s)| sequences[j][s].as_slice())
            .collect();
        let outcome = match health.failure() {
            // An earlier pass of these jobs panicked: the model is not trusted any more.
            Some(panic) => Err(Error::not_ready(failed_message(name, panic))),
            None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::compute::with_budget(|| model.network.forward(&batch))
            }))
            .unwrap_or_else(|p| Err(Error::internal(health.fail(name, &panic_text(&p))))),
        };
        match outcome {
            Ok(vectors) => {
                for (&(j, s), vector) in pass.iter().zip(vectors) {
                    let p = &mut pending[j];
                    p.vectors[s] = Some(vector);
                    p.missing -= 1;
                    if p.missing == 0 {
                        p.in_flight.take();
                        if let Some(reply) = p.reply.take() {
                            let _ = reply.send(Ok(std::mem::take(&mut p.vectors)
                                .into_iter()
                                .flatten()
                                .collect()));
                        }
                    }
                }
            }
            Err(e) => {
                for &(j, _) in pass {
                    pending[j].in_flight.take();
                    if let Some(reply) = pending[j].reply.take() {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::Embed;
    use std::sync::mpsc;

    /// A network that records each pass and waits for the test's go-ahead before answering.
    struct Gated {
        passes: Arc<Mutex<Vec<Vec<Vec<u32>>>>>,
        started: mpsc::Sender<()>,
        gate: mpsc::Receiver<()>,
    }

    impl Embed for Gated {
        fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
            self.started.send(()).unwrap();
            self.gate.recv().unwrap();
            self.passes
                .lock()
                .unwrap()
                .push(batch.iter().map(|s| s.to_vec()).collect());
            Ok(batch.iter().map(|s| vec![s[0] as f32]).collect())
        }
        fn dimensions(&self) -> usize {
            1
        }
    }

    fn tokenizer() -> Arc<EmbedTokenizer> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tiny-embedders/bert");
        Arc::new(EmbedTokenizer::load(&dir, 24).unwrap())
    }

    /// How long the batching test waits for any one step before it fails instead of hanging.
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_queued_requests_skips_abandoned_ones_and_refuses_a_full_queue() {
        let passes = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started) = mpsc::channel();
        let (go, gate) = mpsc::channel();
        let model = EmbeddingModel {
            tokenizer: tokenizer(),
            network: Box::new(Gated {
                passes: passes.clone(),
                started: started_tx,
                gate,
            }),
        };
        let batcher = Arc::new(EmbedBatcher::spawn("t", model, 3, None).unwrap());
        let request = |id: u32| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                batcher
                    .embed(vec![EmbedInput::Tokens(vec![id; 4])], Truncation::default())
                    .await
            })
        };
        // Waits until the queue holds exactly the requests whose token ids are `ids`, in order
        // (its length alone cannot tell E's arrival from B's departure).
        let wait_queued = |ids: &'static [u32]| {
            let batcher = batcher.clone();
            async move {
                let deadline = std::time::Instant::now() + LIMIT;
                loop {
                    let queued: Vec<u32> = batcher
                        .shared
                        .lock()
                        .jobs
                        .iter()
                        .map(|job| job.sequences[0][0])
                        .collect();
                    if queued == ids {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the queue holds {queued:?}, never {ids:?}"
                    );
                    tokio::task::yield_now().await;
                }
            }
        };
        // A occupies the compute thread.
        let a = request(10);
        let started = Arc::new(Mutex::new(started));
        let s = started.clone();
        tokio::task::spawn_blocking(move || s.lock().unwrap().recv_timeout(LIMIT).unwrap())
            .await
            .unwrap();
        // B queues, then its caller goes away.
        let b = request(11);
        wait_queued(&[11]).await;
        b.abort();
        assert!(b.await.unwrap_err().is_cancelled());
        // C, D and E queue; B's abandoned place is given up when the queue is full.
        let c = request(12);
        wait_queued(&[11, 12]).await;
        let d = request(13);
        wait_queued(&[11, 12, 13]).await;
        let e = request(14);
        wait_queued(&[12, 13, 14]).await;
        // The queue holds 3 live requests: the next one is a 429.
        let f = tokio::time::timeout(LIMIT, request(15))
            .await
            .expect("a request beyond the queue's capacity waited instead of being refused")
            .unwrap()
            .unwrap_err();
        assert_eq!(f.kind(), crate::ErrorKind::Overloaded, "{f}");
        go.send(()).unwrap(); // A's pass
        go.send(()).unwrap(); // the batched pass
        for (handle, id) in [(a, 10), (c, 12), (d, 13), (e, 14)] {
            let out = tokio::time::timeout(LIMIT, handle)
                .await
                .expect("a queued request was never answered")
                .unwrap()
                .unwrap();
            assert_eq!(out[0].vector, vec![id as f32]);
            assert_eq!(out[0].tokens, 4);
        }
        let passes = passes.lock().unwrap().clone();
        assert_eq!(passes.len(), 2, "{passes:?}");
        assert_eq!(passes[0], vec![vec![10; 4]]);
        // C, D and E ran together in one pass; B was never computed.
        assert_eq!(passes[1], vec![vec![12; 4], vec![13; 4], vec![14; 4]]);
        assert_eq!(batcher.load(), 0);
        batcher.shutdown();
    }

    /// A network that panics on a sequence starting with token 9.
    struct Fragile;

    impl Embed for Fragile {
        fn forward(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
            assert!(batch.iter().all(|s| s[0] != 9), "poisoned input");
            Ok(batch.iter().map(|s| vec![s[0] as f32]).collect())
        }
        fn dimensions(&self) -> usize {
            1
        }
    }

    #[tokio::test]
    async fn a_panicking_pass_fails_the_replica_which_then_refuses_with_503() {
        let model = EmbeddingModel {
            tokenizer: tokenizer(),
            network: Box::new(Fragile),
        };
        let batcher = EmbedBatcher::spawn("t", model, 3, None).unwrap();
        let embed =
            |id: u32| batcher.embed(vec![EmbedInput::Tokens(vec![id; 2])], Truncation::default());
        assert_eq!(embed(7).await.unwrap()[0].vector, vec![7.0]);
        let e = embed(9).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Internal);
        assert!(e.message().contains("poisoned input"), "{e}");
        assert!(batcher.health().failure().is_some());
        let e = embed(7).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotReady, "{e}");
        assert!(e.message().contains("launch it again"), "{e}");
        batcher.shutdown();
    }

    #[test]
    fn truncation_cuts_or_refuses_long_inputs() {
        let tok = tokenizer();
        let long = EmbedInput::Text("a man is eating food ".repeat(20));
        let ids = tok.encode(&long, Truncation::default()).unwrap();
        assert_eq!(ids.len(), 24);
        let cls_sep = tok.encode(&EmbedInput::Text(String::new()), Truncation::default());
        assert!(
            cls_sep.is_ok(),
            "an empty text still has its special tokens"
        );
        let cut = Truncation {
            max_tokens: Some(6),
            truncate: true,
        };
        let short = tok.encode(&long, cut).unwrap();
        assert_eq!(short.len(), 6);
        assert_eq!(short[0], ids[0], "the special tokens are kept");
        assert_eq!(short[5], ids[23], "the closing special token is kept");
        let refuse = Truncation {
            max_tokens: None,
            truncate: false,
        };
        let e = tok.encode(&long, refuse).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadRequest);
        assert!(e.message().contains("truncat"), "{e}");
        let tokens = EmbedInput::Tokens(vec![5; 30]);
        assert_eq!(tok.encode(&tokens, cut).unwrap(), vec![5; 6]);
        assert!(tok.encode(&tokens, refuse).is_err());
    }
}
