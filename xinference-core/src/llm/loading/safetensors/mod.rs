//! Hugging Face safetensors models (Xinference's `pytorch` format, engine `Transformers`): a
//! folder with `config.json`, `model.safetensors` (or shards listed by
//! `model.safetensors.index.json`), `tokenizer.json` and usually `tokenizer_config.json` and
//! `generation_config.json`.
//!
//! The family comes from `config.json` (`model_type`, else `architectures`), never from the
//! folder name, and runs on our own decoder (`llm/architectures/`), the one GGUF files run on:
//! `families.rs` maps each family's names and settings onto a GGUF view of the checkpoint
//! (`gguf_view.rs`), as llama.cpp's converter would write them.
//!
//! **Precision.** Weights stay as stored (f32, f16 or bf16: one copy, read from the memory-mapped
//! files) and every product, norm and attention runs in f32 (the decoder's `exact` mode: no
//! llama.cpp rounding), which is what Transformers computes after `model.float()`.

mod config;
mod families;
mod gguf_view;
mod tokens;

use crate::llm::architectures::{Gemma4Decoder, GgufDecoder};
use crate::llm::model::{CausalLm, LlmParts};

use crate::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use config::Cfg;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;
use tokens::{chat_template, config_ids, special_tokens};

/// The `model_type`s this build loads from safetensors.
pub const SAFETENSORS_MODEL_TYPES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma3_text",
    "gemma4_text",
    "gemma4_unified_text",
    "smollm3",
    "phi3",
    "glm4",
    "qwen3_moe",
    "glm4_moe",
    "gpt_oss",
    "qwen3_5_text",
    "qwen3_5_moe_text",
];

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
    let config = text_config(config);
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
    // SAFETY: the files are memory-mapped read-only and copied into the decoder while loading;
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

/// Maps the checkpoint onto a GGUF view and loads our decoder from it (the weights as stored,
/// computing in f32): Gemma 4's own decoder for `gemma4`, the shared one for the others.
fn load_model(
    dir: &Path,
    model_type: &str,
    cfg: &Cfg,
    st: MmapedSafetensors,
) -> Result<Box<dyn CausalLm>> {
    let arch = families::FAMILIES
        .iter()
        .find(|(t, _)| *t == model_type)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            Error::bad_request(format!(
                "model_type {model_type} cannot be run as safetensors"
            ))
        })?;
    let mut view = gguf_view::View::new(st, arch);
    families::convert(&mut view, cfg, model_type)?;
    let (ct, mut reader) = view.finish();
    let mismatch = |e: Error| {
        Error::bad_request(format!(
            "the weights in {} do not match its config.json ({model_type}): {}",
            dir.display(),
            e.message()
        ))
    };
    if arch == "gemma4" {
        let model = Gemma4Decoder::load(&ct, &mut reader).map_err(mismatch)?;
        return Ok(Box::new(model));
    }
    if !GgufDecoder::supports(&ct, arch) {
        return Err(Error::bad_request(format!(
            "the weights in {} are not a {model_type} model this build runs",
            dir.display()
        )));
    }
    let model = GgufDecoder::load(&ct, &mut reader, arch).map_err(mismatch)?;
    Ok(Box::new(model))
}

/// Assembles the loaded model and tokenizer with what `tokenizer_config.json` and
/// `generation_config.json` (both optional) add: the chat template, the BOS/EOS tokens and the
/// tokens never generated (`suppress_tokens`).
fn assemble_parts(
    dir: &Path,
    model: Box<dyn CausalLm>,
    model_type: String,
    tokenizer: Tokenizer,
    config: &Value,
    context_length: usize,
) -> Result<LlmParts> {
    let tok_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let gen_config = read_json(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
    let special = special_tokens(&tokenizer, config, &tok_config, &gen_config, &model_type);
    Ok(LlmParts {
        model,
        architecture: model_type,
        chat_template: chat_template(dir, &tok_config)?,
        tokenizer: tokenizer.into(),
        bos_token_id: special.bos,
        eos_token_ids: special.eos,
        add_bos: special.add_bos,
        context_length,
        suppressed_token_ids: config_ids(&gen_config, "suppress_tokens"),
    })
}

// A model folder's JSON file, `None` when the folder lacks it (the crate's one reader).
pub(super) use crate::files::read_optional_json as read_json;

/// The family: `model_type`, else the first of `architectures`.
fn model_type(config: &Value) -> Result<String> {
    let from_arch = |a: &str| match a {
        "LlamaForCausalLM" => Some("llama"),
        "MistralForCausalLM" => Some("mistral"),
        "Qwen2ForCausalLM" => Some("qwen2"),
        "Qwen3ForCausalLM" => Some("qwen3"),
        "Gemma3ForCausalLM" => Some("gemma3_text"),
        "Gemma4ForCausalLM" => Some("gemma4_text"),
        "Gemma4UnifiedForCausalLM" => Some("gemma4_unified_text"),
        "SmolLM3ForCausalLM" => Some("smollm3"),
        "Phi3ForCausalLM" => Some("phi3"),
        "Glm4ForCausalLM" => Some("glm4"),
        "Qwen3MoeForCausalLM" => Some("qwen3_moe"),
        "Glm4MoeForCausalLM" => Some("glm4_moe"),
        "GptOssForCausalLM" => Some("gpt_oss"),
        "Qwen3_5ForCausalLM" => Some("qwen3_5_text"),
        "Qwen3_5MoeForCausalLM" => Some("qwen3_5_moe_text"),
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

/// The text model's configuration: a vision-language checkpoint's `text_config` (Qwen3.5's
/// `qwen3_5` and `qwen3_5_moe`, Gemma 3's `gemma3`, Gemma 4's `gemma4` and `gemma4_unified`:
/// their language model is the text family's, and only it is run), with the top level's
/// `tie_word_embeddings` (the whole model's head is tied or not) and what else only the top
/// level says (the dtype, the token ids) where `text_config` is silent; any other config as it
/// is.
fn text_config(config: Value) -> Value {
    const VISION_LANGUAGE: &[&str] = &[
        "qwen3_5",
        "qwen3_5_moe",
        "gemma3",
        "gemma4",
        "gemma4_unified",
    ];
    let nested = config
        .get("model_type")
        .and_then(Value::as_str)
        .is_some_and(|t| VISION_LANGUAGE.contains(&t));
    let (true, Some(Value::Object(text)), Value::Object(top)) =
        (nested, config.get("text_config"), &config)
    else {
        return config;
    };
    let mut text = text.clone();
    if let Some(tie) = top.get("tie_word_embeddings") {
        text.insert("tie_word_embeddings".to_owned(), tie.clone());
    }
    for key in [
        "torch_dtype",
        "dtype",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ] {
        if let (false, Some(v)) = (text.contains_key(key), top.get(key)) {
            text.insert(key.to_owned(), v.clone());
        }
    }
    Value::Object(text)
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
