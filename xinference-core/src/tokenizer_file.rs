//! Loading a `tokenizer.json`. The tokenizers crate accepts some files it then panics on when
//! encoding (a post-processor whose template names a special token the file does not define:
//! "no entry found for key", found by fuzzing), so a loaded tokenizer is probed once, a single
//! text and a pair, and one that panics is refused at load time with a clear error instead of
//! failing every request later.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tokenizers::Tokenizer;

/// `Tokenizer::from_file` plus the probe; errors as the tokenizers crate's, so callers keep
/// their messages.
pub fn load(path: impl AsRef<Path>) -> tokenizers::Result<Tokenizer> {
    checked(Tokenizer::from_file(path)?)
}

/// `Tokenizer::from_bytes` plus the probe.
pub fn from_bytes(bytes: &[u8]) -> tokenizers::Result<Tokenizer> {
    checked(Tokenizer::from_bytes(bytes)?)
}

fn checked(tokenizer: Tokenizer) -> tokenizers::Result<Tokenizer> {
    let probe = catch_unwind(AssertUnwindSafe(|| {
        let _ = tokenizer.encode("Hello, world!", true);
        let _ = tokenizer.encode(("Hello", "world"), true);
    }));
    match probe {
        Ok(()) => Ok(tokenizer),
        Err(panic) => {
            let text = crate::runtime::panic_text(&panic);
            Err(
                format!("the tokenizer is inconsistent (encoding a probe text failed: {text})")
                    .into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    /// A post-processor that names `[SEP]` without defining it: accepted by
    /// `Tokenizer::from_bytes`, then a panic on every encode.
    const UNDEFINED_SPECIAL: &str = r#"{"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [], "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1}, "unk_token": "[UNK]"}}"#;

    #[test]
    fn a_tokenizer_that_panics_on_encode_is_refused_at_load() {
        let err = super::from_bytes(UNDEFINED_SPECIAL.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("inconsistent"), "{err}");
        let fine = UNDEFINED_SPECIAL.replace(
            r#""special_tokens": {}"#,
            r#""special_tokens": {"[SEP]": {"id": "[SEP]", "ids": [1], "tokens": ["[SEP]"]}}"#,
        );
        assert!(super::from_bytes(fine.as_bytes()).is_ok());
    }
}
