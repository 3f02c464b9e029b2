//! SentencePiece vocabularies from GGUF metadata (candle's GGUF tokenizer builder covers
//! byte-level BPE only): the `llama` tokenizer model (Gemma 3, Phi-3, Mistral, Llama 2) becomes
//! our own [`SpmTokenizer`]; Gemma 4's `gemma4` model, a BPE ranked by its own merges, a
//! `tokenizers` BPE with byte fallback.

use crate::llm::tokenizer::spm::token_type::{CONTROL, NORMAL, UNKNOWN, USER_DEFINED};
use crate::llm::tokenizer::spm::{SpmTokenizer, SpmVocabulary};
use crate::llm::tokenizer::LlmTokenizer;
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

fn array<'a>(ct: &'a Content, key: &str) -> Result<&'a Vec<Value>> {
    match ct.metadata.get(key) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(Error::bad_request(format!(
            "the GGUF vocabulary has no {key}"
        ))),
    }
}

/// The tokenizer of a GGUF whose `tokenizer.ggml.model` is `llama` (SentencePiece): our own
/// [`SpmTokenizer`], llama.cpp's algorithm.
pub fn spm_tokenizer_from_gguf(ct: &Content) -> Result<LlmTokenizer> {
    let spm = SpmVocab::read(ct)?;
    Ok(LlmTokenizer::Spm(Box::new(SpmTokenizer::new(
        &SpmVocabulary {
            pieces: spm.tokens,
            scores: spm.scores,
            types: spm.types,
            add_space_prefix: spm.add_space_prefix,
            unk_id: spm.unk_id,
        },
    )?)))
}

/// The tokenizer of a GGUF whose `tokenizer.ggml.model` is `gemma4` (Gemma 4): a
/// SentencePiece-style BPE ranked by the GGUF's own `tokenizer.ggml.merges` (its scores all
/// alike), split at runs of newlines first as llama.cpp's `gemma4` pre-tokenizer does; built
/// as a `tokenizers` BPE with byte fallback.
///
/// The parts are built directly (no `tokenizer.json` document in between): a 262k-token
/// vocabulary with 513k merges as JSON, parsed back, was a transient of a few hundred MB.
pub fn gemma4_tokenizer_from_gguf(ct: &Content) -> Result<Tokenizer> {
    let spm = SpmVocab::read(ct)?;
    let vocab: Vocab = spm
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), i as u32))
        .collect();
    let merges: Merges = array(ct, "tokenizer.ggml.merges")?
        .iter()
        .filter_map(|m| m.to_string().ok()?.split_once(' '))
        .map(|(l, r)| (l.to_owned(), r.to_owned()))
        .collect();
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = spm.unk_id.and_then(|i| spm.tokens.get(i as usize)) {
        bpe = bpe.unk_token((*unk).to_owned());
    }
    let fail = |e: tokenizers::Error| {
        Error::bad_request(format!(
            "cannot build a SentencePiece tokenizer from the GGUF: {e}"
        ))
    };
    let mut tokenizer = Tokenizer::new(bpe.build().map_err(fail)?);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if spm.add_space_prefix {
        normalizers.push(Prepend::new("\u{2581}".to_owned()).into());
    }
    normalizers.push(Replace::new(" ", "\u{2581}").map_err(fail)?.into());
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(fail)?;
    // llama.cpp's `gemma4` pre-tokenizer: runs of newlines apart.
    let split = Split::new(
        SplitPattern::Regex("\n+".to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(fail)?;
    tokenizer.with_pre_tokenizer(Some(split));
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("\u{2581}", " ").map_err(fail)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if spm.add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    // Control, user-defined and unknown pieces match whole, before the model sees the text;
    // user-defined ones are text when decoding (special: false), as in llama.cpp.
    let added: Vec<AddedToken> = spm
        .types
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == CONTROL || t == USER_DEFINED || t == UNKNOWN)
        .map(|(i, &t)| {
            AddedToken::from(spm.tokens[i], t != USER_DEFINED)
                .single_word(false)
                .lstrip(false)
                .rstrip(false)
                .normalized(false)
        })
        .collect();
    tokenizer.add_tokens(added).map_err(fail)?;
    Ok(tokenizer)
}

/// The SentencePiece tables of a GGUF, borrowed from its metadata.
struct SpmVocab<'a> {
    tokens: Vec<&'a str>,
    scores: Vec<f32>,
    types: Vec<i32>,
    add_space_prefix: bool,
    unk_id: Option<u32>,
}

impl<'a> SpmVocab<'a> {
    fn read(ct: &'a Content) -> Result<Self> {
        let tokens: Vec<&str> = array(ct, "tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.to_string().map(String::as_str).unwrap_or_default())
            .collect();
        let scores: Vec<f32> = match array(ct, "tokenizer.ggml.scores") {
            Ok(items) => items.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect(),
            Err(_) => (0..tokens.len()).map(|i| -(i as f32)).collect(),
        };
        let types: Vec<i32> = match array(ct, "tokenizer.ggml.token_type") {
            Ok(items) => items.iter().map(|v| v.to_i32().unwrap_or(NORMAL)).collect(),
            Err(_) => vec![NORMAL; tokens.len()],
        };
        let add_space_prefix = match ct.metadata.get("tokenizer.ggml.add_space_prefix") {
            Some(Value::Bool(b)) => *b,
            _ => true,
        };
        let unk_id = ct
            .metadata
            .get("tokenizer.ggml.unknown_token_id")
            .and_then(|v| v.to_u32().ok())
            .or_else(|| types.iter().position(|&t| t == UNKNOWN).map(|i| i as u32));
        Ok(SpmVocab {
            tokens,
            scores,
            types,
            add_space_prefix,
            unk_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    /// The tokenizer as it was built before: a `tokenizer.json` document, parsed back.
    fn built_through_json(ct: &Content) -> Tokenizer {
        let spm = SpmVocab::read(ct).unwrap();
        let tokens = &spm.tokens;
        let vocab: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u32))
            .collect();
        let mut merges: Vec<(f32, u32, u32, &str, &str)> = Vec::new();
        for (i, piece) in tokens.iter().enumerate() {
            if spm.types[i] != NORMAL {
                continue;
            }
            let mut local = Vec::new();
            for (at, _) in piece.char_indices().skip(1) {
                let (l, r) = piece.split_at(at);
                if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                    local.push((spm.scores[i], li, ri, l, r));
                }
            }
            local.sort_by_key(|m| (m.1, m.2));
            merges.extend(local);
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0));
        let added: Vec<serde_json::Value> = spm
            .types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == CONTROL || t == USER_DEFINED || t == UNKNOWN)
            .map(|(i, &t)| {
                json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": t != USER_DEFINED})
            })
            .collect();
        let vocab_json: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), json!(i)))
            .collect();
        let document = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
            "pre_tokenizer": null, "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": null,
                "unk_token": spm.unk_id.map(|i| tokens[i as usize]),
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                "byte_fallback": true, "ignore_merges": false, "vocab": vocab_json,
                "merges": merges.iter().map(|m| json!([m.3, m.4])).collect::<Vec<_>>()}
        });
        document.to_string().parse().unwrap()
    }

    /// Our SentencePiece tokenizer has the pieces and ids of the `tokenizers` BPE that
    /// transformers' conversion builds (through a `tokenizer.json` document), on the real
    /// Gemma 3 vocabulary (262k pieces, 6k control tokens, byte fallback), and the same bytes
    /// per token for grammars; it encodes a broad corpus (scripts, code, whitespace runs, emoji,
    /// byte fallback, control tokens inside text) to llama.cpp's ids and decodes them to
    /// llama.cpp's text (`tests/fixtures/gemma3_llama_cpp_tokens.json`, recorded by
    /// `scripts/fixtures/gemma3_tokens.py`).
    #[test]
    fn spm_tokenizer_has_the_converted_pieces_and_llama_cpps_tokens_on_gemma3() {
        let path = crate::test_models().join("gemma-3-270m-q4_k_m.gguf");
        let mut file = std::fs::File::open(&path).expect("the Gemma 3 test GGUF");
        let ct = Content::read(&mut file).unwrap();
        let direct = spm_tokenizer_from_gguf(&ct).unwrap();
        assert!(matches!(direct, LlmTokenizer::Spm(_)));
        let reference = LlmTokenizer::from(built_through_json(&ct));
        assert_eq!(direct.vocab_size(), reference.vocab_size());
        for id in 0..reference.vocab_size() as u32 {
            let piece = reference.id_to_token(id);
            assert_eq!(direct.id_to_token(id), piece, "id {id}");
            if let Some(piece) = piece {
                assert_eq!(direct.token_to_id(&piece), reference.token_to_id(&piece));
            }
        }
        let mut added = direct.added_tokens();
        let mut want_added = reference.added_tokens();
        added.sort_unstable();
        want_added.sort_unstable();
        assert_eq!(added, want_added);
        assert!(direct.token_bytes().unwrap() == reference.token_bytes().unwrap());
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/gemma3_llama_cpp_tokens.json");
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        let entries = fixture["entries"].as_array().unwrap();
        assert!(entries.len() > 50);
        for entry in entries {
            let text = entry["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(entry["ids"].clone()).unwrap();
            // The template writes `<bos>`: the tokenizer adds nothing either way.
            for add_special in [false, true] {
                assert_eq!(direct.encode(text, add_special).unwrap(), want, "{text:?}");
            }
            assert_eq!(
                direct.decode(&want, false).unwrap(),
                entry["decoded"].as_str().unwrap(),
                "{text:?}"
            );
        }
        // Single ids across the vocabulary decode to llama.cpp's text (spaces, control and
        // user-defined tokens included).
        for piece in fixture["pieces"].as_array().unwrap() {
            let id = piece[0].as_u64().unwrap() as u32;
            let want = piece[1].as_str().unwrap();
            assert_eq!(direct.decode(&[id], false).unwrap(), want, "id {id}");
        }
    }
}
