//! Constrained decoding: a grammar (JSON schema, regex or Lark) turned into a mask over the
//! vocabulary at every step, so that the output is valid by construction. The grammar machinery
//! is llguidance's; this module adapts our tokenizer to it and applies the masks to logits.

use crate::llm::tokenizer::LlmTokenizer;
use crate::{Error, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// A JSON value valid against this JSON schema (`{"type": "object"}` for any object).
    JsonSchema(Value),
    /// Text matching this regular expression (whole output).
    Regex(String),
    /// A Lark grammar in llguidance's dialect (which can embed `%json {schema}`).
    Lark(String),
}

impl Grammar {
    /// A grammar that matches exactly one of `choices`.
    pub fn choice(choices: &[String]) -> Grammar {
        let alternatives: Vec<String> = choices.iter().map(|c| lark_string(c)).collect();
        Grammar::Lark(format!("start: {}\n", alternatives.join(" | ")))
    }

    fn to_llguidance(&self) -> TopLevelGrammar {
        match self {
            Grammar::JsonSchema(schema) => TopLevelGrammar::from_json_schema(schema.clone()),
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Grammar::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        }
    }
}

/// `text` as a Lark string literal.
pub fn lark_string(text: &str) -> String {
    // JSON string escaping is a subset Lark reads back the same way.
    serde_json::to_string(text).unwrap_or_default()
}

/// The vocabulary adapter and parser factory of one tokenizer, built once per model on the
/// first constrained request and shared by every sequence slot.
#[derive(Clone, Default)]
pub struct GuidanceCache {
    factory: Arc<OnceLock<std::result::Result<Arc<ParserFactory>, String>>>,
}

impl GuidanceCache {
    fn factory(&self, tokenizer: &Arc<LlmTokenizer>, eos: u32) -> Result<Arc<ParserFactory>> {
        self.factory
            .get_or_init(|| build_factory(tokenizer, eos).map_err(|e| e.message().to_owned()))
            .clone()
            .map_err(|e| Error::internal(format!("cannot prepare constrained decoding: {e}")))
    }

    /// Compiles `grammar` into a per-sequence constraint (a 400 for an invalid grammar).
    pub fn compile(
        &self,
        tokenizer: &Arc<LlmTokenizer>,
        stop_ids: &[u32],
        grammar: &Grammar,
    ) -> Result<Constraint> {
        let eos = *stop_ids
            .first()
            .ok_or_else(|| Error::bad_request("this model has no end token to stop a grammar"))?;
        let factory = self.factory(tokenizer, eos)?;
        let parser = factory
            .create_parser(grammar.to_llguidance())
            .map_err(|e| Error::bad_request(format!("invalid grammar: {e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::bad_request(format!("invalid grammar: {e}")));
        }
        let mut stop_ids = stop_ids.to_vec();
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Constraint {
            matcher,
            stop_ids,
            eos,
        })
    }
}

fn build_factory(tokenizer: &Arc<LlmTokenizer>, eos: u32) -> Result<Arc<ParserFactory>> {
    let env = VocabEnv::new(tokenizer, eos)?;
    let env: TokEnv = Arc::new(env);
    let mut factory = ParserFactory::new_simple(&env)
        .map_err(|e| Error::internal(format!("cannot build the grammar engine: {e}")))?;
    factory.quiet();
    Ok(Arc::new(factory))
}

/// Our tokenizer seen as llguidance wants it: every token's bytes in a trie, and tokenization
/// of byte strings. It shares the engine's tokenizer rather than holding a copy (a `tokenizers`
/// BPE of a 262k-token vocabulary is tens of MB).
struct VocabEnv {
    trie: TokTrie,
    tokenizer: Arc<LlmTokenizer>,
}

impl VocabEnv {
    fn new(tokenizer: &Arc<LlmTokenizer>, eos: u32) -> Result<Self> {
        let mut words = tokenizer.token_bytes()?;
        let vocab = tokenizer.vocab_size().max(words.len());
        // Ids with no text (holes in the vocabulary) become unreachable special tokens.
        words.resize(vocab, Vec::new());
        for (id, word) in words.iter_mut().enumerate() {
            if word.is_empty() {
                *word = format!("\u{ff}<[{id}]>").into_bytes();
                word[0] = TokTrie::SPECIAL_TOKEN_MARKER;
            }
        }
        let info = TokRxInfo::new(vocab as u32, eos);
        Ok(VocabEnv {
            trie: TokTrie::from(&info, &words),
            tokenizer: Arc::clone(tokenizer),
        })
    }
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => match self.tokenizer.encode(text, false) {
                Ok(ids) => ids,
                Err(_) => self.trie.greedy_tokenize(s),
            },
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// The grammar state of one sequence: masks logits before sampling and follows the chosen
/// tokens.
pub struct Constraint {
    matcher: Matcher,
    stop_ids: Vec<u32>,
    eos: u32,
}

impl Constraint {
    /// Sets the logits of every token the grammar forbids next to minus infinity. The model's
    /// end tokens are allowed exactly when the grammar is complete.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        // llguidance stops when the grammar cannot go on: the vocabulary cannot write the bytes
        // it needs next, or it grew past the parser's limits. Both come from the request's
        // grammar with this model: a 400 with the first line of its message (the rest is a
        // dump of the parser state).
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| {
            let e = e.to_string();
            Error::bad_request(format!(
                "the grammar (response_format, tool_choice or guided decoding) cannot be \
                 followed with this model: {}",
                e.lines().next().unwrap_or_default()
            ))
        })?;
        let end_allowed = allowed.is_allowed(self.eos);
        // The stop tokens follow the grammar's end, whatever the mask says of them: their
        // logits are put aside, the mask applied to every id, then they are set back.
        let stops: Vec<(usize, f32)> = self
            .stop_ids
            .iter()
            .filter_map(|&s| Some((s as usize, *logits.get(s as usize)?)))
            .collect();
        let is_allowed = |id: usize| id < allowed.len() && allowed.is_allowed(id as u32);
        let mut allowed_count = 0usize;
        for (id, logit) in logits.iter_mut().enumerate() {
            if is_allowed(id) {
                allowed_count += 1;
            } else {
                *logit = f32::NEG_INFINITY;
            }
        }
        for &(id, logit) in &stops {
            allowed_count -= usize::from(is_allowed(id));
            logits[id] = if end_allowed {
                logit
            } else {
                f32::NEG_INFINITY
            };
            allowed_count += usize::from(end_allowed);
        }
        let any_allowed = allowed_count > 0;
        if !any_allowed {
            // Sampling from an empty mask would take a forbidden token: say why instead.
            return Err(Error::bad_request(
                "this model's vocabulary cannot write what the grammar (response_format, \
                 tool_choice or guided decoding) requires next: no token is allowed",
            ));
        }
        Ok(())
    }

    /// Advances the grammar over the sampled token (not called for an end token).
    pub fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::internal(format!("constrained decoding failed: {e}")))
    }

    /// Whether the grammar is complete and admits nothing more: generation should end.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level BPE that can write only `a` and `b` (id 2 is its end token).
    fn tokenizer_of_a_and_b() -> Arc<LlmTokenizer> {
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{"id": 2, "content": "<eos>", "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                              "use_regex": false},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                        "use_regex": false},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": {"a": 0, "b": 1, "<eos>": 2}, "merges": []}
        });
        let tokenizer: tokenizers::Tokenizer = json.to_string().parse().unwrap();
        Arc::new(tokenizer.into())
    }

    /// A grammar the vocabulary can follow masks all but its tokens; one it cannot is a 400
    /// (not a forbidden token sampled from an empty mask, then an internal error): whether the
    /// grammar engine finds the dead end, or the only token it allows is a stop token.
    #[test]
    fn a_grammar_the_vocabulary_cannot_write_is_a_bad_request() {
        let tokenizer = tokenizer_of_a_and_b();
        let cache = GuidanceCache::default();
        let mut ok = cache
            .compile(&tokenizer, &[2], &Grammar::Regex("ab".into()))
            .unwrap();
        let mut logits = vec![0.0; 3];
        ok.mask(&mut logits).unwrap();
        assert_eq!(logits, [0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);

        let mut dead_end = cache
            .compile(&tokenizer, &[2], &Grammar::Regex("ac".into()))
            .unwrap();
        dead_end.accept(0).unwrap();
        let err = dead_end.mask(&mut [0.0; 3]).unwrap_err();
        assert_eq!(err.kind().http_status(), 400, "{}", err.message());
        assert!(
            err.message().contains("cannot be followed"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains('\n'), "{}", err.message());

        // `b` (id 1) is also a stop id here, as a registry's stop id can name an ordinary piece.
        let mut stopped = cache
            .compile(&tokenizer, &[2, 1], &Grammar::Regex("ab".into()))
            .unwrap();
        stopped.accept(0).unwrap();
        let err = stopped.mask(&mut [0.0; 3]).unwrap_err();
        assert_eq!(err.kind().http_status(), 400, "{}", err.message());
        assert!(err.message().contains("cannot write"), "{}", err.message());
    }

    #[test]
    fn choices_become_a_lark_alternation() {
        let g = Grammar::choice(&["yes".into(), "no \"way\"".into()]);
        assert_eq!(
            g,
            Grammar::Lark("start: \"yes\" | \"no \\\"way\\\"\"\n".into())
        );
    }
}
