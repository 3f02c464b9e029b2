//! A word-level tokenizer for unit tests: each word one id, some of them added tokens.

use tokenizers::models::wordlevel::WordLevel;
use tokenizers::{AddedToken, Tokenizer};

/// A tokenizer whose vocabulary is `words` (id = position; `[UNK]` is appended as the unknown
/// token), with `special` added as special tokens and `text` as added tokens that decode as text.
pub(super) fn word_tokenizer(words: &[&str], special: &[&str], text: &[&str]) -> Tokenizer {
    let vocab = words
        .iter()
        .chain(&["[UNK]"])
        .enumerate()
        .map(|(i, w)| ((*w).to_owned(), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(model);
    let _ = tokenizer.add_special_tokens(special.iter().map(|s| AddedToken::from(*s, true)));
    let _ = tokenizer.add_tokens(text.iter().map(|s| AddedToken::from(*s, false)));
    tokenizer
}
