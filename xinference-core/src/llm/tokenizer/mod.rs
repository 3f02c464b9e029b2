//! The tokenizer of a loaded LLM: a `tokenizers` crate tokenizer (a model folder's
//! `tokenizer.json`, a GGUF's byte-level BPE), or our own SentencePiece tokenizer for GGUF
//! SentencePiece vocabularies ([`spm`]), which is llama.cpp's algorithm and a fraction of the
//! memory. Everything past loading (the engine, detokenizer, grammars, reasoning and tool
//! markup) sees only [`LlmTokenizer`].

pub mod spm;

use crate::{Error, Result};
use llguidance::toktrie::TokTrie;
use spm::SpmTokenizer;
use tokenizers::Tokenizer;

/// A loaded LLM's tokenizer.
pub enum LlmTokenizer {
    /// A `tokenizers` crate tokenizer.
    Hf(Box<Tokenizer>),
    /// A GGUF SentencePiece vocabulary.
    Spm(Box<SpmTokenizer>),
}

impl From<Tokenizer> for LlmTokenizer {
    fn from(tokenizer: Tokenizer) -> Self {
        LlmTokenizer::Hf(Box::new(tokenizer))
    }
}

impl LlmTokenizer {
    /// The ids of `text`, special tokens written in it included; with `add_special`, what the
    /// tokenizer adds around a text (a `tokenizer.json` post-processor's BOS; nothing for a
    /// GGUF SentencePiece vocabulary).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        match self {
            LlmTokenizer::Hf(t) => t
                .encode(text, add_special)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::bad_request(format!("cannot tokenize the text: {e}"))),
            LlmTokenizer::Spm(t) => Ok(t.encode(text)),
        }
    }

    /// The text of `ids`, without the special tokens when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        match self {
            LlmTokenizer::Hf(t) => t
                .decode(ids, skip_special)
                .map_err(|e| Error::internal(format!("cannot decode tokens: {e}"))),
            LlmTokenizer::Spm(t) => Ok(t.decode(ids, skip_special)),
        }
    }

    /// The id of the token written `token` in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            LlmTokenizer::Hf(t) => t.token_to_id(token),
            LlmTokenizer::Spm(t) => t.id_of(token),
        }
    }

    /// The vocabulary's text of token `id`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match self {
            LlmTokenizer::Hf(t) => t.id_to_token(id),
            LlmTokenizer::Spm(t) => ((id as usize) < t.vocab_size()).then(|| t.piece(id).into()),
        }
    }

    /// Number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        match self {
            LlmTokenizer::Hf(t) => t.get_vocab_size(true),
            LlmTokenizer::Spm(t) => t.vocab_size(),
        }
    }

    /// The added tokens (matched whole in text: special ones, which decoding can skip, and
    /// user-defined ones, which are text), as `(id, special)`.
    pub fn added_tokens(&self) -> Vec<(u32, bool)> {
        match self {
            LlmTokenizer::Hf(t) => t
                .get_added_tokens_decoder()
                .into_iter()
                .map(|(id, token)| (id, token.special))
                .collect(),
            LlmTokenizer::Spm(t) => t
                .added_ids()
                .iter()
                .map(|&id| (id, t.is_special(id)))
                .collect(),
        }
    }

    /// Every token's bytes as llguidance reads a vocabulary (special tokens behind its
    /// special-token marker); ids with no text are empty.
    pub fn token_bytes(&self) -> Result<Vec<Vec<u8>>> {
        match self {
            LlmTokenizer::Hf(t) => {
                let json: serde_json::Value =
                    serde_json::from_str(&t.to_string(false).map_err(|e| {
                        Error::internal(format!("cannot serialise the tokenizer: {e}"))
                    })?)
                    .map_err(|e| Error::internal(format!("cannot read the tokenizer: {e}")))?;
                llguidance::token_bytes_from_tokenizer_json(&json).map_err(|e| {
                    Error::internal(format!("cannot map the vocabulary to bytes: {e}"))
                })
            }
            LlmTokenizer::Spm(t) => Ok(t.token_bytes(TokTrie::SPECIAL_TOKEN_MARKER)),
        }
    }
}
