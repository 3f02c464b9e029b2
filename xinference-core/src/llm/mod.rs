//! Text generation, in parts that depend one way (generation -> loading -> architectures, and
//! generation -> output; everything -> `model` and `tokenizer`, the contracts between them):
//!
//! - `model`: the [`CausalLm`] trait every architecture implements, its KV cache hand-over
//!   types, and [`LlmParts`], what a loader hands to the engine; `kv_cache`: the f16 per-layer
//!   keys and values those types hold ([`LayerKv`]).
//! - `architectures/`: our GGUF decoder, the shared layers and forward with one file per
//!   architecture family for its configuration and weights.
//! - `loading/`: one loader per weights format (GGUF, safetensors) that reads the tokenizer,
//!   chat template and end tokens and picks the architecture.
//! - `generation/`: the generation loop ([`LlmEngine`]), sampling, continuous batching of decode
//!   steps, the prefix cache and incremental detokenization.
//! - `output/`: what shapes the text: the chat template, reasoning tags, tool-call formats and
//!   grammars for constrained decoding.
//! - `tokenizer/`: [`LlmTokenizer`], the tokenizer every part past loading sees (a
//!   `tokenizers` crate tokenizer, or our own SentencePiece one for GGUF vocabularies).

mod architectures;
mod generation;
mod kv_cache;
mod loading;
mod model;
mod output;
mod tokenizer;

pub use generation::prefix_cache;
pub use output::{constraint, reasoning, tools};

pub use constraint::Grammar;
pub use generation::{
    argmax, log_softmax, BatchStats, Detokenizer, FinishReason, GenerateOptions, Generated,
    LlmEngine, PrefixCache, PrefixCacheStats, Sampler, SamplingParams, StepBatcher, StepOutput,
    TokenLogprob,
};
pub use generation::{KvHeld, KvUsage};
pub use loading::{
    find_gguf, is_safetensors_model, load_gguf, load_safetensors, QuantizedModel,
    GGUF_ARCHITECTURES, SAFETENSORS_MODEL_TYPES,
};
pub use model::{CausalLm, DecodeStep, KvState, LayerKv, LlmParts};
pub use output::{ChatTemplate, TemplateInput};
pub use tokenizer::LlmTokenizer;
