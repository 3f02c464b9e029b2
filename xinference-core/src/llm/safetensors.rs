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

use super::engine::LlmParts;
use crate::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Activation, VarBuilder};
use candle_transformers::models::{llama, qwen2, qwen3};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

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

impl super::CausalLm for SafetensorsModel {
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

    fn fork(&self) -> Option<Box<dyn super::CausalLm>> {
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
/// [`LlmEngine`](super::LlmEngine): weights (in f32), tokenizer, chat template, BOS/EOS ids,
/// whether prompts start with BOS, and the context length (`max_position_embeddings`).
///
/// Errors are 400s that name the problem: not a folder, no `config.json`, an unsupported
/// `model_type` or configuration, missing weight or tokenizer files, weights that do not match
/// the configuration.
pub fn load_safetensors(dir: &Path) -> Result<LlmParts> {
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
    // The tokenizer first: a folder without one fails before its weights are read.
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(Error::bad_request(format!(
            "no tokenizer.json in {}: only fast (tokenizers) tokenizers can be loaded",
            dir.display()
        )));
    }
    let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
        Error::bad_request(format!("cannot load {}: {e}", tokenizer_path.display()))
    })?;
    let files = weight_files(dir)?;
    // SAFETY: the files are memory-mapped read-only and copied into f32 tensors while loading;
    // model files are not modified while they are being loaded.
    let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
        Error::bad_request(format!(
            "cannot read the safetensors weights in {}: {e}",
            dir.display()
        ))
    })?;
    let has_lm_head = st.get("lm_head.weight").is_ok();
    let cfg = Cfg(&config);
    let max_position = cfg.usize("max_position_embeddings")?;
    if max_position == 0 {
        return Err(cfg.invalid("max_position_embeddings", "at least 1"));
    }
    let bad_weights = |e: candle_core::Error| {
        Error::bad_request(format!(
            "the weights in {} do not match its config.json ({model_type}): {e}",
            dir.display()
        ))
    };
    let model = match model_type.as_str() {
        "llama" => {
            let c = llama_config(&cfg, has_lm_head)?;
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
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                llama::Llama::load(vb, &c)
            }))
            .map_err(|p| bad_weights(candle_core::Error::Msg(crate::runtime::panic_text(&p))))?
            .map_err(bad_weights)?;
            let empty = llama::Cache::new(true, DType::F32, &c, &Device::Cpu)?;
            SafetensorsModel::Llama {
                model: loaded,
                cache: empty.clone(),
                empty,
            }
        }
        "qwen2" => {
            let c = qwen2_config(&cfg)?;
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
            SafetensorsModel::Qwen2(qwen2::ModelForCausalLM::new(&c, vb).map_err(bad_weights)?)
        }
        "qwen3" => {
            let c = qwen3_config(&cfg, has_lm_head)?;
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
            SafetensorsModel::Qwen3(qwen3::ModelForCausalLM::new(&c, vb).map_err(bad_weights)?)
        }
        other => {
            return Err(Error::bad_request(format!(
                "model_type {other} cannot be run as safetensors"
            )))
        }
    };

    let tok_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let gen_config = read_json(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
    let special = special_tokens(&tokenizer, &config, &tok_config, &gen_config, &model_type);
    Ok(LlmParts {
        model: Box::new(model),
        architecture: model_type,
        chat_template: chat_template(dir, &tok_config)?,
        tokenizer,
        bos_token_id: special.bos,
        eos_token_ids: special.eos,
        add_bos: special.add_bos,
        context_length: max_position,
    })
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::bad_request(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::bad_request(format!("{} is not valid JSON: {e}", path.display())))
}

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

/// Typed reads of `config.json` with 400s that name the field.
struct Cfg<'a>(&'a Value);

impl Cfg<'_> {
    fn invalid(&self, key: &str, want: &str) -> Error {
        Error::bad_request(format!(
            "config.json: `{key}` must be {want} (found {})",
            self.0.get(key).unwrap_or(&Value::Null)
        ))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.invalid(key, "a non-negative integer"))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.invalid(key, "a non-negative integer")),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.invalid(key, "a number")),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.invalid(key, "true or false")),
        }
    }

    fn activation(&self) -> Result<Activation> {
        let v = self
            .0
            .get("hidden_act")
            .cloned()
            .unwrap_or(Value::from("silu"));
        serde_json::from_value(v).map_err(|_| self.invalid("hidden_act", "a known activation"))
    }

    /// Heads: `(num_attention_heads, num_key_value_heads)`, checked against each other and
    /// against `hidden_size` when the family derives its head size from it.
    fn heads(&self, hidden: usize, head_dim_from_hidden: bool) -> Result<(usize, usize)> {
        let heads = self.usize("num_attention_heads")?;
        let kv = self.opt_usize("num_key_value_heads")?.unwrap_or(heads);
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            return Err(Error::bad_request(format!(
                "config.json: num_attention_heads ({heads}) must be a positive multiple of \
                 num_key_value_heads ({kv})"
            )));
        }
        if head_dim_from_hidden {
            if !hidden.is_multiple_of(heads) {
                return Err(Error::bad_request(format!(
                    "config.json: hidden_size ({hidden}) is not a multiple of \
                     num_attention_heads ({heads})"
                )));
            }
            if let Some(d) = self.opt_usize("head_dim")? {
                if d != hidden / heads {
                    return Err(Error::bad_request(format!(
                        "config.json: head_dim {d} differs from hidden_size / num_attention_heads \
                         ({}); this build cannot run such a model as safetensors yet",
                        hidden / heads
                    )));
                }
            }
        }
        Ok((heads, kv))
    }

    /// RoPE settings: `rope_theta` (top level, or inside Transformers 5's `rope_parameters`)
    /// and the scaling block (`rope_scaling`, or `rope_parameters` when its type is not
    /// `default`).
    fn rope(&self, default_theta: f64) -> Result<(f64, Option<Value>)> {
        let params = self.0.get("rope_parameters").filter(|v| v.is_object());
        let theta = match (self.0.get("rope_theta"), params) {
            (Some(v), _) if !v.is_null() => v
                .as_f64()
                .ok_or_else(|| self.invalid("rope_theta", "a number"))?,
            (_, Some(p)) => p
                .get("rope_theta")
                .and_then(Value::as_f64)
                .unwrap_or(default_theta),
            _ => default_theta,
        };
        let scaling = self
            .0
            .get("rope_scaling")
            .filter(|v| v.is_object())
            .or(params)
            .filter(|s| {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str);
                !matches!(kind, None | Some("default"))
            })
            .cloned();
        Ok((theta, scaling))
    }

    fn no_rope_scaling(&self, scaling: Option<Value>, family: &str) -> Result<()> {
        match scaling {
            None => Ok(()),
            Some(s) => Err(Error::bad_request(format!(
                "config.json: RoPE scaling {s} is not supported for {family} as safetensors yet"
            ))),
        }
    }
}

fn llama_config(cfg: &Cfg, has_lm_head: bool) -> Result<llama::Config> {
    let hidden = cfg.usize("hidden_size")?;
    let (heads, kv) = cfg.heads(hidden, true)?;
    for key in ["attention_bias", "mlp_bias"] {
        if cfg.bool_or(key, false)? {
            return Err(Error::bad_request(format!(
                "config.json: `{key}: true` is not supported for llama as safetensors yet"
            )));
        }
    }
    if cfg.activation()? != Activation::Silu {
        return Err(cfg.invalid("hidden_act", "silu for llama"));
    }
    let (theta, scaling) = cfg.rope(10_000.0)?;
    let rope_scaling = match scaling {
        None => None,
        Some(s)
            if s.get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str)
                == Some("llama3") =>
        {
            let num = |k: &str| {
                s.get(k).and_then(Value::as_f64).ok_or_else(|| {
                    Error::bad_request(format!("config.json: llama3 RoPE scaling needs `{k}`"))
                })
            };
            Some(llama::Llama3RopeConfig {
                factor: num("factor")? as f32,
                low_freq_factor: num("low_freq_factor")? as f32,
                high_freq_factor: num("high_freq_factor")? as f32,
                original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
                rope_type: llama::Llama3RopeType::Llama3,
            })
        }
        s => {
            cfg.no_rope_scaling(s, "llama")?;
            None
        }
    };
    Ok(llama::Config {
        hidden_size: hidden,
        intermediate_size: cfg.usize("intermediate_size")?,
        vocab_size: cfg.usize("vocab_size")?,
        num_hidden_layers: cfg.usize("num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        use_flash_attn: false,
        rms_norm_eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
        rope_theta: theta as f32,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling,
        max_position_embeddings: cfg.usize("max_position_embeddings")?,
        // A checkpoint without lm_head.weight can only mean tied embeddings.
        tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)? || !has_lm_head,
    })
}

fn qwen2_config(cfg: &Cfg) -> Result<qwen2::Config> {
    let hidden = cfg.usize("hidden_size")?;
    let (heads, kv) = cfg.heads(hidden, true)?;
    let (theta, scaling) = cfg.rope(10_000.0)?;
    cfg.no_rope_scaling(scaling, "qwen2")?;
    let layers = cfg.usize("num_hidden_layers")?;
    let max_position = cfg.usize("max_position_embeddings")?;
    let max_window_layers = cfg.opt_usize("max_window_layers")?.unwrap_or(layers);
    // Transformers slides the window only in layers from `max_window_layers` on; candle would
    // slide it in every layer, so only a model whose layers all attend fully can run.
    if cfg.bool_or("use_sliding_window", false)? && max_window_layers < layers {
        return Err(Error::bad_request(
            "config.json: sliding-window attention (use_sliding_window) is not supported for \
             qwen2 as safetensors yet",
        ));
    }
    Ok(qwen2::Config {
        vocab_size: cfg.usize("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: cfg.usize("intermediate_size")?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        max_position_embeddings: max_position,
        // A window as long as the context never hides anything.
        sliding_window: max_position,
        max_window_layers,
        tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)?,
        rope_theta: theta,
        rms_norm_eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
        use_sliding_window: false,
        hidden_act: cfg.activation()?,
    })
}

fn qwen3_config(cfg: &Cfg, has_lm_head: bool) -> Result<qwen3::Config> {
    let hidden = cfg.usize("hidden_size")?;
    let (heads, kv) = cfg.heads(hidden, false)?;
    let head_dim = match cfg.opt_usize("head_dim")? {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => return Err(cfg.invalid("head_dim", "given when hidden_size / heads is not whole")),
    };
    let (theta, scaling) = cfg.rope(10_000.0)?;
    cfg.no_rope_scaling(scaling, "qwen3")?;
    if cfg.bool_or("use_sliding_window", false)? {
        return Err(Error::bad_request(
            "config.json: sliding-window attention (use_sliding_window) is not supported for \
             qwen3 as safetensors yet",
        ));
    }
    let layers = cfg.usize("num_hidden_layers")?;
    Ok(qwen3::Config {
        vocab_size: cfg.usize("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: cfg.usize("intermediate_size")?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        head_dim,
        attention_bias: cfg.bool_or("attention_bias", false)?,
        num_key_value_heads: kv,
        max_position_embeddings: cfg.usize("max_position_embeddings")?,
        sliding_window: None,
        max_window_layers: cfg.opt_usize("max_window_layers")?.unwrap_or(layers),
        // A checkpoint without lm_head.weight can only mean tied embeddings.
        tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)? || !has_lm_head,
        rope_theta: theta,
        rms_norm_eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
        use_sliding_window: false,
        hidden_act: cfg.activation()?,
    })
}

/// The tensor shapes a configuration implies.
struct Dims {
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    /// Rows of q_proj: heads x head size.
    q: usize,
    /// Rows of k_proj and v_proj: key-value heads x head size.
    kv: usize,
    qkv_bias: bool,
    o_bias: bool,
    /// The head size, for families with per-head q/k RMS norms (Qwen3).
    qk_norm: Option<usize>,
    lm_head: bool,
}

/// Checks from the safetensors headers (nothing is read yet) that every tensor the
/// configuration implies is there with its shape, so that a truncated or mismatched checkpoint
/// is a clear 400 (candle's Llama loader would panic on it).
fn check_tensors(st: &MmapedSafetensors, d: &Dims) -> Result<()> {
    let mut want: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![d.vocab, d.hidden]),
        ("model.norm.weight".into(), vec![d.hidden]),
    ];
    if d.lm_head {
        want.push(("lm_head.weight".into(), vec![d.vocab, d.hidden]));
    }
    for i in 0..d.layers {
        let mut layer: Vec<(&str, Vec<usize>)> = vec![
            ("self_attn.q_proj.weight", vec![d.q, d.hidden]),
            ("self_attn.k_proj.weight", vec![d.kv, d.hidden]),
            ("self_attn.v_proj.weight", vec![d.kv, d.hidden]),
            ("self_attn.o_proj.weight", vec![d.hidden, d.q]),
            ("mlp.gate_proj.weight", vec![d.intermediate, d.hidden]),
            ("mlp.up_proj.weight", vec![d.intermediate, d.hidden]),
            ("mlp.down_proj.weight", vec![d.hidden, d.intermediate]),
            ("input_layernorm.weight", vec![d.hidden]),
            ("post_attention_layernorm.weight", vec![d.hidden]),
        ];
        if d.qkv_bias {
            layer.extend([
                ("self_attn.q_proj.bias", vec![d.q]),
                ("self_attn.k_proj.bias", vec![d.kv]),
                ("self_attn.v_proj.bias", vec![d.kv]),
            ]);
        }
        if d.o_bias {
            layer.push(("self_attn.o_proj.bias", vec![d.hidden]));
        }
        if let Some(head) = d.qk_norm {
            layer.extend([
                ("self_attn.q_norm.weight", vec![head]),
                ("self_attn.k_norm.weight", vec![head]),
            ]);
        }
        want.extend(
            layer
                .into_iter()
                .map(|(n, shape)| (format!("model.layers.{i}.{n}"), shape)),
        );
    }
    for (name, shape) in &want {
        let view = st.get(name).map_err(|_| {
            Error::bad_request(format!(
                "the safetensors weights have no tensor `{name}` (config.json asks for {} layers)",
                d.layers
            ))
        })?;
        if view.shape() != shape.as_slice() {
            return Err(Error::bad_request(format!(
                "the weights do not match its config.json: tensor `{name}` has shape {:?}, \
                 config.json implies {shape:?}",
                view.shape()
            )));
        }
    }
    Ok(())
}

/// BOS/EOS and whether prompts start with BOS.
struct SpecialTokens {
    bos: Option<u32>,
    eos: Vec<u32>,
    add_bos: bool,
}

/// A token id from a `tokenizer_config.json` entry: `"<s>"` or `{"content": "<s>", ...}`.
fn config_token(tokenizer: &Tokenizer, v: &Value) -> Option<u32> {
    let text = v
        .as_str()
        .or_else(|| v.get("content").and_then(Value::as_str))?;
    tokenizer.token_to_id(text)
}

/// Token ids of `key` in a config: one id or a list.
fn config_ids(config: &Value, key: &str) -> Vec<u32> {
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

fn special_tokens(
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
fn post_processor_adds(tokenizer: &Tokenizer, bos: u32) -> bool {
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
fn chat_template(dir: &Path, tok_config: &Value) -> Result<Option<String>> {
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

    #[test]
    fn rope_settings_in_both_config_layouts() {
        let old =
            json!({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}});
        let (theta, scaling) = Cfg(&old).rope(1.0).unwrap();
        assert_eq!(theta, 500000.0);
        assert_eq!(scaling.unwrap()["factor"], 8.0);
        let new = json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}});
        assert_eq!(Cfg(&new).rope(1.0).unwrap(), (1e6, None));
        let none = json!({"rope_scaling": null});
        assert_eq!(Cfg(&none).rope(10.0).unwrap(), (10.0, None));
    }
}
