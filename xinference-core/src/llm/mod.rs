//! Text generation: a loaded causal LM with its tokenizer and chat template, the generation loop
//! with sampling and stop handling, and incremental detokenization for streaming.

pub mod constraint;
mod detokenizer;
mod engine;
mod gguf;
mod model;
pub mod reasoning;
mod safetensors;
mod sampler;
mod spm;
mod template;
pub mod tools;

pub use constraint::Grammar;
pub use detokenizer::Detokenizer;
pub use engine::{
    FinishReason, GenerateOptions, Generated, LlmEngine, LlmParts, StepOutput, TokenLogprob,
};
pub use gguf::{find_gguf, load_gguf, QuantizedModel, GGUF_ARCHITECTURES};
pub use model::CausalLm;
pub use safetensors::{
    is_safetensors_model, load_safetensors, SafetensorsModel, SAFETENSORS_MODEL_TYPES,
};
pub use sampler::{argmax, log_softmax, Sampler, SamplingParams};
pub use template::{ChatTemplate, TemplateInput};
