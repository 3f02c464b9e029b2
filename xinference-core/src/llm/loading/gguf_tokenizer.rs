//! The tokenizer of a GGUF file rebuilt from its metadata, matching llama.cpp's: SentencePiece
//! vocabularies (`llama`, `gemma4`) through [`super::spm`], byte-level BPE through candle's
//! builder with the pre-tokenizer split llama.cpp uses for the file's `tokenizer.ggml.pre`.

use crate::llm::tokenizer::LlmTokenizer;
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, AddedVocabulary, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's `qwen35` split (Qwen3.5's `tokenizer.json`): Qwen2's, except that letter runs
/// also take combining marks (`[\p{L}\p{M}]+`), and marks are not punctuation.
const QWEN35_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn meta_str<'a>(ct: &'a Content, key: &str) -> Option<&'a str> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

/// The tokenizer described by the GGUF metadata `ct`.
pub(crate) fn tokenizer_from_gguf(ct: &Content) -> Result<LlmTokenizer> {
    match meta_str(ct, "tokenizer.ggml.model") {
        Some("llama") => return super::spm::spm_tokenizer_from_gguf(ct),
        Some("gemma4") => return super::spm::gemma4_tokenizer_from_gguf(ct).map(Into::into),
        _ => {}
    }
    let mut t = Tokenizer::from_gguf(ct).map_err(|e| {
        Error::bad_request(format!(
            "cannot build a tokenizer from the GGUF metadata: {e}"
        ))
    })?;
    fix_pretokenizer(ct, &mut t)?;
    user_defined_tokens_are_text(ct, t).map(Into::into)
}

/// candle builds byte-level BPE tokenizers for pre-tokenizer types it does not know (SmolLM2's
/// `smollm`, `gpt-2`, ...) with a leading-space ByteLevel step, so `system` after a special
/// token becomes ` system`. llama.cpp uses the GPT-2 split without a prefix space for these,
/// and for `qwen35` (which candle does not know) Qwen3.5's own split.
fn fix_pretokenizer(ct: &Content, tokenizer: &mut Tokenizer) -> Result<()> {
    const HANDLED_BY_CANDLE: &[&str] = &["qwen2", "smaug-bpe", "lfm2", "llama3"];
    let is_bpe = meta_str(ct, "tokenizer.ggml.model") == Some("gpt2");
    let pre = meta_str(ct, "tokenizer.ggml.pre").unwrap_or("default");
    if !is_bpe || HANDLED_BY_CANDLE.contains(&pre) {
        return Ok(());
    }
    if pre == "qwen35" {
        let split = Split::new(
            SplitPattern::Regex(QWEN35_SPLIT.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::internal(format!("the qwen35 split does not compile: {e}")))?;
        let bytes = ByteLevel::new(false, false, false);
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), bytes.into()])));
    } else {
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    }
    Ok(())
}

/// candle marks every non-normal GGUF token special, so decoding drops them. User-defined ones
/// (Qwen's `<tool_call>`, `<think>`, ...) are text, as in llama.cpp and the original
/// `tokenizer.json`: tool calls and reasoning tags must survive decoding. The added vocabulary
/// is rebuilt in place, in id order as a `tokenizer.json` would list it (a round trip through
/// JSON held the whole vocabulary and merges twice more while loading).
fn user_defined_tokens_are_text(ct: &Content, mut tokenizer: Tokenizer) -> Result<Tokenizer> {
    const TOKEN_USER_DEFINED: i32 = 4;
    let Some(Value::Array(types)) = ct.metadata.get("tokenizer.ggml.token_type") else {
        return Ok(tokenizer);
    };
    let user_defined =
        |id: u32| types.get(id as usize).and_then(|t| t.to_i32().ok()) == Some(TOKEN_USER_DEFINED);
    let mut added: Vec<(u32, AddedToken)> =
        tokenizer.get_added_tokens_decoder().into_iter().collect();
    if !added.iter().any(|(id, t)| t.special && user_defined(*id)) {
        return Ok(tokenizer);
    }
    added.sort_unstable_by_key(|(id, _)| *id);
    let tokens = added.into_iter().map(|(id, token)| {
        let special = token.special && !user_defined(id);
        token.special(special)
    });
    let mut vocabulary = AddedVocabulary::new();
    vocabulary
        .add_tokens(tokens, tokenizer.get_model(), tokenizer.get_normalizer())
        .map_err(|e| Error::internal(format!("cannot adjust the GGUF tokenizer: {e}")))?;
    tokenizer.with_added_vocabulary(vocabulary);
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The added vocabulary as the JSON round trip left it before (serialise, flip `special`
    /// off for user-defined tokens, parse back).
    fn through_json(ct: &Content, tokenizer: &Tokenizer) -> Tokenizer {
        let types = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(types)) => types,
            _ => unreachable!(),
        };
        let mut json: serde_json::Value =
            serde_json::from_str(&tokenizer.to_string(false).unwrap()).unwrap();
        for token in json["added_tokens"].as_array_mut().unwrap() {
            let id = token["id"].as_u64().unwrap() as usize;
            if types[id].to_i32().ok() == Some(4) {
                token["special"] = serde_json::Value::Bool(false);
            }
        }
        json.to_string().parse().unwrap()
    }

    /// Rebuilding the added vocabulary in place gives what the JSON round trip gave, on the
    /// real Qwen2.5 vocabulary (`<tool_call>` and `</tool_call>` are user-defined): the same
    /// added tokens, ids and decoded text, special tokens skipped or kept.
    #[test]
    fn user_defined_tokens_become_text_as_through_json() {
        let path = crate::test_models().join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
        let mut file = std::fs::File::open(&path).expect("the Qwen2.5 test GGUF");
        let ct = Content::read(&mut file).unwrap();
        let mut base = Tokenizer::from_gguf(&ct).unwrap();
        fix_pretokenizer(&ct, &mut base).unwrap();
        let reference = through_json(&ct, &base);
        let ours = user_defined_tokens_are_text(&ct, base).unwrap();
        let sorted = |t: &Tokenizer| {
            let mut added: Vec<_> = t.get_added_tokens_decoder().into_iter().collect();
            added.sort_by_key(|(id, _)| *id);
            added
        };
        assert_eq!(sorted(&ours), sorted(&reference));
        let call = ours.token_to_id("<tool_call>").unwrap();
        assert!(!sorted(&ours).iter().any(|(id, t)| *id == call && t.special));
        for text in [
            "<|im_start|>user\nWhat is the weather?<|im_end|>\n<|im_start|>assistant\n",
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call><|im_end|>",
            "  code:\tfn f() { 1 + 2 }\n\n\n日本語 émoji 🎉 <|endoftext|>",
        ] {
            let a = ours.encode(text, false).unwrap();
            let b = reference.encode(text, false).unwrap();
            assert_eq!(a.get_ids(), b.get_ids(), "{text:?}");
            for skip in [false, true] {
                let decoded = ours.decode(a.get_ids(), skip).unwrap();
                assert_eq!(decoded, reference.decode(b.get_ids(), skip).unwrap());
                assert_eq!(
                    decoded.contains("<tool_call>"),
                    text.contains("<tool_call>")
                );
            }
        }
    }

    /// Our tokens of texts (code, digits, CJK, whitespace runs, combining marks) equal
    /// llama.cpp's on a vocabulary-only GGUF that names `qwen35`
    /// (scripts/fixtures/record_qwen35_pretokenizer.py made both).
    #[test]
    fn qwen35_split_tokenizes_as_llama_cpp_does() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/qwen35-pretokenizer");
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"),
        )
        .unwrap();
        let mut file = std::fs::File::open(dir.join("vocab-qwen35.gguf")).unwrap();
        let ct = Content::read(&mut file).unwrap();
        assert_eq!(meta_str(&ct, "tokenizer.ggml.pre"), Some("qwen35"));
        let tokenizer = tokenizer_from_gguf(&ct).unwrap();
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        let cases = record["cases"].as_array().unwrap();
        let mut told_apart = 0;
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let ours = tokenizer.encode(text, false).unwrap();
            assert_eq!(ours, ids(&case["qwen35"]), "{text:?}");
            let decoded = tokenizer.decode(&ours, false).unwrap();
            assert_eq!(decoded, text, "round trip");
            told_apart += usize::from(case["qwen35"] != case["qwen2"]);
        }
        // The texts with combining marks split differently under Qwen2's rule: the check above
        // would fail with the wrong split.
        assert!(told_apart >= 3, "{told_apart}");
    }
}
