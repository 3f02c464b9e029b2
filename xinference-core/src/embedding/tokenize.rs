//! Turning embedding inputs into token ids, with the request's truncation rules. Shared by
//! every request handler of a model (`Arc`), and run off the compute thread.

use super::EmbedInput;
use crate::{Error, Result};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationDirection};

/// How an input longer than allowed is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Cap on tokens per input (special tokens included), below the model's own length.
    /// Xinference's `truncate_prompt_tokens`.
    pub max_tokens: Option<usize>,
    /// Cut inputs longer than the cap (the default); when false, such an input is a 400.
    pub truncate: bool,
}

impl Default for Truncation {
    fn default() -> Self {
        Truncation {
            max_tokens: None,
            truncate: true,
        }
    }
}

/// A model's tokenizer and its length limit.
pub struct EmbedTokenizer {
    tokenizer: Tokenizer,
    max_len: usize,
    vocab: u32,
    /// Special tokens the post-processor adds to one sequence ([CLS] and [SEP] for BERT).
    specials: usize,
}

impl EmbedTokenizer {
    /// Reads `dir/tokenizer.json`; inputs are capped at `max_len` tokens.
    pub fn load(dir: &Path, max_len: usize) -> Result<Self> {
        let mut tokenizer =
            crate::tokenizer_file::load(dir.join("tokenizer.json")).map_err(|e| {
                Error::bad_request(format!("cannot read {}/tokenizer.json: {e}", dir.display()))
            })?;
        // Truncation is decided per request below; padding happens in the batch.
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::internal(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);
        let specials = tokenizer
            .get_post_processor()
            .map(|p| tokenizers::PostProcessor::added_tokens(p, false))
            .unwrap_or(0);
        let vocab = tokenizer.get_vocab_size(true) as u32;
        Ok(EmbedTokenizer {
            tokenizer,
            max_len: max_len.max(specials + 1),
            vocab,
            specials,
        })
    }

    /// The longest input, in tokens, the model reads.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids of one input, special tokens included, truncated as `truncation` says.
    /// Token-id inputs are taken as they are (no special tokens are added) and cut the same way.
    pub fn encode(&self, input: &EmbedInput, truncation: Truncation) -> Result<Vec<u32>> {
        let limit = truncation
            .max_tokens
            .map_or(self.max_len, |n| n.min(self.max_len));
        let too_long = |len: usize| {
            Error::bad_request(format!(
                "input has {len} tokens, more than the {limit} allowed, and truncation is off \
                 (send \"truncate\": true, or a shorter input)"
            ))
        };
        let ids = match input {
            EmbedInput::Text(text) => {
                let mut enc = self
                    .tokenizer
                    .encode_fast(text.as_str(), false)
                    .map_err(|e| Error::bad_request(format!("cannot tokenize input: {e}")))?;
                let room = limit.saturating_sub(self.specials).max(1);
                if enc.len() > room {
                    if !truncation.truncate {
                        return Err(too_long(enc.len() + self.specials));
                    }
                    enc.truncate(room, 0, TruncationDirection::Right);
                    drop(enc.take_overflowing()); // The cut-off rest is not embedded.
                }
                let enc = self
                    .tokenizer
                    .post_process(enc, None, true)
                    .map_err(|e| Error::bad_request(format!("cannot tokenize input: {e}")))?;
                enc.get_ids().to_vec()
            }
            EmbedInput::Tokens(ids) => {
                if let Some(bad) = ids.iter().find(|&&id| id >= self.vocab) {
                    return Err(Error::bad_request(format!(
                        "token id {bad} is outside the vocabulary (size {})",
                        self.vocab
                    )));
                }
                if ids.len() > limit && !truncation.truncate {
                    return Err(too_long(ids.len()));
                }
                ids.iter().copied().take(limit).collect()
            }
        };
        if ids.is_empty() {
            return Err(Error::bad_request("input has no tokens"));
        }
        Ok(ids)
    }
}
