//! Hugging Face safetensors models (Xinference's `pytorch` format, engine `Transformers`): a
//! folder with `config.json`, `model.safetensors` (or shards listed by
//! `model.safetensors.index.json`), `tokenizer.json` and usually `tokenizer_config.json` and
//! `generation_config.json`.
//!
//! The family comes from `config.json` (`model_type`, else `architectures`), never from the
//! folder name, and runs on candle's model of that family: Llama, Qwen2 and Qwen3.
//!
//! **Precision.** Weights stored as bf16 or f16 (`torch_dtype` / `dtype` in `config.json`) are
//! converted to f32 when loaded, and all compute is f32. On the CPU this is both faster (candle's
//! CPU kernels for half types are slow, and some of them accumulate in the half type) and more
//! accurate (candle's Qwen2 would otherwise build its RoPE tables in bf16, which cannot even
//! represent positions above 256 exactly); the price is twice the memory of the stored weights.
//! The result is what Transformers computes after `model.float()`.

mod config;
mod tokens;

use crate::llm::model::{CausalLm, LlmParts};
use crate::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, qwen2, qwen3};
use config::{check_tensors, llama_config, qwen2_config, qwen3_config, Cfg, Dims};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;
use tokens::{chat_template, special_tokens};

/// The `model_type`s this build loads from safetensors.
pub const SAFETENSORS_MODEL_TYPES: &[&str] = &["llama", "qwen2", "qwen3"];

/// A safetensors causal LM of one of the supported families, computing in f32 on the CPU.
/// Holds the KV cache of one sequence.
pub enum SafetensorsModel {
    /// Llama 2/3 layout (`LlamaForCausalLM`).
    Llama {
        /// The weights.
        model: llama::Llama,
        /// The cache of the current sequence.
        cache: llama::Cache,
        /// An empty cache (with its RoPE tables) to start a new sequence from.
        empty: llama::Cache,
    },
    /// Qwen2 / Qwen2.5 (`Qwen2ForCausalLM`).
    Qwen2(qwen2::ModelForCausalLM),
    /// Qwen3 (`Qwen3ForCausalLM`).
    Qwen3(qwen3::ModelForCausalLM),
}

impl SafetensorsModel {
    fn clear_cache(&mut self) {
        match self {
            // candle's llama cache has no reset: start again from the empty one.
            SafetensorsModel::Llama { cache, empty, .. } => *cache = empty.clone(),
            SafetensorsModel::Qwen2(m) => m.clear_kv_cache(),
            SafetensorsModel::Qwen3(m) => m.clear_kv_cache(),
        }
    }
}

impl CausalLm for SafetensorsModel {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::bad_request("no tokens to run the model on"));
        }
        if position == 0 {
            self.clear_cache();
        }
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = match self {
            // (1, vocab): candle's llama keeps only the last position.
            SafetensorsModel::Llama { model, cache, .. } => {
                model.forward(&input, position, cache)?
            }
            // (1, 1, vocab).
            SafetensorsModel::Qwen2(m) => m.forward(&input, position)?,
            SafetensorsModel::Qwen3(m) => m.forward(&input, position)?,
        };
        Ok(logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
    }

    fn fork(&self) -> Option<Box<dyn CausalLm>> {
        // Clones share the weights (reference-counted tensors); each gets an empty cache.
        let mut copy = match self {
            SafetensorsModel::Llama { model, empty, .. } => SafetensorsModel::Llama {
                model: model.clone(),
                cache: empty.clone(),
                empty: empty.clone(),
            },
            SafetensorsModel::Qwen2(m) => SafetensorsModel::Qwen2(m.clone()),
            SafetensorsModel::Qwen3(m) => SafetensorsModel::Qwen3(m.clone()),
        };
        copy.clear_cache();
        Some(Box::new(copy))
    }
}

/// Whether the model at `path` should be loaded from safetensors rather than GGUF. What the path
/// holds decides: a file, or a folder with `.gguf` files and no `config.json`, is GGUF; a folder
/// with `config.json` and no `.gguf` file is safetensors. When a folder holds both or neither,
/// `model_format` decides (`pytorch` is safetensors, anything else GGUF).
pub fn is_safetensors_model(path: &Path, model_format: &str) -> bool {
    if !path.is_dir() {
        return false;
    }
    let has_config = path.join("config.json").is_file();
    let has_gguf = std::fs::read_dir(path)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
            })
        })
        .unwrap_or(false);
    match (has_config, has_gguf) {
        (true, false) => true,
        (false, true) => false,
        _ => model_format.eq_ignore_ascii_case("pytorch"),
    }
}

/// Loads a Hugging Face safetensors model folder into the parts of an
/// [`LlmEngine`](crate::llm::LlmEngine): weights (in f32), tokenizer, chat template, BOS/EOS ids,
/// whether prompts start with BOS, and the context length (`max_position_embeddings`).
///
/// Errors are 400s that name the problem: not a folder, no `config.json`, an unsupported
/// `model_type` or configuration, missing weight or tokenizer files, weights that do not match
/// the configuration.
pub fn load_safetensors(dir: &Path) -> Result<LlmParts> {
    let (config, model_type) = read_config(dir)?;
    // The tokenizer first: a folder without one fails before its weights are read.
    let tokenizer = load_tokenizer(dir)?;
    let st = open_weights(dir)?;
    let cfg = Cfg(&config);
    let context_length = context_length(&cfg)?;
    let model = load_model(dir, &model_type, &cfg, st)?;
    assemble_parts(dir, model, model_type, tokenizer, &config, context_length)
}

/// Reads `config.json` of the folder `dir` and checks what can be checked before anything else
/// is read: the family (returned beside the config), the stored dtype, and no quantization.
fn read_config(dir: &Path) -> Result<(Value, String)> {
    if !dir.is_dir() {
        return Err(Error::bad_request(format!(
            "{} is not a folder: a safetensors model is a folder with config.json, \
             model.safetensors and tokenizer.json",
            dir.display()
        )));
    }
    let config = read_json(&dir.join("config.json"))?.ok_or_else(|| {
        Error::bad_request(format!(
            "no config.json in {}: not a Hugging Face model folder",
            dir.display()
        ))
    })?;
    let model_type = model_type(&config)?;
    check_dtype(&config)?;
    if config
        .get("quantization_config")
        .is_some_and(|q| !q.is_null())
    {
        return Err(Error::bad_request(format!(
            "{}: quantized safetensors (config.json has a quantization_config) cannot be run by \
             this build; use the unquantized weights or a GGUF file",
            dir.display()
        )));
    }
    Ok((config, model_type))
}

/// Loads `tokenizer.json` of the folder `dir` (only fast tokenizers can be loaded).
fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(Error::bad_request(format!(
            "no tokenizer.json in {}: only fast (tokenizers) tokenizers can be loaded",
            dir.display()
        )));
    }
    crate::tokenizer_file::load(&tokenizer_path)
        .map_err(|e| Error::bad_request(format!("cannot load {}: {e}", tokenizer_path.display())))
}

/// Memory-maps the safetensors weight files of the folder `dir` (one file or the shards of an
/// index).
fn open_weights(dir: &Path) -> Result<MmapedSafetensors> {
    let files = weight_files(dir)?;
    // SAFETY: the files are memory-mapped read-only and copied into f32 tensors while loading;
    // model files are not modified while they are being loaded.
    unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
        Error::bad_request(format!(
            "cannot read the safetensors weights in {}: {e}",
            dir.display()
        ))
    })
}

/// The context length: `max_position_embeddings`, at least 1.
fn context_length(cfg: &Cfg) -> Result<usize> {
    let max_position = cfg.usize("max_position_embeddings")?;
    if max_position == 0 {
        return Err(cfg.invalid("max_position_embeddings", "at least 1"));
    }
    Ok(max_position)
}

/// The 400 for weights in `dir` that do not match its `config.json` (family `model_type`).
fn weights_error(dir: &Path, model_type: &str) -> impl Fn(candle_core::Error) -> Error {
    let dir = dir.display().to_string();
    let model_type = model_type.to_owned();
    move |e| {
        Error::bad_request(format!(
            "the weights in {dir} do not match its config.json ({model_type}): {e}"
        ))
    }
}

/// Checks the tensor shapes against the configuration and loads the weights (as f32) on
/// candle's model of the family `model_type`.
fn load_model(
    dir: &Path,
    model_type: &str,
    cfg: &Cfg,
    st: MmapedSafetensors,
) -> Result<SafetensorsModel> {
    let has_lm_head = st.get("lm_head.weight").is_ok();
    let bad_weights = weights_error(dir, model_type);
    match model_type {
        "llama" => load_llama(cfg, st, has_lm_head, &bad_weights),
        "qwen2" => load_qwen2(cfg, st, has_lm_head, &bad_weights),
        "qwen3" => load_qwen3(cfg, st, has_lm_head, &bad_weights),
        other => Err(Error::bad_request(format!(
            "model_type {other} cannot be run as safetensors"
        ))),
    }
}

/// Loads a Llama model (with an empty cache to start sequences from).
fn load_llama(
    cfg: &Cfg,
    st: MmapedSafetensors,
    has_lm_head: bool,
    bad_weights: &impl Fn(candle_core::Error) -> Error,
) -> Result<SafetensorsModel> {
    let c = llama_config(cfg, has_lm_head)?;
    let head_dim = c.hidden_size / c.num_attention_heads;
    check_tensors(
        &st,
        &Dims {
            vocab: c.vocab_size,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            q: c.num_attention_heads * head_dim,
            kv: c.num_key_value_heads * head_dim,
            qkv_bias: false,
            o_bias: false,
            qk_norm: None,
            lm_head: !c.tie_word_embeddings,
        },
    )?;
    let vb = VarBuilder::from_backend(Box::new(st), DType::F32, Device::Cpu);
    // candle's Llama::load unwraps per-layer errors; the shapes were checked above,
    // and anything else it panics on is still a 400 rather than a dead loader.
    let loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| llama::Llama::load(vb, &c)))
            .map_err(|p| bad_weights(candle_core::Error::Msg(crate::error::panic_text(&p))))?
            .map_err(bad_weights)?;
    let empty = llama::Cache::new(true, DType::F32, &c, &Device::Cpu)?;
    Ok(SafetensorsModel::Llama {
        model: loaded,
        cache: empty.clone(),
        empty,
    })
}

/// Loads a Qwen2 / Qwen2.5 model.
fn load_qwen2(
    cfg: &Cfg,
    st: MmapedSafetensors,
    has_lm_head: bool,
    bad_weights: &impl Fn(candle_core::Error) -> Error,
) -> Result<SafetensorsModel> {
    let c = qwen2_config(cfg)?;
    let head_dim = c.hidden_size / c.num_attention_heads;
    check_tensors(
        &st,
        &Dims {
            vocab: c.vocab_size,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            q: c.num_attention_heads * head_dim,
            kv: c.num_key_value_heads * head_dim,
            qkv_bias: true,
            o_bias: false,
            qk_norm: None,
            // candle ties the embeddings exactly when lm_head.weight is absent.
            lm_head: has_lm_head,
        },
    )?;
    let vb = VarBuilder::from_backend(Box::new(st), DType::F32, Device::Cpu);
    Ok(SafetensorsModel::Qwen2(
        qwen2::ModelForCausalLM::new(&c, vb).map_err(bad_weights)?,
    ))
}

/// Loads a Qwen3 model.
fn load_qwen3(
    cfg: &Cfg,
    st: MmapedSafetensors,
    has_lm_head: bool,
    bad_weights: &impl Fn(candle_core::Error) -> Error,
) -> Result<SafetensorsModel> {
    let c = qwen3_config(cfg, has_lm_head)?;
    check_tensors(
        &st,
        &Dims {
            vocab: c.vocab_size,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            q: c.num_attention_heads * c.head_dim,
            kv: c.num_key_value_heads * c.head_dim,
            qkv_bias: c.attention_bias,
            o_bias: c.attention_bias,
            qk_norm: Some(c.head_dim),
            lm_head: !c.tie_word_embeddings,
        },
    )?;
    let vb = VarBuilder::from_backend(Box::new(st), DType::F32, Device::Cpu);
    Ok(SafetensorsModel::Qwen3(
        qwen3::ModelForCausalLM::new(&c, vb).map_err(bad_weights)?,
    ))
}

/// Assembles the loaded model and tokenizer with what `tokenizer_config.json` and
/// `generation_config.json` (both optional) add: the chat template and the BOS/EOS tokens.
fn assemble_parts(
    dir: &Path,
    model: SafetensorsModel,
    model_type: String,
    tokenizer: Tokenizer,
    config: &Value,
    context_length: usize,
) -> Result<LlmParts> {
    let tok_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let gen_config = read_json(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
    let special = special_tokens(&tokenizer, config, &tok_config, &gen_config, &model_type);
    Ok(LlmParts {
        model: Box::new(model),
        architecture: model_type,
        chat_template: chat_template(dir, &tok_config)?,
        tokenizer,
        bos_token_id: special.bos,
        eos_token_ids: special.eos,
        add_bos: special.add_bos,
        context_length,
    })
}

// A model folder's JSON file, `None` when the folder lacks it (the crate's one reader).
pub(super) use crate::files::read_optional_json as read_json;

/// The family: `model_type`, else the first of `architectures`.
fn model_type(config: &Value) -> Result<String> {
    let from_arch = |a: &str| match a {
        "LlamaForCausalLM" => Some("llama"),
        "Qwen2ForCausalLM" => Some("qwen2"),
        "Qwen3ForCausalLM" => Some("qwen3"),
        _ => None,
    };
    let model_type = config.get("model_type").and_then(Value::as_str);
    let arch = config
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    let found = match (model_type, arch) {
        (Some(t), _) => t.to_owned(),
        (None, Some(a)) => from_arch(a).map(str::to_owned).ok_or_else(|| {
            Error::bad_request(format!(
                "config.json: architecture `{a}` cannot be run by this build yet as safetensors \
                 (supported model_type: {})",
                SAFETENSORS_MODEL_TYPES.join(", ")
            ))
        })?,
        (None, None) => {
            return Err(Error::bad_request(
                "config.json has neither `model_type` nor `architectures`",
            ))
        }
    };
    if !SAFETENSORS_MODEL_TYPES.contains(&found.as_str()) {
        return Err(Error::bad_request(format!(
            "config.json: model_type `{found}` cannot be run by this build yet as safetensors \
             (supported: {})",
            SAFETENSORS_MODEL_TYPES.join(", ")
        )));
    }
    Ok(found)
}

/// The stored dtype must be a float type candle reads (it is converted to f32 either way).
fn check_dtype(config: &Value) -> Result<()> {
    let dtype = config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .and_then(Value::as_str);
    match dtype {
        None | Some("float32" | "bfloat16" | "float16" | "auto") => Ok(()),
        Some(other) => Err(Error::bad_request(format!(
            "config.json: torch_dtype `{other}` is not supported (float32, bfloat16 or float16)"
        ))),
    }
}

/// The safetensors files: the shards named by `model.safetensors.index.json`, else
/// `model.safetensors`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join("model.safetensors.index.json");
    let files = if let Some(index) = read_json(&index_path)? {
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Error::bad_request(format!("{} has no weight_map", index_path.display()))
            })?;
        let mut names: Vec<&str> = map.values().filter_map(Value::as_str).collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return Err(Error::bad_request(format!(
                "{} lists no weight files",
                index_path.display()
            )));
        }
        names.into_iter().map(|n| dir.join(n)).collect()
    } else if dir.join("model.safetensors").is_file() {
        vec![dir.join("model.safetensors")]
    } else {
        let other = ["pytorch_model.bin", "pytorch_model.bin.index.json"]
            .iter()
            .any(|f| dir.join(f).exists());
        return Err(Error::bad_request(if other {
            format!(
                "{} has PyTorch .bin weights only; this build loads safetensors \
                 (model.safetensors or model.safetensors.index.json)",
                dir.display()
            )
        } else {
            format!(
                "no model.safetensors or model.safetensors.index.json in {}",
                dir.display()
            )
        }));
    };
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(Error::bad_request(format!(
            "weight file {} is missing",
            missing.display()
        )));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_decides_the_format_then_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert!(is_safetensors_model(p, "pytorch"));
        assert!(!is_safetensors_model(p, "ggufv2"));
        std::fs::write(p.join("config.json"), "{}").unwrap();
        assert!(is_safetensors_model(p, "ggufv2"));
        std::fs::write(p.join("m.gguf"), "").unwrap();
        assert!(is_safetensors_model(p, "pytorch"));
        assert!(!is_safetensors_model(p, "ggufv2"));
        assert!(!is_safetensors_model(&p.join("m.gguf"), "pytorch"));
        std::fs::remove_file(p.join("config.json")).unwrap();
        assert!(!is_safetensors_model(p, "pytorch"));
    }
}
