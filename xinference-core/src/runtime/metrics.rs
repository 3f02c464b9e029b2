//! What `GET /metrics` reports, read from the runtime itself: per-model request counters and
//! latency histograms recorded as requests run, and gauges read at scrape time from the
//! workers' queues, the LLM slots' KV caches and the prefix caches. The wire format (the
//! Prometheus text) is the server's business; this module only gathers numbers.

use super::{Instance, Loaded, Runtime};
use crate::llm::PrefixCacheStats;
use crate::protocol::xinference::InstanceStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Upper bounds (seconds) of the request-duration buckets (Xinference's).
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Upper bounds (seconds) of the time-to-first-token buckets (vLLM's).
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];
/// Tokens per logical KV block: an LLM slot's cache grows token by token, reported in blocks
/// of this many tokens as vLLM does (`vllm:cache_config_info`'s `block_size`).
pub const KV_BLOCK_SIZE: usize = 16;

/// A cumulative histogram: counts per upper bound, plus the sum and count of observations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistogramSnapshot>,
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations at or below it), ascending; `+Inf` is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            inner: Mutex::new(HistogramSnapshot {
                buckets: bounds.iter().map(|&b| (b, 0)).collect(),
                sum: 0.0,
                count: 0,
            }),
        }
    }

    /// Records `value`.
    pub fn observe(&self, value: f64) {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (i, bound) in self.bounds.iter().enumerate() {
            if value <= *bound {
                h.buckets[i].1 += 1;
            }
        }
        h.sum += value;
        h.count += 1;
    }

    /// The values now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Counters of one launched model, shared by its replicas.
#[derive(Debug)]
pub struct ModelCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    duration: Histogram,
    ttft: Histogram,
}

impl Default for ModelCounters {
    fn default() -> Self {
        ModelCounters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            duration: Histogram::new(DURATION_BUCKETS),
            ttft: Histogram::new(TTFT_BUCKETS),
        }
    }
}

impl ModelCounters {
    /// Starts timing a request: counted now, its duration (and whether it failed) recorded
    /// when the last clone of the returned record is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Arc<RequestRecord> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Arc::new(RequestRecord {
            counters: self.clone(),
            start: Instant::now(),
            failed: AtomicBool::new(false),
            first_token: AtomicBool::new(false),
        })
    }
}

/// One request being timed (see [`ModelCounters::begin`]).
#[derive(Debug)]
pub(crate) struct RequestRecord {
    counters: Arc<ModelCounters>,
    start: Instant,
    failed: AtomicBool,
    first_token: AtomicBool,
}

impl RequestRecord {
    /// Marks the request as failed.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Marks it failed when `result` is an error; passes `result` on.
    pub fn check<T>(&self, result: crate::Result<T>) -> crate::Result<T> {
        if result.is_err() {
            self.fail();
        }
        result
    }

    /// The first token (or text) of the answer is out: its latency is recorded once.
    pub fn first_token(&self) {
        if !self.first_token.swap(true, Ordering::Relaxed) {
            self.counters
                .ttft
                .observe(self.start.elapsed().as_secs_f64());
        }
    }

    /// Counts `input` prompt tokens and `output` generated tokens.
    pub fn tokens(&self, input: usize, output: usize) {
        self.counters
            .input_tokens
            .fetch_add(input as u64, Ordering::Relaxed);
        self.counters
            .output_tokens
            .fetch_add(output as u64, Ordering::Relaxed);
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let c = &self.counters;
        if *self.failed.get_mut() {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.duration.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The LLM side of a model's snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSnapshot {
    /// Tokens per logical KV block ([`KV_BLOCK_SIZE`]).
    pub block_size: usize,
    /// Logical KV blocks of all slots (each slot can hold a whole context).
    pub num_blocks: usize,
    /// Blocks the running sequences fill now.
    pub used_blocks: usize,
    /// The prompt-prefix caches, summed over replicas.
    pub prefix_cache: PrefixCacheStats,
}

/// One launched model's numbers at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSnapshot {
    /// The model uid (what requests name in `model`).
    pub uid: String,
    /// The family name.
    pub name: String,
    /// `LLM`, `embedding`, ...
    pub model_type: String,
    /// Its lifecycle status.
    pub status: InstanceStatus,
    /// Replicas.
    pub replicas: usize,
    /// `request_limits`, when set.
    pub request_limit: Option<usize>,
    /// Requests being computed now.
    pub running: usize,
    /// Requests queued, not started yet.
    pub waiting: usize,
    /// Requests received.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Prompt tokens (LLMs).
    pub input_tokens: u64,
    /// Generated tokens (LLMs).
    pub output_tokens: u64,
    /// Request durations, seconds.
    pub duration: HistogramSnapshot,
    /// Time to first token, seconds (LLMs).
    pub ttft: HistogramSnapshot,
    /// KV cache and prefix cache (LLMs that are loaded).
    pub llm: Option<LlmSnapshot>,
}

/// Load of a set of workers: (running, waiting).
fn load_of(loaded: &Loaded) -> (usize, usize) {
    let sum = |it: &mut dyn Iterator<Item = (usize, usize)>| {
        it.fold((0, 0), |(r, w), (a, b)| (r + a, w + b))
    };
    match loaded {
        Loaded::Embedding(b) => sum(&mut b.iter().map(|b| {
            let queued = b.queued();
            (b.load().saturating_sub(queued), queued)
        })),
        Loaded::Llm(w) => sum(&mut w.iter().map(|w| (w.running(), w.waiting()))),
        Loaded::Rerank(r) => sum(&mut r.iter().map(|r| (r.worker.running(), r.worker.waiting()))),
        Loaded::Audio(w) => sum(&mut w.iter().map(|w| (w.running(), w.waiting()))),
        Loaded::Image(r) => sum(&mut r.iter().map(|r| (r.worker.running(), r.worker.waiting()))),
    }
}

fn llm_snapshot(instance: &Instance) -> LlmSnapshot {
    let slots = instance.kv_slots.lock().expect("instance lock");
    let blocks = |tokens: usize| tokens.div_ceil(KV_BLOCK_SIZE);
    let num_blocks = slots.iter().map(|(_, context)| blocks(*context)).sum();
    let used_blocks = slots.iter().map(|(kv, _)| blocks(kv.tokens())).sum();
    let mut prefix = PrefixCacheStats::default();
    for s in instance
        .prefix_caches
        .lock()
        .expect("instance lock")
        .iter()
        .map(|c| c.stats())
    {
        prefix.lookups += s.lookups;
        prefix.hits += s.hits;
        prefix.reused_tokens += s.reused_tokens;
        prefix.prefilled_tokens += s.prefilled_tokens;
        prefix.entries += s.entries;
        prefix.bytes += s.bytes;
        prefix.budget_bytes += s.budget_bytes;
        prefix.evictions += s.evictions;
    }
    if prefix.lookups > 0 {
        prefix.hit_rate = prefix.hits as f64 / prefix.lookups as f64;
    }
    LlmSnapshot {
        block_size: KV_BLOCK_SIZE,
        num_blocks,
        used_blocks,
        prefix_cache: prefix,
    }
}

/// Passes `result` on, counting it as failed in `record` when it is an error.
pub(crate) fn finish<T>(
    record: Option<Arc<RequestRecord>>,
    result: crate::Result<T>,
) -> crate::Result<T> {
    match record {
        Some(record) => record.check(result),
        None => result,
    }
}

impl Runtime {
    /// Starts timing a request to model `uid` (`None` when there is no such model: nothing is
    /// counted).
    pub(crate) fn begin_request(&self, uid: &str) -> Option<Arc<RequestRecord>> {
        self.instance(uid).ok().map(|i| i.counters.begin())
    }

    /// Every launched model's numbers now, by uid.
    pub fn metrics_snapshot(&self) -> Vec<ModelSnapshot> {
        let instances: Vec<Arc<Instance>> = self
            .instances
            .lock()
            .expect("instances lock")
            .values()
            .cloned()
            .collect();
        instances
            .iter()
            .map(|i| {
                let (status, loaded) = {
                    let state = i.state.lock().expect("instance lock");
                    (state.status(), state.loaded.clone())
                };
                let (running, waiting) = loaded.as_deref().map(load_of).unwrap_or((0, 0));
                let c = &i.counters;
                let is_llm = i.family.model_type == crate::registry::ModelType::Llm;
                ModelSnapshot {
                    uid: i.uid.clone(),
                    name: i.family.name.clone(),
                    model_type: i.family.model_type.as_str().to_owned(),
                    status,
                    replicas: i.replicas,
                    request_limit: i.request_limit,
                    running,
                    waiting,
                    requests: c.requests.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    input_tokens: c.input_tokens.load(Ordering::Relaxed),
                    output_tokens: c.output_tokens.load(Ordering::Relaxed),
                    duration: c.duration.snapshot(),
                    ttft: c.ttft.snapshot(),
                    llm: (is_llm && loaded.is_some()).then(|| llm_snapshot(i)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.1, 1), (1.0, 2)]);
        assert_eq!(s.count, 3);
        assert!((s.sum - 5.55).abs() < 1e-9);
    }

    #[test]
    fn a_request_record_counts_once_and_fails_on_error() {
        let c = Arc::new(ModelCounters::default());
        let r = c.begin();
        let clone = r.clone();
        r.first_token();
        r.first_token();
        r.tokens(5, 2);
        let _ = r.check::<()>(Err(crate::Error::bad_request("x")));
        drop(r);
        assert_eq!(c.duration.snapshot().count, 0, "a clone still runs");
        drop(clone);
        assert_eq!(c.requests.load(Ordering::Relaxed), 1);
        assert_eq!(c.errors.load(Ordering::Relaxed), 1);
        assert_eq!(c.duration.snapshot().count, 1);
        assert_eq!(c.ttft.snapshot().count, 1);
        assert_eq!(c.input_tokens.load(Ordering::Relaxed), 5);
    }
}
