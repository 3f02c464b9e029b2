//! GGUF models: the architecture is read from `general.architecture`, never guessed from file
//! names. Llama-layout families (llama, mistral, qwen2), Qwen3, Gemma 3, SmolLM3, Phi-3, GLM-4
//! and the mixtures of experts (Qwen3 MoE, GLM-4.5, gpt-oss) load into our own decoder
//! (`architectures/`, fast prompts); a variant it does not run falls back to candle's quantized
//! model of the family where candle has one.
//! The tokenizer and chat
//! template come from the GGUF metadata unless a `tokenizer.json` / `tokenizer_config.json`
//! sits beside the file.

use crate::llm::architectures::{Gemma4Decoder, GgufDecoder};
use crate::llm::model::{CausalLm, LlmParts};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use std::path::{Path, PathBuf};

/// A quantized causal LM of one of the supported families. Holds its own KV cache.
pub enum QuantizedModel {
    /// Llama 2/3, SmolLM2, Mistral (llama layout).
    Llama(quantized_llama::ModelWeights),
    /// Qwen2 / Qwen2.5.
    Qwen2(quantized_qwen2::ModelWeights),
    /// Qwen3.
    Qwen3(quantized_qwen3::ModelWeights),
}

impl CausalLm for QuantizedModel {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>> {
        if position == 0 {
            self.clear_cache();
        }
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = match self {
            QuantizedModel::Llama(m) => m.forward(&input, position)?,
            QuantizedModel::Qwen2(m) => m.forward(&input, position)?,
            QuantizedModel::Qwen3(m) => m.forward(&input, position)?,
        };
        let logits = logits.squeeze(0)?;
        // Some families return every position; keep the last.
        let logits = if logits.rank() == 2 {
            logits.get(logits.dim(0)? - 1)?
        } else {
            logits
        };
        Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec1()?)
    }

    fn fork(&self) -> Option<Box<dyn CausalLm>> {
        // Clones share the weights (reference-counted tensors) and get their own cache.
        let mut copy = match self {
            QuantizedModel::Llama(m) => QuantizedModel::Llama(m.clone()),
            QuantizedModel::Qwen3(m) => QuantizedModel::Qwen3(m.clone()),
            // candle's quantized Qwen2 cannot be cloned.
            QuantizedModel::Qwen2(_) => return None,
        };
        copy.clear_cache();
        Some(Box::new(copy))
    }
}

impl QuantizedModel {
    fn clear_cache(&mut self) {
        match self {
            QuantizedModel::Llama(m) => m.clear_kv_cache(),
            QuantizedModel::Qwen2(m) => m.clear_kv_cache(),
            QuantizedModel::Qwen3(m) => m.clear_kv_cache(),
        }
    }
}

/// The families on candle's quantized models (those [`crate::llm::architectures`] does not run).
fn candle_model<R: std::io::Read + std::io::Seek>(
    ct: Content,
    file: &mut R,
    architecture: &str,
) -> Result<QuantizedModel> {
    let device = Device::Cpu;
    Ok(match architecture {
        "llama" | "mistral" => {
            QuantizedModel::Llama(quantized_llama::ModelWeights::from_gguf(ct, file, &device)?)
        }
        "qwen2" => {
            QuantizedModel::Qwen2(quantized_qwen2::ModelWeights::from_gguf(ct, file, &device)?)
        }
        "qwen3" => {
            QuantizedModel::Qwen3(quantized_qwen3::ModelWeights::from_gguf(ct, file, &device)?)
        }
        // candle's quantized Gemma 3 runs its feed-forward through SiLU, not GELU: only ours.
        "gemma3" => {
            return Err(Error::bad_request(
                "this gemma3 GGUF lacks the q/k norms or post norms of Gemma 3",
            ))
        }
        // Only ours (see architectures/phi3.rs, glm4.rs and smollm3.rs for what they run).
        "phi3" => {
            return Err(Error::bad_request(
                "this phi3 GGUF is not one this build runs (LongRoPE 128k models and mixtures of \
                 experts are not supported yet)",
            ))
        }
        "glm4" => {
            return Err(Error::bad_request(
                "this glm4 GGUF is not one this build runs (the vision variants' multi-section \
                 rotary is not supported)",
            ))
        }
        "glm4moe" => {
            return Err(Error::bad_request(
                "this glm4moe GGUF is not one this build runs (the vision variants' multi-section \
                 rotary is not supported)",
            ))
        }
        "smollm3" => {
            return Err(Error::bad_request(
                "this smollm3 GGUF lacks the separate q/k/v or gated feed-forward of SmolLM3",
            ))
        }
        "qwen35" | "qwen35moe" => {
            return Err(Error::bad_request(
                "this Qwen3.5 GGUF lacks the Gated DeltaNet sizes (ssm.*), or its feed-forward is \
                 not the one its architecture names",
            ))
        }
        other => {
            return Err(Error::bad_request(format!(
                "GGUF architecture `{other}` cannot be run by this build yet (supported: {})",
                GGUF_ARCHITECTURES.join(", ")
            )))
        }
    })
}

/// Architectures this build loads from GGUF.
pub const GGUF_ARCHITECTURES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma3",
    "phi3",
    "glm4",
    "smollm3",
    "qwen3moe",
    "glm4moe",
    "gpt-oss",
    "qwen35",
    "qwen35moe",
    "gemma4",
];

/// Finds the `.gguf` file at `path` (the file itself, or the only/first one in a folder: the
/// first part of a split GGUF sorts first).
pub fn find_gguf(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::bad_request(format!("cannot read {}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| Error::bad_request(format!("no .gguf file in {}", path.display())))
}

fn meta_u32(ct: &Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn meta_bool(ct: &Content, key: &str) -> Option<bool> {
    match ct.metadata.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// Frees the vocabulary tables of the GGUF metadata once the tokenizer holds them: the weights
/// never read them, and as one enum value per token (Gemma 3: 262k tokens, scores and types,
/// ~34 MB) they would otherwise stay allocated while every tensor loads.
fn drop_vocabulary(ct: &mut Content) {
    for key in [
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
    ] {
        ct.metadata.remove(key);
    }
}

/// Loads a GGUF model from `path` (a file, or a folder holding one).
pub fn load_gguf(path: &Path) -> Result<LlmParts> {
    let file_path = find_gguf(path)?;
    // A split GGUF (`-00001-of-0000N.gguf`) reads as one file over its parts.
    let (mut ct, mut file) = super::split::open(&file_path)?;
    let architecture = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| Error::bad_request("the GGUF file has no general.architecture"))?;
    let context_length =
        meta_u32(&ct, &format!("{architecture}.context_length")).unwrap_or(2048) as usize;
    let bos_token_id = meta_u32(&ct, "tokenizer.ggml.bos_token_id");
    let mut eos_token_ids: Vec<u32> = [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ]
    .iter()
    .filter_map(|k| meta_u32(&ct, k))
    .collect();
    eos_token_ids.dedup();
    let add_bos = meta_bool(&ct, "tokenizer.ggml.add_bos_token").unwrap_or(!matches!(
        architecture.as_str(),
        "qwen2" | "qwen3" | "qwen3moe" | "qwen35" | "qwen35moe"
    ));
    let chat_template = ct
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    let suppressed_token_ids = match ct.metadata.get("tokenizer.ggml.suppress_tokens") {
        Some(candle_core::quantized::gguf_file::Value::Array(ids)) => ids
            .iter()
            .filter_map(|v| crate::llm::architectures::value_usize(v).ok())
            .map(|id| id as u32)
            .collect(),
        _ => Vec::new(),
    };
    let dir = file_path.parent().unwrap_or(Path::new("."));
    let tokenizer = match crate::tokenizer_file::load(dir.join("tokenizer.json")) {
        Ok(t) => t.into(),
        Err(_) => super::gguf_tokenizer::tokenizer_from_gguf(&ct)?,
    };
    drop_vocabulary(&mut ct);
    // Gemma's turns end with `<end_of_turn>`, which its GGUFs do not name as EOS/EOT; llama.cpp
    // ends generation on it by its text.
    let turn_end = match architecture.as_str() {
        "gemma3" => Some("<end_of_turn>"),
        "gemma4" => Some("<turn|>"),
        _ => None,
    };
    if let Some(turn_end) = turn_end {
        if let Some(id) = tokenizer.token_to_id(turn_end) {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    let model: Box<dyn CausalLm> = if architecture == "gemma4" {
        Box::new(Gemma4Decoder::load(&ct, &mut file)?)
    } else if GgufDecoder::supports(&ct, &architecture) {
        Box::new(GgufDecoder::load(&ct, &mut file, &architecture)?)
    } else {
        Box::new(candle_model(ct, &mut file, &architecture)?)
    };
    Ok(LlmParts {
        model,
        architecture,
        tokenizer,
        chat_template,
        bos_token_id,
        eos_token_ids,
        add_bos,
        context_length,
        suppressed_token_ids,
    })
}
