//! Loading: one loader per weights format, each turning files into [`LlmParts`](super::LlmParts)
//! (the model, tokenizer, chat template and end tokens). GGUF files (`gguf.rs`, with
//! `gguf_tokenizer.rs` for the vocabularies llama.cpp's BPE pre-tokenizers split, `spm.rs` for
//! SentencePiece vocabularies, `split.rs` for GGUFs in parts, `gguf_header.rs` for the headers
//! candle's reader refuses: MXFP4 tensors) load into our decoder (`architectures/`), or candle's
//! quantized model of the family for a variant ours does not run; Hugging Face
//! safetensors folders (`safetensors/`) into the same decoder, through a GGUF view of the
//! checkpoint. Split parts and the view's segments are both read as one file by `joined.rs`.

mod gguf;
mod gguf_header;
mod gguf_tokenizer;
mod joined;
mod safetensors;
mod split;
mod spm;

pub use gguf::{find_gguf, load_gguf, QuantizedModel, GGUF_ARCHITECTURES};
pub(crate) use gguf_header::{has_tensor, mxfp4_bytes, mxfp4_tensor};
pub use safetensors::{is_safetensors_model, load_safetensors, SAFETENSORS_MODEL_TYPES};
