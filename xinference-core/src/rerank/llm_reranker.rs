//! LLM rerankers, Qwen3-Reranker style: a causal LM reads a judging prompt (system: answer only
//! "yes" or "no"; user: `<Instruct>`, `<Query>`, `<Document>`; assistant: an empty think block)
//! and the score is the probability of "yes" against "no" at the last position:
//! `softmax([logit(no), logit(yes)])[1]`. The prompt is exactly the one Xinference's
//! `sentence_transformers` engine builds for Qwen3-Reranker, and it runs through our
//! [`LlmEngine`] (GGUF or safetensors), inside the shared compute budget.

use super::{DocScore, ScoreOptions};
use crate::llm::{LlmEngine, LlmTokenizer};
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
        let encode = |text: &str| tokenizer.encode(text, false);
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
        let mut ids = self.engine.tokenizer().encode(&body, false)?;
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
        // Every prompt first (the tokenizer is borrowed from the engine), then the scoring.
        let tokenizer = self.engine.tokenizer();
        let header = format!("<Instruct>: {instruction}\n<Query>: {query}\n<Document>: ");
        let used = self.prefix.len() + self.suffix.len() + count_tokens(tokenizer, &header)?;
        let room = self.max_len.saturating_sub(used).max(MIN_CHUNK_TOKENS);
        let prompts = documents
            .iter()
            .map(|doc| {
                document_pieces(tokenizer, doc, room, options)?
                    .iter()
                    .map(|piece| self.prompt(instruction, query, piece))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let mut scores = Vec::with_capacity(documents.len());
        for pieces in prompts {
            let mut best = DocScore {
                score: f32::NEG_INFINITY,
                tokens: 0,
            };
            for prompt in pieces {
                let logits = self.engine.score_last_logits(&prompt)?;
                let (yes, no) = (logits[self.yes as usize], logits[self.no as usize]);
                // softmax over [no, yes], the "yes" entry.
                let score = 1.0 / (1.0 + (no - yes).exp());
                best.score = best.score.max(score);
                best.tokens += prompt.len();
            }
            scores.push(best);
        }
        Ok(scores)
    }
}

/// The fewest document tokens a window holds, however long the query.
const MIN_CHUNK_TOKENS: usize = 16;

fn count_tokens(tokenizer: &LlmTokenizer, text: &str) -> Result<usize> {
    Ok(tokenizer.encode(text, false)?.len())
}

/// The texts a document is scored as: cut to `max_tokens_per_doc` first; then, with
/// `max_chunks_per_doc`, a document longer than `room` tokens becomes up to that many
/// consecutive windows of `room` tokens (the document keeps its best score, as with the
/// cross-encoders); without it, the whole (the prompt cuts it to the window).
fn document_pieces(
    tokenizer: &LlmTokenizer,
    doc: &str,
    room: usize,
    options: &ScoreOptions,
) -> Result<Vec<String>> {
    if options.max_tokens_per_doc.is_none() && options.max_chunks_per_doc.is_none() {
        return Ok(vec![doc.to_owned()]);
    }
    let encoding = tokenizer.encode(doc, false)?;
    let mut ids = &encoding[..];
    if let Some(m) = options.max_tokens_per_doc {
        ids = &ids[..ids.len().min(m)];
    }
    let windows: Vec<&[u32]> = match options.max_chunks_per_doc {
        Some(chunks) if ids.len() > room => ids.chunks(room).take(chunks.max(1)).collect(),
        _ => vec![ids],
    };
    windows
        .into_iter()
        .map(|ids| tokenizer.decode(ids, false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> LlmTokenizer {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tiny-embedders/bert/tokenizer.json");
        tokenizers::Tokenizer::from_file(path).unwrap().into()
    }

    #[test]
    fn long_documents_become_windows_only_when_chunks_are_asked_for() {
        let tok = tokenizer();
        let doc = "a man is eating food. ".repeat(10); // 60 tokens
        let plain = ScoreOptions::default();
        assert_eq!(
            document_pieces(&tok, &doc, 16, &plain).unwrap(),
            vec![doc.clone()]
        );
        let chunked = ScoreOptions {
            max_chunks_per_doc: Some(3),
            ..ScoreOptions::default()
        };
        let pieces = document_pieces(&tok, &doc, 16, &chunked).unwrap();
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        for piece in &pieces {
            assert_eq!(count_tokens(&tok, piece).unwrap(), 16, "{piece:?}");
        }
        // The windows are consecutive: together they are the document's first 48 tokens.
        let first_48 = tok.encode(doc.as_str(), false).unwrap()[..48].to_vec();
        let joined: Vec<u32> = pieces
            .iter()
            .flat_map(|p| tok.encode(p.as_str(), false).unwrap())
            .collect();
        assert_eq!(joined, first_48);
        // A short document stays whole; max_tokens_per_doc cuts first.
        assert_eq!(
            document_pieces(&tok, "a man", 16, &chunked).unwrap(),
            vec!["a man"]
        );
        let cut = ScoreOptions {
            max_tokens_per_doc: Some(2),
            ..ScoreOptions::default()
        };
        assert_eq!(
            document_pieces(&tok, "a man is eating", 16, &cut).unwrap(),
            vec!["a man"]
        );
    }
}
