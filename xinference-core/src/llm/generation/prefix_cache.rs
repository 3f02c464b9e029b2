//! Prompt-prefix reuse: the KV states of sequences already computed, keyed by their tokens,
//! so that a request sharing a prefix with an earlier one (the same system prompt, the earlier
//! turns of a chat) feeds only the tokens after it. Held within a memory budget; the least
//! recently used states go first. One cache per replica, shared by its sequence slots.

use crate::llm::model::KvState;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// Default memory budget of a model's prefix cache (bytes of K/V tensors held).
pub const DEFAULT_PREFIX_CACHE_BYTES: usize = 256 << 20;

/// One stored state: the tokens it was computed from and its K/V.
struct Entry {
    tokens: Vec<u32>,
    state: KvState,
    /// The logits after the first `.0` tokens, when they were a whole prompt.
    prompt_end: Option<(usize, Arc<Vec<f32>>)>,
    bytes: usize,
    last_used: u64,
}

/// Counters and sizes of a prefix cache, as the model's description shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PrefixCacheStats {
    /// Prompts looked up.
    pub lookups: u64,
    /// Prompts that reused at least one cached token.
    pub hits: u64,
    /// `hits / lookups` (0 before the first lookup).
    pub hit_rate: f64,
    /// Prompt tokens taken from the cache instead of computed.
    pub reused_tokens: u64,
    /// Prompt tokens computed (fed through the model as prompt).
    pub prefilled_tokens: u64,
    /// States held.
    pub entries: usize,
    /// Bytes of K/V held.
    pub bytes: usize,
    /// The memory budget in bytes (0: the cache is off).
    pub budget_bytes: usize,
    /// States dropped to stay within the budget.
    pub evictions: u64,
}

struct Inner {
    entries: Vec<Entry>,
    clock: u64,
    stats: PrefixCacheStats,
}

/// A token-prefix-keyed store of KV states with LRU eviction under a byte budget.
pub struct PrefixCache {
    budget: usize,
    inner: Mutex<Inner>,
}

/// What a lookup found: a state whose first `len` positions are the prompt's first `len`.
pub struct PrefixHit {
    /// The stored state (may hold more positions than `len`).
    pub state: KvState,
    /// How many of the prompt's tokens it covers.
    pub len: usize,
    /// The logits after the whole prompt, when it was seen whole before (`len` is then the
    /// prompt's length): the request repeats exactly what the first one computed.
    pub logits: Option<Arc<Vec<f32>>>,
}

impl PrefixCache {
    /// An empty cache holding at most `budget` bytes (0 turns it off).
    pub fn new(budget: usize) -> Self {
        PrefixCache {
            budget,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                clock: 0,
                stats: PrefixCacheStats {
                    budget_bytes: budget,
                    ..Default::default()
                },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one step).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored state sharing the longest usable prefix with `prompt`, at most
    /// `prompt.len() - 1` tokens (the last prompt token is always fed, for its logits).
    /// Counts the lookup; `None` when nothing is shared.
    pub fn lookup(&self, prompt: &[u32]) -> Option<PrefixHit> {
        let mut inner = self.lock();
        inner.stats.lookups += 1;
        inner.clock += 1;
        let clock = inner.clock;
        // The same prompt seen whole before: its state and its logits.
        let whole = inner.entries.iter_mut().find(|e| {
            e.prompt_end
                .as_ref()
                .is_some_and(|(n, _)| *n == prompt.len())
                && e.tokens.starts_with(prompt)
                && e.state.usable_prefix(prompt.len()) == prompt.len()
        });
        if let Some(e) = whole {
            e.last_used = clock;
            let hit = PrefixHit {
                state: e.state.clone(),
                len: prompt.len(),
                logits: e.prompt_end.as_ref().map(|(_, l)| l.clone()),
            };
            inner.stats.hits += 1;
            inner.stats.hit_rate = inner.stats.hits as f64 / inner.stats.lookups as f64;
            return Some(hit);
        }
        let limit = prompt.len().saturating_sub(1);
        let best = inner
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let shared = common_prefix(&e.tokens, prompt).min(limit);
                let usable = e.state.usable_prefix(shared);
                // Any shared prefix: the decoder computes each product row on its own, so the
                // rest of a prompt after a cached prefix gives the bits the whole prompt gives.
                (usable > 0).then_some((i, usable))
            })
            .max_by_key(|&(_, len)| len);
        let hit = best.map(|(i, len)| {
            let entry = &mut inner.entries[i];
            entry.last_used = clock;
            PrefixHit {
                state: entry.state.clone(),
                len,
                logits: None,
            }
        });
        if hit.is_some() {
            inner.stats.hits += 1;
        }
        inner.stats.hit_rate = inner.stats.hits as f64 / inner.stats.lookups as f64;
        hit
    }

    /// Counts `reused` prompt tokens taken from the cache and `prefilled` computed.
    pub fn record_prompt(&self, reused: usize, prefilled: usize) {
        let mut inner = self.lock();
        inner.stats.reused_tokens += reused as u64;
        inner.stats.prefilled_tokens += prefilled as u64;
    }

    /// Stores `state`, computed from `tokens`. States whose tokens start `tokens` are
    /// replaced by it; a state that already covers `tokens` is only marked used. Then the
    /// least recently used states are dropped until the budget holds.
    pub fn insert(&self, tokens: &[u32], state: KvState) {
        self.insert_with_end(tokens, state, None);
    }

    /// [`PrefixCache::insert`], with the logits after the first `prompt_end.0` tokens (a
    /// whole prompt), so that the same prompt again starts from exactly them.
    pub fn insert_with_end(
        &self,
        tokens: &[u32],
        state: KvState,
        prompt_end: Option<(usize, Vec<f32>)>,
    ) {
        let prompt_end = prompt_end.map(|(n, l)| (n, Arc::new(l)));
        let bytes = state.bytes() + prompt_end.as_ref().map_or(0, |(_, l)| l.len() * 4);
        if self.budget == 0 || bytes > self.budget || tokens.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        if let Some(e) = inner
            .entries
            .iter_mut()
            .find(|e| e.tokens.len() >= tokens.len() && e.tokens.starts_with(tokens))
        {
            e.last_used = clock;
            if e.prompt_end.is_none() {
                e.prompt_end = prompt_end;
            }
            return;
        }
        inner
            .entries
            .retain(|e| !(e.tokens.len() < tokens.len() && tokens.starts_with(&e.tokens)));
        inner.entries.push(Entry {
            tokens: tokens.to_vec(),
            state,
            prompt_end,
            bytes,
            last_used: clock,
        });
        let mut held: usize = inner.entries.iter().map(|e| e.bytes).sum();
        while held > self.budget {
            let Some((oldest, _)) = inner
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
            else {
                break;
            };
            held -= inner.entries.swap_remove(oldest).bytes;
            inner.stats.evictions += 1;
        }
        inner.stats.entries = inner.entries.len();
        inner.stats.bytes = held;
    }

    /// The counters and sizes now.
    pub fn stats(&self) -> PrefixCacheStats {
        self.lock().stats
    }

    /// Drops every state (the counters stay).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.stats.entries = 0;
        inner.stats.bytes = 0;
    }
}

/// Length of the common start of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::model::LayerKv;

    /// A one-layer state of `len` positions (`window`: a sliding-window layer keeping that many).
    fn state(len: usize, window: Option<usize>) -> KvState {
        let kept = window.map_or(len, |w| w.min(len));
        let mut layer = LayerKv::new(4);
        layer.append(&vec![0.0; kept * 4], &vec![0.0; kept * 4]);
        KvState {
            layers: vec![Some(layer)],
            len,
        }
    }

    #[test]
    fn longest_prefix_wins_and_the_last_prompt_token_is_always_fed() {
        let cache = PrefixCache::new(1 << 20);
        cache.insert(&[1, 2, 3], state(3, None));
        cache.insert(&[1, 2, 3, 4, 5, 6], state(6, None));
        // [1, 2, 3] was a prefix of the second: replaced by it.
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(cache.lookup(&[1, 2, 3, 4, 9]).map(|h| h.len), Some(4));
        assert_eq!(cache.lookup(&[1, 2, 3]).map(|h| h.len), Some(2));
        assert!(cache.lookup(&[7, 1, 2]).is_none());
        // A shared start of any length is reused.
        assert_eq!(
            cache.lookup(&[1, 2, 3, 4, 5, 6, 7, 8]).map(|h| h.len),
            Some(6)
        );
        let s = cache.stats();
        assert_eq!((s.lookups, s.hits), (4, 3));
        // f16 keys and values, buffers grown by whole chunks of positions.
        assert_eq!(s.bytes, 2 * crate::llm::kv_cache::CHUNK * 4 * 2);
    }

    #[test]
    fn a_prompt_seen_whole_comes_back_with_its_logits() {
        let cache = PrefixCache::new(1 << 20);
        cache.insert_with_end(&[1, 2, 3, 4, 5], state(5, None), Some((3, vec![0.5, 1.5])));
        let hit = cache.lookup(&[1, 2, 3]).unwrap();
        assert_eq!(hit.len, 3);
        assert_eq!(hit.logits.as_deref(), Some(&vec![0.5, 1.5]));
        // Another prompt of the same start gets the state only.
        let hit = cache.lookup(&[1, 2, 3, 4]).unwrap();
        assert_eq!((hit.len, hit.logits.is_none()), (3, true));
    }

    #[test]
    fn the_least_recently_used_state_goes_first() {
        let one = state(4, None).bytes();
        let cache = PrefixCache::new(2 * one);
        cache.insert(&[1, 1, 1, 1], state(4, None));
        cache.insert(&[2, 2, 2, 2], state(4, None));
        assert!(cache.lookup(&[1, 1, 1, 1, 5]).is_some()); // [1..] is now the newest
        cache.insert(&[3, 3, 3, 3], state(4, None));
        let s = cache.stats();
        assert_eq!((s.entries, s.evictions, s.bytes), (2, 1, 2 * one));
        assert!(cache.lookup(&[2, 2, 2, 2, 5]).is_none());
        assert!(cache.lookup(&[1, 1, 1, 1, 5]).is_some());
        // Nothing is stored past a zero budget.
        let off = PrefixCache::new(0);
        off.insert(&[1, 2], state(2, None));
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn a_sliding_window_state_serves_only_prefixes_it_still_holds() {
        let cache = PrefixCache::new(1 << 20);
        // 10 positions seen, the layer keeps the last 4 (positions 6..10).
        cache.insert(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], state(10, Some(4)));
        // A query at position 10 needs keys 6..10: held.
        assert_eq!(
            cache
                .lookup(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
                .map(|h| h.len),
            Some(10)
        );
        // Cut at 8: keys 4..8 are needed, 4 and 5 are gone.
        assert!(cache.lookup(&[0, 1, 2, 3, 4, 5, 6, 7, 99]).is_none());
    }
}
