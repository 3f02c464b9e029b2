//! Loading: one loader per weights format, each turning files into [`LlmParts`](super::LlmParts)
//! (the model, tokenizer, chat template and end tokens). GGUF files (`gguf.rs`, with `spm.rs` for
//! SentencePiece vocabularies, `split.rs` for GGUFs in parts,
//! `gguf_header.rs` for the headers candle's reader refuses: MXFP4 tensors) load into our decoder (`architectures/`) or candle's quantized
//! model of the family; Hugging Face safetensors folders (`safetensors/`) into the same decoder, through a GGUF view of
//! the checkpoint.

mod gguf;
mod gguf_header;
mod gguf_tokenizer;
mod safetensors;
mod split;
mod spm;

pub use gguf::{find_gguf, load_gguf, QuantizedModel, GGUF_ARCHITECTURES};
pub(crate) use gguf_header::{has_tensor, mxfp4_bytes, mxfp4_tensor};
pub use safetensors::{is_safetensors_model, load_safetensors, SAFETENSORS_MODEL_TYPES};
