//! Generation: the loop of one sequence ([`LlmEngine`]: prompt, prefill, sample, decode, stop),
//! the sampler, the step batcher where the decode steps of several sequences meet, the prefix
//! cache of KV states, the KV fill that /metrics reports, and incremental detokenization for
//! streaming.

mod detokenizer;
mod engine;
mod kv_usage;
pub mod prefix_cache;
mod sampler;
mod step_batcher;
mod stop_strings;
mod stop_tokens;
#[cfg(test)]
mod test_tokenizer;

pub use detokenizer::Detokenizer;
pub use engine::{FinishReason, GenerateOptions, Generated, LlmEngine, StepOutput, TokenLogprob};
pub use kv_usage::{KvHeld, KvUsage};
pub use prefix_cache::{PrefixCache, PrefixCacheStats};
pub use sampler::{argmax, log_softmax, Sampler, SamplingParams};
pub use step_batcher::{BatchStats, StepBatcher};
