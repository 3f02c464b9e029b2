//! Text generation: a loaded causal LM with its tokenizer and chat template, the generation loop
//! with sampling and stop handling, and incremental detokenization for streaming.

pub mod constraint;
mod detokenizer;
mod engine;
mod gguf;
mod gguf_decoder;
mod kv_usage;
mod model;
pub mod prefix_cache;
pub mod reasoning;
mod safetensors;
mod sampler;
mod spm;
mod step_batcher;
mod template;
pub mod tools;

pub use constraint::Grammar;

/// Length of the longest end of `text` that is a proper start of `marker`: text to hold back
/// while a marker (a stop string, a tag) may still be forming.
pub(crate) fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&len| {
            len <= text.len()
                && text.is_char_boundary(text.len() - len)
                && marker.is_char_boundary(len)
                && text.ends_with(&marker[..len])
        })
        .unwrap_or(0)
}
pub use detokenizer::Detokenizer;
pub use engine::{
    FinishReason, GenerateOptions, Generated, LlmEngine, LlmParts, StepOutput, TokenLogprob,
};
pub use gguf::{find_gguf, load_gguf, QuantizedModel, GGUF_ARCHITECTURES};
pub use kv_usage::{KvHeld, KvUsage};
pub use model::{CausalLm, DecodeStep, KvState};
pub use prefix_cache::{PrefixCache, PrefixCacheStats};
pub use safetensors::{
    is_safetensors_model, load_safetensors, SafetensorsModel, SAFETENSORS_MODEL_TYPES,
};
pub use sampler::{argmax, log_softmax, Sampler, SamplingParams};
pub use step_batcher::{BatchStats, StepBatcher};
pub use template::{ChatTemplate, TemplateInput};
