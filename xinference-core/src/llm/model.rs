//! The one trait every causal-LM architecture implements, so that the engine never matches on
//! families: GGUF (quantized) and safetensors models alike.

pub use super::kv_cache::LayerKv;
use super::tokenizer::LlmTokenizer;
use crate::Result;

/// A causal language model that keeps the KV cache of one sequence.
pub trait CausalLm: Send {
    /// Logits of the last position after feeding `tokens` at `position`. Position 0 starts a
    /// new sequence and discards the cache.
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>>;

    /// [`CausalLm::forward`] for `tokens`, a part (after a cached prefix, or a chunk) of a
    /// prompt of `prompt_len` tokens: computed as the whole prompt's rows would be, so that
    /// feeding a prompt in parts gives what feeding it whole gives.
    fn forward_prompt(
        &mut self,
        tokens: &[u32],
        position: usize,
        _prompt_len: usize,
    ) -> Result<Vec<f32>> {
        self.forward(tokens, position)
    }

    /// A copy that shares the weights and has its own empty cache, to serve another sequence
    /// at the same time; `None` when the family cannot share its weights.
    fn fork(&self) -> Option<Box<dyn CausalLm>>;

    /// The KV cache now held, after `len` positions were fed, to be stored and given back by
    /// [`CausalLm::load_kv`]; `None` when the family cannot hand out its cache.
    fn kv_state(&self, _len: usize) -> Option<KvState> {
        None
    }

    /// [`CausalLm::kv_state`], leaving the model without a cache until [`CausalLm::load_kv`]
    /// gives one back (a batched step extends the state in place instead of copying a cache
    /// the model still shares).
    fn take_kv(&mut self, len: usize) -> Option<KvState> {
        self.kv_state(len)
    }

    /// Makes the cache the first `len` positions of `state` (one [`KvState::usable_prefix`]
    /// allows), so that the next forward continues at position `len`. `false` when the family
    /// cannot take a cache.
    fn load_kv(&mut self, _state: &KvState, _len: usize) -> Result<bool> {
        Ok(false)
    }

    /// One step of each of several sequences in one pass over the weights, each with its own
    /// cache (`steps[i].kv`, extended by the step's tokens: one for a decode step, several for
    /// a prompt chunk): the last-token logits of each, exactly as the sequence's own
    /// [`CausalLm::forward`] of those tokens would give them. `None` when the
    /// family cannot batch (callers then step each sequence on its own).
    fn decode_batch(&self, _steps: &mut [DecodeStep]) -> Result<Option<Vec<Vec<f32>>>> {
        Ok(None)
    }

    /// Whether [`CausalLm::decode_batch`] and the cache hand-over are supported.
    fn can_batch(&self) -> bool {
        false
    }

    /// With `whole`, sliding-window layers keep every position instead of only their window
    /// (llama.cpp's `--swa-full`), so that a cached state serves a shared prompt prefix longer
    /// than the window: more memory (each sliding layer holds as many positions as a global
    /// one), the same logits. Forks made afterwards inherit it. No effect for families
    /// without sliding windows.
    fn keep_whole_windows(&mut self, _whole: bool) {}
}

/// One sequence's share of a [`CausalLm::decode_batch`]: the tokens it feeds (one for a decode
/// step, several for a chunk of its prompt) and its cache (`kv.len` is the first token's
/// position).
pub struct DecodeStep {
    /// The tokens fed (at least one); the step's logits are those of the last.
    pub tokens: Vec<u32>,
    /// The sequence's cache, extended by the step.
    pub kv: KvState,
}

/// A sequence's KV cache: per layer the keys and values it still holds (f16, see
/// [`LayerKv`]), the last ones of `len` positions. A sliding-window layer may hold only its last
/// positions (`held < len` once the sequence is longer than the window). Cloning shares the
/// buffers (copy-on-write).
#[derive(Clone)]
pub struct KvState {
    /// Keys and values per layer (`None`: the layer holds nothing yet).
    pub layers: Vec<Option<LayerKv>>,
    /// Positions fed.
    pub len: usize,
}

impl KvState {
    /// Bytes the layers' buffers hold.
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().map(LayerKv::bytes).sum()
    }

    /// The position of the first key layer `i` holds (`len - held`).
    pub fn first_held(&self, i: usize) -> usize {
        match &self.layers[i] {
            Some(layer) => self.len - layer.held().min(self.len),
            None => self.len,
        }
    }

    /// `len` when the state can continue a sequence after its first `len` positions (a
    /// sliding-window layer that dropped keys, keeping at least its last `window`, still holds
    /// every key a query at `len` sees; a recurrent layer only at exactly the positions it
    /// was computed for), else 0. A layer without a cache of its own (`None`: Gemma 4's blocks
    /// that read an earlier block's keys) constrains nothing here; each decoder's
    /// [`CausalLm::load_kv`] refuses a `None` where it needs keys.
    pub fn usable_prefix(&self, len: usize) -> usize {
        let len = len.min(self.len);
        let ok = (0..self.layers.len()).all(|i| {
            if self.layers[i].is_none() {
                return true;
            }
            // A recurrent layer's state continues only where it was computed.
            if let Some(layer) = self.layers[i].as_ref().filter(|l| l.is_recurrent()) {
                return layer.held() == len;
            }
            let first = self.first_held(i);
            let kept = self.len - first;
            // Untruncated layers hold every position; a truncated one kept its window.
            first == 0 || (len + 1).saturating_sub(kept) >= first
        });
        if ok {
            len
        } else {
            0
        }
    }
}

/// What an architecture loader hands to [`LlmEngine::new`](crate::llm::LlmEngine::new).
pub struct LlmParts {
    /// The weights.
    pub model: Box<dyn CausalLm>,
    /// The family name (`llama`, `qwen2`, ...).
    pub architecture: String,
    /// The tokenizer.
    pub tokenizer: LlmTokenizer,
    /// The model's own chat template, when it has one.
    pub chat_template: Option<String>,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// End-of-generation token ids.
    pub eos_token_ids: Vec<u32>,
    /// Prepend BOS to prompts.
    pub add_bos: bool,
    /// Context length in tokens.
    pub context_length: usize,
    /// Tokens never generated: the model's own `suppress_tokens` (GGUF
    /// `tokenizer.ggml.suppress_tokens`, `generation_config.json`), which llama.cpp's sampler
    /// and transformers' `generate` leave out (Gemma 4 unified's media placeholders).
    pub suppressed_token_ids: Vec<u32>,
}
