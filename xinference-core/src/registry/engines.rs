//! Which engine runs what. All compute in this build is candle; the engine names that Xinference
//! users type (`llama.cpp`, `Transformers`, `sentence_transformers`, ...) are accepted as
//! aliases so the documentation's examples run as written.

use super::{ModelFamily, ModelSpec, ModelType};
use crate::{Error, Result};
use serde_json::{json, Map, Value};

/// Whether this build can run a spec, and why not when it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// It can be launched.
    Runnable,
    /// It is listed but cannot be launched yet; the string says why.
    NotYet(String),
}

/// One engine name and the formats it accepts, per model type.
struct EngineName {
    name: &'static str,
    model_type: ModelType,
    /// Formats it runs; empty means any format.
    formats: &'static [&'static str],
}

const ENGINES: &[EngineName] = &[
    EngineName {
        name: "llama.cpp",
        model_type: ModelType::Llm,
        formats: &["ggufv2"],
    },
    EngineName {
        name: "Transformers",
        model_type: ModelType::Llm,
        formats: &["pytorch"],
    },
    EngineName {
        name: "candle",
        model_type: ModelType::Llm,
        formats: &[],
    },
    EngineName {
        name: "sentence_transformers",
        model_type: ModelType::Embedding,
        formats: &["pytorch"],
    },
    EngineName {
        name: "candle",
        model_type: ModelType::Embedding,
        formats: &[],
    },
    EngineName {
        name: "sentence_transformers",
        model_type: ModelType::Rerank,
        formats: &["pytorch"],
    },
    EngineName {
        name: "llama.cpp",
        model_type: ModelType::Rerank,
        formats: &["ggufv2"],
    },
    EngineName {
        name: "candle",
        model_type: ModelType::Rerank,
        formats: &[],
    },
    EngineName {
        name: "diffusers",
        model_type: ModelType::Image,
        formats: &[],
    },
    EngineName {
        name: "candle",
        model_type: ModelType::Image,
        formats: &[],
    },
    EngineName {
        name: "transformers",
        model_type: ModelType::Audio,
        formats: &[],
    },
    EngineName {
        name: "candle",
        model_type: ModelType::Audio,
        formats: &[],
    },
];

/// Architectures with a working candle implementation, per type and format.
const RUNNABLE: &[(ModelType, &str, &str)] = &[
    (ModelType::Embedding, "pytorch", "BertModel"),
    (ModelType::Embedding, "pytorch", "XLMRobertaModel"),
    (ModelType::Embedding, "pytorch", "JinaBertModel"),
    (ModelType::Embedding, "pytorch", "NomicBertModel"),
    (ModelType::Embedding, "pytorch", "Qwen3Model"),
    (ModelType::Llm, "ggufv2", "LlamaForCausalLM"),
    (ModelType::Llm, "ggufv2", "MistralForCausalLM"),
    (ModelType::Llm, "ggufv2", "Qwen2ForCausalLM"),
    (ModelType::Llm, "ggufv2", "Qwen3ForCausalLM"),
    (ModelType::Llm, "ggufv2", "Qwen3MoeForCausalLM"),
    (ModelType::Llm, "ggufv2", "GptOssForCausalLM"),
    (ModelType::Llm, "ggufv2", "Gemma3ForCausalLM"),
    (ModelType::Llm, "ggufv2", "Gemma3ForConditionalGeneration"),
    (ModelType::Llm, "ggufv2", "Gemma4ForCausalLM"),
    (ModelType::Llm, "ggufv2", "Gemma4ForConditionalGeneration"),
    (
        ModelType::Llm,
        "ggufv2",
        "Gemma4UnifiedForConditionalGeneration",
    ),
    (ModelType::Llm, "ggufv2", "Phi3ForCausalLM"),
    (ModelType::Llm, "ggufv2", "GlmForCausalLM"),
    (ModelType::Llm, "ggufv2", "Glm4ForCausalLM"),
    (ModelType::Llm, "ggufv2", "Glm4MoeForCausalLM"),
    // Qwen3.5 / 3.6 / 3.8: the text path of the GGUFs (`qwen35`, `qwen35moe`).
    (ModelType::Llm, "ggufv2", "Qwen3_5ForConditionalGeneration"),
    (
        ModelType::Llm,
        "ggufv2",
        "Qwen3_5MoeForConditionalGeneration",
    ),
    (ModelType::Llm, "ggufv2", "SmolLM3ForCausalLM"),
    // Safetensors checkpoints (`llm/loading/safetensors`, SAFETENSORS_MODEL_TYPES); not
    // gpt-oss's (released in MXFP4, which the loader refuses).
    (ModelType::Llm, "pytorch", "LlamaForCausalLM"),
    (ModelType::Llm, "pytorch", "MistralForCausalLM"),
    (ModelType::Llm, "pytorch", "Qwen2ForCausalLM"),
    (ModelType::Llm, "pytorch", "Qwen3ForCausalLM"),
    (ModelType::Llm, "pytorch", "Qwen3MoeForCausalLM"),
    (ModelType::Llm, "pytorch", "Gemma3ForCausalLM"),
    (ModelType::Llm, "pytorch", "Gemma3ForConditionalGeneration"),
    (ModelType::Llm, "pytorch", "Gemma4ForCausalLM"),
    (ModelType::Llm, "pytorch", "Gemma4ForConditionalGeneration"),
    (
        ModelType::Llm,
        "pytorch",
        "Gemma4UnifiedForConditionalGeneration",
    ),
    (ModelType::Llm, "pytorch", "Phi3ForCausalLM"),
    (ModelType::Llm, "pytorch", "Glm4ForCausalLM"),
    (ModelType::Llm, "pytorch", "Glm4MoeForCausalLM"),
    (ModelType::Llm, "pytorch", "SmolLM3ForCausalLM"),
    (ModelType::Llm, "pytorch", "Qwen3_5ForConditionalGeneration"),
    (
        ModelType::Llm,
        "pytorch",
        "Qwen3_5MoeForConditionalGeneration",
    ),
    (
        ModelType::Rerank,
        "pytorch",
        "BertForSequenceClassification",
    ),
    (
        ModelType::Rerank,
        "pytorch",
        "XLMRobertaForSequenceClassification",
    ),
    (ModelType::Rerank, "pytorch", "Qwen3ForCausalLM"),
    (ModelType::Rerank, "ggufv2", "Qwen3ForCausalLM"),
    (
        ModelType::Audio,
        "pytorch",
        "WhisperForConditionalGeneration",
    ),
    (ModelType::Image, "pytorch", "StableDiffusionPipeline"),
    (ModelType::Image, "pytorch", "StableDiffusionXLPipeline"),
    // Inpainting checkpoints (9-channel UNets) load through the same pipeline.
    (
        ModelType::Image,
        "pytorch",
        "StableDiffusionInpaintPipeline",
    ),
    (
        ModelType::Image,
        "pytorch",
        "StableDiffusionXLInpaintPipeline",
    ),
];

/// Whether this build can run `spec` of `family`.
pub fn support(family: &ModelFamily, spec: &ModelSpec) -> Support {
    let arch = family.architectures.first().map(String::as_str);
    let runnable = RUNNABLE.iter().any(|(t, format, a)| {
        *t == family.model_type
            && spec.model_format.eq_ignore_ascii_case(format)
            // A custom family without `architectures` is checked when its config.json is read.
            && arch.is_none_or(|arch| arch == *a)
    });
    if runnable {
        Support::Runnable
    } else {
        Support::NotYet(format!(
            "{} models of architecture {} in format {} cannot be run by this build yet",
            family.model_type,
            arch.unwrap_or("(unknown)"),
            spec.model_format
        ))
    }
}

/// The canonical engine name for a requested one (case-insensitive), checked against the spec.
pub fn resolve_engine(
    family: &ModelFamily,
    requested: Option<&str>,
    spec: &ModelSpec,
) -> Result<String> {
    let t = family.model_type;
    let Some(requested) = requested else {
        // Xinference requires an engine for LLMs; other types default to their usual engine.
        if t == ModelType::Llm {
            return Err(Error::bad_request(
                "Invalid input. Please specify the `model_engine` field.",
            ));
        }
        let default = ENGINES
            .iter()
            .find(|e| {
                e.model_type == t
                    && (e.formats.is_empty()
                        || e.formats
                            .iter()
                            .any(|f| f.eq_ignore_ascii_case(&spec.model_format)))
            })
            .map(|e| e.name);
        return Ok(default.unwrap_or("candle").to_owned());
    };
    let engine = ENGINES
        .iter()
        .find(|e| e.model_type == t && e.name.eq_ignore_ascii_case(requested))
        .ok_or_else(|| {
            let names: Vec<&str> = ENGINES
                .iter()
                .filter(|e| e.model_type == t)
                .map(|e| e.name)
                .collect();
            Error::bad_request(format!(
                "Model {} cannot be run on engine {requested}; engines for {t} models: {}",
                family.name,
                names.join(", ")
            ))
        })?;
    if !engine.formats.is_empty()
        && !engine
            .formats
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&spec.model_format))
    {
        return Err(Error::bad_request(format!(
            "Engine {} runs {} files, not format {}",
            engine.name,
            engine.formats.join(", "),
            spec.model_format
        )));
    }
    Ok(engine.name.to_owned())
}

/// What `GET /v1/engines/{model_name}` answers: per engine name, the launchable parameter
/// sets, or a string saying why that engine cannot run the model.
pub type EngineOptions = Map<String, Value>;

/// Engine options of a family, in Xinference's shape:
/// `{engine: [{model_name, model_format, model_size_in_billions, quantizations}]}`.
pub fn engine_options(family: &ModelFamily) -> EngineOptions {
    let mut out = Map::new();
    for engine in ENGINES.iter().filter(|e| e.model_type == family.model_type) {
        let mut params: Vec<Value> = Vec::new();
        let mut reason = None;
        for spec in &family.specs {
            if !engine.formats.is_empty()
                && !engine
                    .formats
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&spec.model_format))
            {
                continue;
            }
            match support(family, spec) {
                Support::NotYet(why) => reason = Some(why),
                Support::Runnable => {
                    let existing = params.iter_mut().find(|p| {
                        p["model_format"] == spec.model_format.as_str()
                            && p["model_size_in_billions"] == json!(spec.model_size_in_billions)
                    });
                    match existing {
                        Some(p) => {
                            if let Some(q) = p["quantizations"].as_array_mut() {
                                if !q.iter().any(|x| x == spec.quantization.as_str()) {
                                    q.push(json!(spec.quantization));
                                }
                            }
                        }
                        None => params.push(json!({
                            "model_name": family.name,
                            "model_format": spec.model_format,
                            "model_size_in_billions": spec.model_size_in_billions,
                            "quantizations": [spec.quantization],
                        })),
                    }
                }
            }
        }
        if !params.is_empty() {
            out.insert(engine.name.to_owned(), Value::Array(params));
        } else if let Some(why) = reason {
            out.insert(engine.name.to_owned(), Value::String(why));
        }
    }
    out
}
