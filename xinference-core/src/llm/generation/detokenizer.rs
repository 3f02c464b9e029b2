//! Incremental detokenization: text is released only once it is whole, so a multi-byte UTF-8
//! character split across tokens is never emitted half (candle's `TokenOutputStream` idea).

use crate::llm::tokenizer::LlmTokenizer;
use crate::Result;
use std::collections::HashSet;

/// Turns a growing list of token ids into text deltas.
pub struct Detokenizer {
    tokens: Vec<u32>,
    /// Bytes of text already released, measured on the decode of `tokens[prefix_start..]`.
    prefix_start: usize,
    released: usize,
    /// With kept special tokens: the special tokens still dropped (the others are text).
    dropped: Option<HashSet<u32>>,
}

impl Detokenizer {
    /// An empty stream; special tokens are dropped.
    pub fn new() -> Self {
        Detokenizer {
            tokens: Vec::new(),
            prefix_start: 0,
            released: 0,
            dropped: None,
        }
    }

    /// An empty stream that decodes the special tokens `kept` as text (the markup an answer
    /// parser reads, as llama.cpp's server keeps a chat format's preserved tokens: Gemma 4's
    /// `<|channel>` and `<channel|>` around its reasoning); the other special tokens are
    /// dropped.
    pub fn keeping(tokenizer: &LlmTokenizer, kept: &[u32]) -> Self {
        let dropped = (!kept.is_empty()).then(|| {
            tokenizer
                .added_tokens()
                .into_iter()
                .filter(|&(id, special)| special && !kept.contains(&id))
                .map(|(id, _)| id)
                .collect()
        });
        Detokenizer {
            dropped,
            ..Self::new()
        }
    }

    /// The text of `ids`: special tokens dropped, but those kept.
    fn text(&self, tokenizer: &LlmTokenizer, ids: &[u32]) -> Result<String> {
        match &self.dropped {
            None => decode(tokenizer, ids),
            Some(dropped) => {
                let ids: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|t| !dropped.contains(t))
                    .collect();
                tokenizer.decode(&ids, false)
            }
        }
    }

    /// Adds a token and returns the newly complete text, if any.
    pub fn push(&mut self, tokenizer: &LlmTokenizer, token: u32) -> Result<String> {
        self.tokens.push(token);
        let text = self.text(tokenizer, &self.tokens[self.prefix_start..])?;
        if text.len() > self.released && !text.ends_with('\u{FFFD}') {
            let delta = text
                .get(self.released..)
                .map(str::to_owned)
                .unwrap_or_default();
            self.released = text.len();
            // Re-anchor now and then so each step decodes a short window, not everything.
            if self.tokens.len() - self.prefix_start > 64 {
                self.prefix_start = self.tokens.len() - 8;
                self.released = self
                    .text(tokenizer, &self.tokens[self.prefix_start..])?
                    .len();
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
pub fn decode(tokenizer: &LlmTokenizer, ids: &[u32]) -> Result<String> {
    tokenizer.decode(ids, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::generation::test_tokenizer::word_tokenizer;

    /// A special token is dropped unless kept; the other special tokens stay dropped.
    #[test]
    fn kept_special_tokens_are_text() {
        let tokenizer = LlmTokenizer::from(word_tokenizer(
            &["a", "b", "<|channel>", "<eos>"],
            &["<|channel>", "<eos>"],
            &[],
        ));
        let run = |mut d: Detokenizer| -> String {
            [0, 2, 1, 3]
                .iter()
                .map(|&t| d.push(&tokenizer, t).unwrap())
                .collect()
        };
        let dropped = run(Detokenizer::new());
        let kept = run(Detokenizer::keeping(&tokenizer, &[2]));
        assert!(
            !dropped.contains("<|channel>") && !dropped.contains("<eos>"),
            "{dropped}"
        );
        assert!(
            kept.contains("<|channel>") && !kept.contains("<eos>"),
            "{kept}"
        );
        assert_eq!(
            kept.replace("<|channel>", "")
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        // Keeping nothing is the plain decode.
        assert_eq!(run(Detokenizer::keeping(&tokenizer, &[])), dropped);
    }

    /// Gemma 4 writes a tool call as `<|tool_call>call:NAME{key:<|"|>value<|"|>}<tool_call|>`,
    /// its marks special (control) tokens: kept as the call format says
    /// ([`ToolFormat::special_markup`]), they reach the tool parser, which reads the call;
    /// dropped (plain decoding), no call can be read.
    #[test]
    fn gemma4_tool_call_marks_kept_reach_the_tool_parser() {
        use crate::llm::reasoning::special_tokens_of;
        use crate::llm::tools::{parse_tool_output, ToolFormat, ToolSet};
        use tokenizers::decoders::fuse::Fuse;
        let marks = ["<|tool_call>", "<tool_call|>", "<|\"|>", "<eos>"];
        let mut tokenizer = word_tokenizer(&["call:get_weather{city:", "Paris", "}"], &marks, &[]);
        tokenizer.with_decoder(Some(Fuse::new()));
        let tokenizer = LlmTokenizer::from(tokenizer);
        let id = |t: &str| tokenizer.token_to_id(t).unwrap();
        let answer = [
            id("<|tool_call>"),
            0,
            id("<|\"|>"),
            1,
            id("<|\"|>"),
            2,
            id("<tool_call|>"),
            id("<eos>"),
        ];
        let kept = special_tokens_of(&tokenizer, ToolFormat::Gemma4.special_markup());
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert!(!kept.contains(&id("<eos>")));
        let run = |mut d: Detokenizer| -> String {
            answer
                .iter()
                .map(|&t| d.push(&tokenizer, t).unwrap())
                .collect()
        };
        let text = run(Detokenizer::keeping(&tokenizer, &kept));
        assert_eq!(
            text,
            "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|>"
        );
        let tools = ToolSet::from_openai(&[serde_json::json!(
            {"type": "function", "function": {"name": "get_weather"}}
        )])
        .unwrap();
        let parsed = parse_tool_output(ToolFormat::Gemma4, &text, &tools);
        assert_eq!(parsed.calls.len(), 1, "{text}");
        assert_eq!(parsed.calls[0].name, "get_weather");
        assert_eq!(
            parsed.calls[0].arguments,
            serde_json::json!({"city": "Paris"})
        );
        let plain = run(Detokenizer::new());
        assert!(parse_tool_output(ToolFormat::Gemma4, &plain, &tools)
            .calls
            .is_empty());
    }
}
