//! Incremental detokenization: text is released only once it is whole, so a multi-byte UTF-8
//! character split across tokens is never emitted half (candle's `TokenOutputStream` idea).

use crate::{Error, Result};
use tokenizers::Tokenizer;

/// Turns a growing list of token ids into text deltas.
pub struct Detokenizer {
    tokens: Vec<u32>,
    /// Bytes of text already released, measured on the decode of `tokens[prefix_start..]`.
    prefix_start: usize,
    released: usize,
}

impl Detokenizer {
    /// An empty stream.
    pub fn new() -> Self {
        Detokenizer {
            tokens: Vec::new(),
            prefix_start: 0,
            released: 0,
        }
    }

    /// Adds a token and returns the newly complete text, if any.
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> Result<String> {
        self.tokens.push(token);
        let text = decode(tokenizer, &self.tokens[self.prefix_start..])?;
        if text.len() > self.released && !text.ends_with('\u{FFFD}') {
            let delta = text
                .get(self.released..)
                .map(str::to_owned)
                .unwrap_or_default();
            self.released = text.len();
            // Re-anchor now and then so each step decodes a short window, not everything.
            if self.tokens.len() - self.prefix_start > 64 {
                self.prefix_start = self.tokens.len() - 8;
                self.released = decode(tokenizer, &self.tokens[self.prefix_start..])?.len();
            }
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }
}

impl Default for Detokenizer {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes ids to text, skipping special tokens.
pub fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String> {
    tokenizer
        .decode(ids, true)
        .map_err(|e| Error::internal(format!("cannot decode tokens: {e}")))
}
