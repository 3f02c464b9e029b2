//! LLM rerankers, Qwen3-Reranker style: a causal LM reads a judging prompt (system: answer only
//! "yes" or "no"; user: `<Instruct>`, `<Query>`, `<Document>`; assistant: an empty think block)
//! and the score is the probability of "yes" against "no" at the last position:
//! `softmax([logit(no), logit(yes)])[1]`. The prompt is exactly the one Xinference's
//! `sentence_transformers` engine builds for Qwen3-Reranker, and it runs through our
//! [`LlmEngine`] (GGUF or safetensors), inside the shared compute budget.

use super::{DocScore, ScoreOptions};
use crate::llm::LlmEngine;
use crate::{Error, Result};

/// The instruction used when the request gives none (Xinference's and Qwen's default).
pub const DEFAULT_INSTRUCTION: &str =
    "Given a web search query, retrieve relevant passages that answer the query";

const PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

/// A causal LM used as a reranker.
pub struct LlmReranker {
    engine: LlmEngine,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    yes: u32,
    no: u32,
    max_len: usize,
}

impl LlmReranker {
    /// Wraps a loaded engine. `max_tokens` (the family's) caps the prompt, as does the context.
    pub fn new(engine: LlmEngine, max_tokens: Option<usize>) -> Result<Self> {
        let tokenizer = engine.tokenizer();
        let encode = |text: &str| -> Result<Vec<u32>> {
            Ok(tokenizer
                .encode(text, false)
                .map_err(|e| Error::bad_request(format!("cannot tokenize the prompt: {e}")))?
                .get_ids()
                .to_vec())
        };
        let prefix = encode(PREFIX)?;
        let suffix = encode(SUFFIX)?;
        let id = |token: &str| {
            tokenizer.token_to_id(token).ok_or_else(|| {
                Error::bad_request(format!(
                    "this model's vocabulary has no `{token}` token, so it cannot be used as a \
                     yes/no LLM reranker"
                ))
            })
        };
        let (yes, no) = (id("yes")?, id("no")?);
        let context = engine.context_length();
        let max_len = max_tokens.unwrap_or(context).min(context.saturating_sub(1));
        if max_len <= prefix.len() + suffix.len() + 8 {
            return Err(Error::bad_request(format!(
                "the reranker's window ({max_len} tokens) is too short for its prompt"
            )));
        }
        Ok(LlmReranker {
            engine,
            prefix,
            suffix,
            yes,
            no,
            max_len,
        })
    }

    /// The prompt token ids of one (query, document) pair.
    pub fn prompt(&self, instruction: &str, query: &str, doc: &str) -> Result<Vec<u32>> {
        let body = format!("<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}");
        let mut ids = self
            .engine
            .tokenizer()
            .encode(body, false)
            .map_err(|e| Error::bad_request(format!("cannot tokenize the input: {e}")))?
            .get_ids()
            .to_vec();
        ids.truncate(self.max_len - self.prefix.len() - self.suffix.len());
        let mut prompt = self.prefix.clone();
        prompt.extend_from_slice(&ids);
        prompt.extend_from_slice(&self.suffix);
        Ok(prompt)
    }
}

impl super::Rerank for LlmReranker {
    fn score(
        &mut self,
        query: &str,
        documents: &[String],
        options: &ScoreOptions,
    ) -> Result<Vec<DocScore>> {
        let instruction = options
            .instruction
            .as_deref()
            .unwrap_or(DEFAULT_INSTRUCTION);
        documents
            .iter()
            .map(|doc| {
                let doc = match options.max_tokens_per_doc {
                    Some(m) => {
                        let enc = self
                            .engine
                            .tokenizer()
                            .encode(doc.as_str(), false)
                            .map_err(|e| {
                                Error::bad_request(format!("cannot tokenize the input: {e}"))
                            })?;
                        let ids = &enc.get_ids()[..enc.len().min(m)];
                        self.engine
                            .tokenizer()
                            .decode(ids, false)
                            .map_err(|e| Error::internal(format!("cannot cut the document: {e}")))?
                    }
                    None => doc.clone(),
                };
                let prompt = self.prompt(instruction, query, &doc)?;
                let logits = self.engine.score_last_logits(&prompt)?;
                let (yes, no) = (logits[self.yes as usize], logits[self.no as usize]);
                // softmax over [no, yes], the "yes" entry.
                let score = 1.0 / (1.0 + (no - yes).exp());
                Ok(DocScore {
                    score,
                    tokens: prompt.len(),
                })
            })
            .collect()
    }
}
