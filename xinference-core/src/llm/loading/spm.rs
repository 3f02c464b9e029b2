//! SentencePiece ("llama" tokenizer model) vocabularies from GGUF metadata, rebuilt as a
//! Hugging Face BPE tokenizer with byte fallback, the way transformers converts them: merges
//! come from pieces that split into two other pieces, ordered by the merged piece's score.
//! candle's GGUF tokenizer builder covers byte-level BPE only; Gemma, Phi-3, Mistral and
//! Llama 2 GGUFs need this.

use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::json;
use std::collections::HashMap;
use tokenizers::Tokenizer;

const TOKEN_NORMAL: i32 = 1;
const TOKEN_UNKNOWN: i32 = 2;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

fn array<'a>(ct: &'a Content, key: &str) -> Result<&'a Vec<Value>> {
    match ct.metadata.get(key) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(Error::bad_request(format!(
            "the GGUF vocabulary has no {key}"
        ))),
    }
}

/// Builds the tokenizer of a GGUF whose `tokenizer.ggml.model` is `llama` (SentencePiece), or
/// `gemma4` (Gemma 4: the same SentencePiece-style BPE, but ranked by the GGUF's own
/// `tokenizer.ggml.merges`, its scores all alike, and split at runs of newlines first, as
/// llama.cpp's `gemma4` pre-tokenizer does).
pub fn spm_tokenizer_from_gguf(ct: &Content) -> Result<Tokenizer> {
    let tokens: Vec<String> = array(ct, "tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.to_string().cloned().unwrap_or_default())
        .collect();
    let scores: Vec<f32> = match array(ct, "tokenizer.ggml.scores") {
        Ok(items) => items.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect(),
        Err(_) => (0..tokens.len()).map(|i| -(i as f32)).collect(),
    };
    let types: Vec<i32> = match array(ct, "tokenizer.ggml.token_type") {
        Ok(items) => items
            .iter()
            .map(|v| v.to_i32().unwrap_or(TOKEN_NORMAL))
            .collect(),
        Err(_) => vec![TOKEN_NORMAL; tokens.len()],
    };
    let add_space_prefix = match ct.metadata.get("tokenizer.ggml.add_space_prefix") {
        Some(Value::Bool(b)) => *b,
        _ => true,
    };
    let unk_id = ct
        .metadata
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(|v| v.to_u32().ok())
        .or_else(|| {
            types
                .iter()
                .position(|&t| t == TOKEN_UNKNOWN)
                .map(|i| i as u32)
        });

    let vocab: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let gemma4 =
        matches!(ct.metadata.get("tokenizer.ggml.model"), Some(Value::String(m)) if m == "gemma4");
    // Merges: every split of a normal piece into two pieces of the vocabulary, best score first.
    let mut merges: Vec<(f32, u32, u32, &str, &str)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types.get(i).copied().unwrap_or(TOKEN_NORMAL) != TOKEN_NORMAL {
            continue;
        }
        let mut local = Vec::new();
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                local.push((scores[i], li, ri, l, r));
            }
        }
        local.sort_by_key(|m| (m.1, m.2));
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let merges: Vec<(&str, &str)> = if gemma4 {
        array(ct, "tokenizer.ggml.merges")?
            .iter()
            .filter_map(|m| m.to_string().ok()?.split_once(' '))
            .collect()
    } else {
        merges.iter().map(|m| (m.3, m.4)).collect()
    };

    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == TOKEN_CONTROL || t == TOKEN_USER_DEFINED || t == TOKEN_UNKNOWN)
        .map(|(i, &t)| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": t != TOKEN_USER_DEFINED})
        })
        .collect();
    let mut normalizers = Vec::new();
    if add_space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "▁"}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let vocab_json: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let document = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": pre_tokenizer(gemma4),
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": unk_id.map(|i| tokens[i as usize].clone()),
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": true,
            "byte_fallback": true,
            "ignore_merges": false,
            "vocab": vocab_json,
            "merges": merges.iter().map(|m| json!([m.0, m.1])).collect::<Vec<_>>(),
        }
    });
    let text = serde_json::to_string(&document).map_err(|e| Error::internal(e.to_string()))?;
    text.parse::<Tokenizer>().map_err(|e| {
        Error::bad_request(format!(
            "cannot build a SentencePiece tokenizer from the GGUF: {e}"
        ))
    })
}

/// The pre-tokenizer: Gemma 4's splits at runs of newlines (llama.cpp's `gemma4` regex);
/// SentencePiece's is none.
fn pre_tokenizer(gemma4: bool) -> serde_json::Value {
    if gemma4 {
        json!({"type": "Split", "pattern": {"Regex": "\n+"}, "behavior": "Isolated", "invert": false})
    } else {
        serde_json::Value::Null
    }
}
