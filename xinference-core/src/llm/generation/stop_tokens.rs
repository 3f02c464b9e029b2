//! The registry's stop token ids checked against the loaded vocabulary.
//!
//! A registry family lists the stop ids of its official tokenizer (Gemma 4's `<turn|>` is 106,
//! Qwen's `<|im_end|>` 151645). A model file with another vocabulary (a fine-tune with added
//! tokens, a small test model) can hold an ordinary piece at that id: stopping on it would cut
//! answers at random text, and a grammar that needs that piece could never be followed (every
//! token of the mask would be forbidden). Stop tokens are always added tokens of the tokenizer
//! (GGUF control and user-defined tokens, a `tokenizer.json`'s `added_tokens`), so a spec id
//! that is not one is left out; the file's own end tokens and the spec's stop strings still
//! stop generation.

use crate::llm::tokenizer::LlmTokenizer;

/// The ids of `spec_ids` that name an added (special or user-defined) token of `tokenizer`.
pub(super) fn spec_stop_ids_of_vocabulary(tokenizer: &LlmTokenizer, spec_ids: &[u32]) -> Vec<u32> {
    let added = tokenizer.added_tokens();
    spec_ids
        .iter()
        .copied()
        .filter(|id| added.iter().any(|(added_id, _)| added_id == id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::generation::test_tokenizer::word_tokenizer;

    /// Ids of added tokens are kept; an ordinary piece's id and an id past the vocabulary are not.
    #[test]
    fn only_added_tokens_stop() {
        let tokenizer = LlmTokenizer::from(word_tokenizer(
            &["a", "_", "<turn|>", "<|tool>"],
            &["<turn|>"],
            &["<|tool>"],
        ));
        assert_eq!(
            spec_stop_ids_of_vocabulary(&tokenizer, &[1, 2, 3, 99]),
            vec![2, 3]
        );
    }
}
