//! How full each LLM sequence slot's KV cache is, for the metrics (`vllm:kv_cache_usage_perc`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many tokens an LLM slot's KV cache holds now (0 between requests). The engine updates
/// it as it feeds the prompt and each generated token.
#[derive(Debug, Default, Clone)]
pub struct KvUsage(Arc<AtomicUsize>);

impl KvUsage {
    /// Tokens held now.
    pub fn tokens(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Holds `tokens` until the returned guard drops (then 0); update it with [`KvHeld::set`].
    pub fn hold(&self, tokens: usize) -> KvHeld {
        self.0.store(tokens, Ordering::Relaxed);
        KvHeld(self.0.clone())
    }
}

/// A sequence's tokens in its slot's KV cache, reset to 0 when dropped.
#[derive(Debug)]
pub struct KvHeld(Arc<AtomicUsize>);

impl KvHeld {
    /// Now `tokens` are held.
    pub fn set(&self, tokens: usize) {
        self.0.store(tokens, Ordering::Relaxed);
    }
}

impl Drop for KvHeld {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_usage_goes_back_to_zero() {
        let kv = KvUsage::default();
        {
            let held = kv.hold(10);
            held.set(12);
            assert_eq!(kv.tokens(), 12);
        }
        assert_eq!(kv.tokens(), 0);
    }
}
