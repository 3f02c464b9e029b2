//! Loading a `tokenizer.json`. The tokenizers crate accepts some files it then panics on when
//! encoding (a post-processor whose template names a special token the file does not define:
//! "no entry found for key", found by fuzzing). Such templates are refused before the crate
//! sees the file, and a loaded tokenizer is also probed once, a single text and a pair, so one
//! that panics in another way is refused at load time with a clear error instead of failing
//! every request later.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tokenizers::Tokenizer;

/// `Tokenizer::from_file` plus the probe; errors as the tokenizers crate's, so callers keep
/// their messages.
pub fn load(path: impl AsRef<Path>) -> tokenizers::Result<Tokenizer> {
    from_bytes(&std::fs::read(path)?)
}

/// `Tokenizer::from_bytes` plus the checks.
pub fn from_bytes(bytes: &[u8]) -> tokenizers::Result<Tokenizer> {
    // Not JSON at all is refused here: the crate's decoder section `expect`s its own parse,
    // so malformed JSON inside it (a raw control character in a string) panics (found by
    // fuzzing).
    let json = serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| format!("the tokenizer file is not valid JSON: {e}"))?;
    if let Some(name) = undefined_template_token(&json) {
        return Err(format!(
            "the tokenizer is inconsistent (its post-processor's template names the special \
             token {name:?}, which its special_tokens do not define)"
        )
        .into());
    }
    checked(Tokenizer::from_bytes(bytes)?)
}

/// The first special token that a `TemplateProcessing`-shaped post-processor (anywhere in the
/// file, a `Sequence` of processors included) names in its `single` or `pair` template without
/// defining it in its `special_tokens`.
fn undefined_template_token(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => {
            // By shape, not by `type`: the crate's untagged fallback reads an object with these
            // fields as a TemplateProcessing whatever its `type` says (found by fuzzing: a
            // misspelt "TdmplateProcessing").
            let template_shaped = map.contains_key("special_tokens")
                && (map.contains_key("single") || map.contains_key("pair"));
            if template_shaped {
                let defined = map.get("special_tokens").and_then(|t| t.as_object());
                for template in ["single", "pair"] {
                    let pieces = map.get(template).and_then(|t| t.as_array());
                    for piece in pieces.into_iter().flatten() {
                        let id = piece.pointer("/SpecialToken/id").and_then(|i| i.as_str());
                        if let Some(id) = id {
                            if !defined.is_some_and(|d| d.contains_key(id)) {
                                return Some(id.to_owned());
                            }
                        }
                    }
                }
            }
            map.values().find_map(undefined_template_token)
        }
        serde_json::Value::Array(items) => items.iter().find_map(undefined_template_token),
        _ => None,
    }
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
    fn malformed_json_is_refused_before_the_crate_parses_it() {
        // A raw control character inside the decoder's string: the crate's decoder parse
        // panicked on it (`expect("Helper")`); kept in fuzz/regressions/tokenizer_json.
        let found = include_bytes!(
            "../../fuzz/regressions/tokenizer_json/crash-57c19625041e2053a6b9ab613d41e24ef1195a75"
        );
        let small = b"{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}, \"unk_token\": \"x\"},\n \"decoder\": {\"type\": \"Fuse\x01\"}}";
        for bytes in [&found[..], &small[..]] {
            let err = super::from_bytes(bytes).unwrap_err().to_string();
            assert!(err.contains("not valid JSON"), "{err}");
        }
    }

    #[test]
    fn a_template_with_a_misspelt_type_is_still_checked() {
        // The crate reads it as a TemplateProcessing anyway; its pair names "[SEP](".
        let found = include_bytes!(
            "../../fuzz/regressions/tokenizer_json/crash-a7c8f2a135c71fc8784d029559064541ec8f482e"
        );
        let err = super::from_bytes(found).unwrap_err().to_string();
        assert!(err.contains("[SEP]("), "{err}");
    }

    #[test]
    fn a_tokenizer_that_panics_on_encode_is_refused_at_load() {
        let err = super::from_bytes(UNDEFINED_SPECIAL.as_bytes()).unwrap_err();
        // Refused by reading the template, before the tokenizers crate can panic (a caught
        // panic still stops a fuzzer).
        assert!(
            err.to_string()
                .contains("names the special token \"[SEP]\""),
            "{err}"
        );
        let fine = UNDEFINED_SPECIAL.replace(
            r#""special_tokens": {}"#,
            r#""special_tokens": {"[SEP]": {"id": "[SEP]", "ids": [1], "tokens": ["[SEP]"]}}"#,
        );
        assert!(super::from_bytes(fine.as_bytes()).is_ok());
    }
}
