//! Cross-encoders: BERT (`BertForSequenceClassification`: encoder, pooler = dense + tanh on the
//! first token, classifier) and XLM-RoBERTa (`XLMRobertaForSequenceClassification`: encoder,
//! classification head = dense + tanh + out_proj on the first token), one score per
//! (query, document) pair.
//!
//! Scores are what sentence-transformers' `CrossEncoder.predict` returns (Xinference's
//! `sentence_transformers` engine for bge-reranker and ms-marco): the logit through the activation
//! the model declares (`config_sentence_transformers.json` `activation_fn`, then config.json's
//! `sentence_transformers.activation_fn`, then `sbert_ce_default_activation_function`), and for a
//! single-label head without one, a sigmoid. So bge-reranker scores are in (0, 1) and ms-marco
//! scores are raw logits, as with Xinference.

use super::{DocScore, ScoreOptions};
use crate::embedding::bert::{load_encoder, Layout};
use crate::embedding::encoder::Encoder;
use crate::kernels;
use crate::{Error, Result};
use candle_core::Device;
use candle_nn::VarBuilder;
use serde_json::Value;
use std::path::Path;
use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// (query, document) pairs per forward pass.
const MAX_BATCH: usize = 32;

/// What turns the head's logit into the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreActivation {
    /// `1 / (1 + e^-x)`: sentence-transformers' default for one label (bge-reranker).
    Sigmoid,
    /// The raw logit (ms-marco-MiniLM declares `torch.nn.modules.linear.Identity`).
    Identity,
    /// `tanh(x)`.
    Tanh,
}

impl ScoreActivation {
    fn from_path(path: &str) -> Result<Self> {
        match path.rsplit('.').next().unwrap_or(path) {
            "Sigmoid" => Ok(ScoreActivation::Sigmoid),
            "Identity" => Ok(ScoreActivation::Identity),
            "Tanh" => Ok(ScoreActivation::Tanh),
            other => Err(Error::bad_request(format!(
                "the cross-encoder declares activation {path} ({other}); this build supports \
                 Sigmoid, Identity and Tanh"
            ))),
        }
    }

    fn apply(self, x: f32) -> f32 {
        match self {
            ScoreActivation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            ScoreActivation::Identity => x,
            ScoreActivation::Tanh => x.tanh(),
        }
    }
}

/// The score head on the first token: dense + tanh, then one output. BERT calls the first
/// part its pooler (`bert.pooler.dense`, then `classifier`); XLM-RoBERTa's classification head
/// has both (`classifier.dense`, `classifier.out_proj`). The arithmetic is the same.
struct Head {
    /// `[hidden, hidden]`, stored `[out, in]`.
    dense_w: Vec<f32>,
    dense_b: Vec<f32>,
    /// `[hidden]`.
    out_w: Vec<f32>,
    out_b: f32,
}

impl Head {
    fn load(vb: &VarBuilder, dense: &str, out: &str, hidden: usize) -> candle_core::Result<Self> {
        let dense_w = vb
            .get((hidden, hidden), &format!("{dense}.weight"))?
            .flatten_all()?
            .to_vec1()?;
        Ok(Head {
            dense_w,
            dense_b: vb.get(hidden, &format!("{dense}.bias"))?.to_vec1()?,
            out_w: vb
                .get((1, hidden), &format!("{out}.weight"))?
                .flatten_all()?
                .to_vec1()?,
            out_b: vb.get(1, &format!("{out}.bias"))?.to_vec1::<f32>()?[0],
        })
    }

    /// The logit of each first-token row of `cls` (`[n, hidden]`).
    fn logits(&self, cls: &[f32], hidden: usize) -> Vec<f32> {
        let n = cls.len() / hidden;
        let mut pooled = Vec::new();
        kernels::linear(
            cls,
            &self.dense_w,
            Some(&self.dense_b),
            None,
            &mut pooled,
            (n, hidden, hidden),
        );
        pooled
            .chunks_exact(hidden)
            .map(|row| {
                row.iter()
                    .zip(&self.out_w)
                    .map(|(x, w)| x.tanh() * w)
                    .sum::<f32>()
                    + self.out_b
            })
            .collect()
    }
}

/// A loaded cross-encoder: weights, tokenizer, window length and activation.
pub struct CrossEncoder {
    encoder: Encoder,
    head: Head,
    /// Encodes single texts, never truncating.
    plain: Tokenizer,
    /// Joins pairs with the model's template, truncating longest-first to `max_len`.
    truncating: Tokenizer,
    max_len: usize,
    pair_specials: usize,
    activation: ScoreActivation,
}

impl CrossEncoder {
    /// Loads `dir` (config.json, tokenizer.json, model.safetensors or pytorch_model.bin).
    /// `max_tokens` (the family's, which Xinference hands to `CrossEncoder(max_length=...)`)
    /// sets the window, capped by what the position embeddings allow.
    pub fn load(dir: &Path, config: &Value, max_tokens: Option<usize>) -> Result<Self> {
        let architecture = config["architectures"][0].as_str().unwrap_or("");
        let model_type = config["model_type"].as_str().unwrap_or("");
        let num_labels = config["id2label"]
            .as_object()
            .map(|m| m.len())
            .or_else(|| config["num_labels"].as_u64().map(|n| n as usize))
            .unwrap_or(2);
        if num_labels != 1 {
            return Err(Error::bad_request(format!(
                "the cross-encoder in {} has {num_labels} labels; rerank needs a single-score head",
                dir.display()
            )));
        }
        let layout = match (architecture, model_type) {
            ("BertForSequenceClassification", _) | ("", "bert") => Layout::Bert,
            ("XLMRobertaForSequenceClassification", _) | ("", "xlm-roberta") => Layout::XlmRoberta,
            _ => {
                return Err(Error::bad_request(format!(
                    "rerank architecture `{architecture}` (model_type `{model_type}`, from {}) \
                     cannot be run by this build yet; supported: BertForSequenceClassification, \
                     XLMRobertaForSequenceClassification, and causal LMs as LLM rerankers",
                    dir.display()
                )))
            }
        };
        let vb = crate::embedding::weights(dir, &Device::Cpu)?;
        let encoder = load_encoder(dir, &vb, config, layout)?;
        let hidden = encoder.config().hidden;
        let (dense, out) = match layout {
            Layout::Bert => ("bert.pooler.dense", "classifier"),
            Layout::XlmRoberta => ("classifier.dense", "classifier.out_proj"),
        };
        let head = Head::load(&vb, dense, out, hidden).map_err(|e| {
            Error::bad_request(format!(
                "cannot load the {architecture} head from {}: {e}",
                dir.display()
            ))
        })?;
        let position_limit = encoder.config().max_tokens();
        let tokenizer_max = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["model_max_length"].as_f64())
            .filter(|n| *n > 0.0 && *n < 1e9)
            .map(|n| n as usize);
        let max_len = max_tokens
            .or(tokenizer_max)
            .unwrap_or(position_limit)
            .min(position_limit)
            .max(8);
        let mut plain = crate::tokenizer_file::load(dir.join("tokenizer.json")).map_err(|e| {
            Error::bad_request(format!("cannot read {}/tokenizer.json: {e}", dir.display()))
        })?;
        plain
            .with_truncation(None)
            .map_err(|e| Error::internal(format!("tokenizer truncation: {e}")))?;
        plain.with_padding(None);
        let mut truncating = plain.clone();
        truncating
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::internal(format!("tokenizer truncation: {e}")))?;
        let pair_specials = plain
            .get_post_processor()
            .map(|p| p.added_tokens(true))
            .unwrap_or(0);
        Ok(CrossEncoder {
            encoder,
            head,
            plain,
            truncating,
            max_len,
            pair_specials,
            activation: activation(dir, config)?,
        })
    }

    /// The longest input (query, document and special tokens) one forward pass reads.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The activation applied to the logits.
    pub fn activation(&self) -> ScoreActivation {
        self.activation
    }

    fn encode(&self, text: &str) -> Result<Encoding> {
        self.plain
            .encode(text, false)
            .map_err(|e| Error::bad_request(format!("cannot tokenize the input: {e}")))
    }

    fn join(&self, query: Encoding, doc: Encoding) -> Result<Encoding> {
        self.truncating
            .post_process(query, Some(doc), true)
            .map_err(|e| Error::internal(format!("cannot join the query and document: {e}")))
    }

    /// The model inputs of one document: one pair, or one per chunk.
    fn inputs(&self, query: &Encoding, doc: &str, options: &ScoreOptions) -> Result<Vec<Encoding>> {
        let mut doc = self.encode(doc)?;
        if let Some(m) = options.max_tokens_per_doc {
            cut(&mut doc, m);
        }
        let Some(chunks) = options.max_chunks_per_doc else {
            return Ok(vec![self.join(query.clone(), doc)?]);
        };
        let mut query = query.clone();
        cut(&mut query, self.max_len / 2);
        let room = self
            .max_len
            .saturating_sub(self.pair_specials + query.len())
            .max(1);
        doc.truncate(room, 0, TruncationDirection::Right);
        let rest = doc.take_overflowing();
        std::iter::once(doc)
            .chain(rest)
            .take(chunks.max(1))
            .map(|chunk| self.join(query.clone(), chunk))
            .collect()
    }

    /// The head's logits of a batch of joined pairs.
    fn forward_batch(&self, batch: &[&Encoding]) -> Result<Vec<f32>> {
        let ids: Vec<&[u32]> = batch.iter().map(|e| e.get_ids()).collect();
        let types: Vec<Vec<u32>> = batch.iter().map(|e| e.get_type_ids().to_vec()).collect();
        let packed = self.encoder.forward(&ids, Some(&types))?;
        let hidden = packed.width;
        let cls: Vec<f32> = (0..batch.len())
            .flat_map(|i| packed.sequence(i)[..hidden].iter().copied())
            .collect();
        Ok(self.head.logits(&cls, hidden))
    }
}

/// Cuts `e` to `len` tokens, dropping the rest.
fn cut(e: &mut Encoding, len: usize) {
    e.truncate(len, 0, TruncationDirection::Right);
    e.take_overflowing();
}

impl CrossEncoder {
    /// Scores the documents of several requests together: their (query, document) pairs go
    /// into the same length-sorted batches. A request whose input cannot be tokenized fails
    /// alone; a failed forward pass fails every request.
    fn score_jobs(&self, jobs: &[super::RerankJob]) -> Vec<Result<Vec<DocScore>>> {
        // Every model input, with the request and document it belongs to.
        let mut inputs: Vec<(usize, usize, Encoding)> = Vec::new();
        let mut out: Vec<Result<Vec<DocScore>>> = Vec::with_capacity(jobs.len());
        for (j, job) in jobs.iter().enumerate() {
            // Xinference's preprocess_sentence: the instruction is prepended to the query.
            let query = match &job.options.instruction {
                Some(i) => format!("{i}{}", job.query),
                None => job.query.clone(),
            };
            let built = self.encode(&query).and_then(|query| {
                let mut mine = Vec::new();
                for (d, doc) in job.documents.iter().enumerate() {
                    for e in self.inputs(&query, doc, &job.options)? {
                        mine.push((j, d, e));
                    }
                }
                Ok(mine)
            });
            match built {
                Ok(mine) => {
                    inputs.extend(mine);
                    out.push(Ok(vec![
                        DocScore {
                            score: f32::NEG_INFINITY,
                            tokens: 0,
                        };
                        job.documents.len()
                    ]));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        // Sort by length so each forward pass pads as little as possible.
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].2.len());
        for chunk in order.chunks(MAX_BATCH) {
            let batch: Vec<&Encoding> = chunk.iter().map(|&i| &inputs[i].2).collect();
            let logits = match crate::compute::with_budget(|| self.forward_batch(&batch)) {
                Ok(l) => l,
                Err(e) => return jobs.iter().map(|_| Err(e.clone())).collect(),
            };
            for (&i, logit) in chunk.iter().zip(logits) {
                let (j, d, e) = &inputs[i];
                if let Ok(scores) = &mut out[*j] {
                    let s = &mut scores[*d];
                    s.score = s.score.max(self.activation.apply(logit));
                    s.tokens += e.len();
                }
            }
        }
        out
    }
}

impl super::Rerank for CrossEncoder {
    fn score(
        &mut self,
        query: &str,
        documents: &[String],
        options: &ScoreOptions,
    ) -> Result<Vec<DocScore>> {
        let job = super::RerankJob {
            query: query.to_owned(),
            documents: documents.to_vec(),
            options: options.clone(),
        };
        self.score_jobs(std::slice::from_ref(&job))
            .pop()
            .expect("one result per job")
    }

    fn score_many(&mut self, jobs: &[super::RerankJob]) -> Vec<Result<Vec<DocScore>>> {
        self.score_jobs(jobs)
    }
}

/// The activation sentence-transformers' CrossEncoder would use for this folder.
fn activation(dir: &Path, config: &Value) -> Result<ScoreActivation> {
    let st_config = std::fs::read_to_string(dir.join("config_sentence_transformers.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let declared = st_config
        .as_ref()
        .and_then(|c| c["activation_fn"].as_str())
        .or_else(|| config["sentence_transformers"]["activation_fn"].as_str())
        .or_else(|| config["sbert_ce_default_activation_function"].as_str());
    match declared {
        Some(path) => ScoreActivation::from_path(path),
        None => Ok(ScoreActivation::Sigmoid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_follow_sentence_transformers_names() {
        let a = ScoreActivation::from_path("torch.nn.modules.linear.Identity").unwrap();
        assert_eq!(a, ScoreActivation::Identity);
        let s = ScoreActivation::from_path("torch.nn.modules.activation.Sigmoid").unwrap();
        assert!((s.apply(0.0) - 0.5).abs() < 1e-7);
        assert!(ScoreActivation::from_path("my.Custom").is_err());
    }
}
