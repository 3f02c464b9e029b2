//! The one trait every causal-LM architecture implements, so that the engine never matches on
//! families: GGUF (quantized) and safetensors models alike.

use crate::Result;

/// A causal language model that keeps the KV cache of one sequence.
pub trait CausalLm: Send {
    /// Logits of the last position after feeding `tokens` at `position`. Position 0 starts a
    /// new sequence and discards the cache.
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>>;

    /// A copy that shares the weights and has its own empty cache, to serve another sequence
    /// at the same time; `None` when the family cannot share its weights.
    fn fork(&self) -> Option<Box<dyn CausalLm>>;
}
