//! A safetensors model's special tokens (BOS/EOS, whether prompts start with BOS) and chat
//! template, from its tokenizer and config files.

use super::read_json;
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;
use tokenizers::Tokenizer;

/// BOS/EOS and whether prompts start with BOS.
pub(super) struct SpecialTokens {
    pub(super) bos: Option<u32>,
    pub(super) eos: Vec<u32>,
    pub(super) add_bos: bool,
}

/// A token id from a `tokenizer_config.json` entry: `"<s>"` or `{"content": "<s>", ...}`.
pub(super) fn config_token(tokenizer: &Tokenizer, v: &Value) -> Option<u32> {
    let text = v
        .as_str()
        .or_else(|| v.get("content").and_then(Value::as_str))?;
    tokenizer.token_to_id(text)
}

/// Token ids of `key` in a config: one id or a list.
pub(super) fn config_ids(config: &Value, key: &str) -> Vec<u32> {
    match config.get(key) {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn special_tokens(
    tokenizer: &Tokenizer,
    config: &Value,
    tok_config: &Value,
    gen_config: &Value,
    model_type: &str,
) -> SpecialTokens {
    // The tokenizer's own `bos_token` is what Transformers uses, `null` included (Qwen has none,
    // although its config.json names <|endoftext|>); the configs fill in when it is absent.
    let from_configs = || {
        let mut ids = config_ids(gen_config, "bos_token_id");
        ids.extend(config_ids(config, "bos_token_id"));
        ids.first().copied()
    };
    let bos = match tok_config.get("bos_token") {
        Some(Value::Null) => None,
        Some(v) => config_token(tokenizer, v).or_else(from_configs),
        None => from_configs(),
    };
    // The tokenizer's EOS first (chat templates call it `eos_token`), then the generation
    // config's list (e.g. Llama 3's <|eot_id|>) and config.json's.
    let mut eos: Vec<u32> = Vec::new();
    let candidates = tok_config
        .get("eos_token")
        .and_then(|v| config_token(tokenizer, v))
        .into_iter()
        .chain(config_ids(gen_config, "eos_token_id"))
        .chain(config_ids(config, "eos_token_id"));
    for id in candidates {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    // Prompts are tokenized without the tokenizer's post-processor (the engine adds BOS
    // itself, once, and never before a BOS the chat template already wrote), so `add_bos` must
    // say whether Transformers' `tokenizer(text)` would have added it:
    // - `add_bos_token` when the tokenizer config says;
    // - else yes when the post-processor adds it (Llama 3 has no add_bos_token but a
    //   TemplateProcessing that adds <|begin_of_text|>);
    // - else, with no tokenizer_config.json at all, the family's habit (Llama yes, Qwen no);
    // - else no: Transformers 5 adds nothing the post-processor does not (SmolLM2's
    //   GPT2Tokenizer names a bos_token but never adds it; even a LlamaTokenizerFast class
    //   without add_bos_token no longer does, unlike Transformers 4).
    let add_bos = match (
        bos,
        tok_config.get("add_bos_token").and_then(Value::as_bool),
    ) {
        (None, _) => false,
        (Some(_), Some(explicit)) => explicit,
        (Some(bos), None) => {
            post_processor_adds(tokenizer, bos) || (tok_config.is_null() && model_type == "llama")
        }
    };
    SpecialTokens { bos, eos, add_bos }
}

/// Whether encoding with special tokens puts `bos` first where encoding without does not
/// (false when the tokenizer fails to encode).
pub(super) fn post_processor_adds(tokenizer: &Tokenizer, bos: u32) -> bool {
    match (tokenizer.encode("a", true), tokenizer.encode("a", false)) {
        (Ok(with), Ok(without)) => {
            with.get_ids().first() == Some(&bos) && without.get_ids().first() != Some(&bos)
        }
        _ => false,
    }
}

/// The chat template: `chat_template.jinja` (what Transformers 4.43+ writes), else
/// `chat_template.json`, else `chat_template` in `tokenizer_config.json` (a string, or a list
/// of named templates of which `default` is the chat template).
pub(super) fn chat_template(dir: &Path, tok_config: &Value) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| Error::bad_request(format!("cannot read {}: {e}", jinja.display())));
    }
    let from_value = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Array(list) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    };
    if let Some(t) =
        read_json(&dir.join("chat_template.json"))?.and_then(|v| from_value(v.get("chat_template")))
    {
        return Ok(Some(t));
    }
    Ok(from_value(tok_config.get("chat_template")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn fixture(family: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tiny-llms")
            .join(family)
    }

    fn tokenizer(family: &str) -> Tokenizer {
        Tokenizer::from_file(fixture(family).join("tokenizer.json")).unwrap()
    }

    #[test]
    fn bos_is_added_once_exactly_where_transformers_adds_it() {
        let llama = tokenizer("llama"); // <s> = 1, a post-processor that adds it
        let qwen = tokenizer("qwen2"); // <|endoftext|> = 0, a ByteLevel post-processor
        let none = Value::Null;
        let add = |t: &Tokenizer, tok_config: Value, config: Value, family: &str| {
            let s = special_tokens(t, &config, &tok_config, &none, family);
            (s.bos, s.add_bos)
        };
        // Llama 3 style: no add_bos_token, the post-processor adds BOS.
        assert_eq!(
            add(&llama, json!({"bos_token": "<s>"}), none.clone(), "llama"),
            (Some(1), true)
        );
        // An explicit add_bos_token wins.
        assert_eq!(
            add(
                &llama,
                json!({"bos_token": "<s>", "add_bos_token": false}),
                none.clone(),
                "llama"
            ),
            (Some(1), false)
        );
        // SmolLM2 style: a bos_token that the GPT-2 tokenizer never adds.
        let gpt2 = json!({"bos_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"});
        assert_eq!(add(&qwen, gpt2, none.clone(), "llama"), (Some(0), false));
        // Transformers 5 does not add it for a Llama tokenizer class either (checked with
        // transformers 5.17: `tokenizer(text)` starts without BOS); the token may be an object.
        let class = json!({
            "bos_token": {"content": "<|endoftext|>"},
            "tokenizer_class": "LlamaTokenizerFast"
        });
        assert_eq!(add(&qwen, class, none.clone(), "llama"), (Some(0), false));
        // No tokenizer_config.json: the family decides.
        let config = json!({"bos_token_id": 0});
        assert_eq!(
            add(&qwen, none.clone(), config.clone(), "llama"),
            (Some(0), true)
        );
        assert_eq!(
            add(&qwen, none.clone(), config.clone(), "qwen2"),
            (Some(0), false)
        );
        // Qwen: bos_token null means no BOS, whatever config.json names.
        assert_eq!(
            add(&qwen, json!({"bos_token": null}), config, "qwen2"),
            (None, false)
        );
    }

    #[test]
    fn eos_ids_put_the_tokenizers_first_and_have_no_duplicates() {
        let qwen = tokenizer("qwen2");
        let s = special_tokens(
            &qwen,
            &json!({"eos_token_id": [0, 2]}),
            &json!({"eos_token": "<|im_end|>"}),
            &json!({"eos_token_id": 1}),
            "qwen2",
        );
        assert_eq!(s.eos, vec![2, 1, 0]);
    }

    #[test]
    fn chat_template_sources() {
        let dir = tempfile::tempdir().unwrap();
        let list = json!({"chat_template": [
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"}
        ]});
        assert_eq!(
            chat_template(dir.path(), &list).unwrap().as_deref(),
            Some("D")
        );
        let no_default = json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
        assert_eq!(chat_template(dir.path(), &no_default).unwrap(), None);
        let plain = json!({"chat_template": "S"});
        assert_eq!(
            chat_template(dir.path(), &plain).unwrap().as_deref(),
            Some("S")
        );
        std::fs::write(dir.path().join("chat_template.jinja"), "J").unwrap();
        assert_eq!(
            chat_template(dir.path(), &plain).unwrap().as_deref(),
            Some("J")
        );
    }
}
