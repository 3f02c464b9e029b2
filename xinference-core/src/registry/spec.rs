//! Model families in Xinference's "version 2" spec format, and their flattened per-file specs.
//!
//! A family is kept as the JSON it was written in (so `GET /v1/model_registrations/{type}/{name}`
//! answers with exactly what was registered) plus a typed view of the fields the library uses.

use super::paths::{check_plain_name, check_relative_path};
use super::ModelType;
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The hub whose ids the specs carry. Only Hugging Face is reachable from this build.
pub const HUGGINGFACE: &str = "huggingface";

/// One model family: a name and the files it can be launched from.
#[derive(Debug, Clone)]
pub struct ModelFamily {
    /// LLM, embedding, rerank, image or audio.
    pub model_type: ModelType,
    /// The unique name (`qwen2.5-instruct`, `bge-small-en-v1.5`, ...).
    pub name: String,
    /// Shipped with the library (true) or registered by a user (false).
    pub is_builtin: bool,
    /// The family exactly as written in the spec file or the registration.
    pub json: Value,
    /// Languages (`model_lang` for LLMs, `language` for the rest).
    pub languages: Vec<String>,
    /// Abilities (`chat`, `tools`, `embed`, `rerank`, `text2image`, `audio2text`, ...).
    pub abilities: Vec<String>,
    /// Hugging Face architecture classes (`LlamaForCausalLM`, `BertModel`, ...).
    pub architectures: Vec<String>,
    /// `dimensions` of an embedding model.
    pub dimensions: Option<u64>,
    /// `max_tokens` of an embedding or rerank model.
    pub max_tokens: Option<u64>,
    /// `context_length` of an LLM.
    pub context_length: Option<u64>,
    /// `model_family` of image and audio models (and custom LLMs).
    pub model_family: Option<String>,
    /// `multilingual` of audio models.
    pub multilingual: Option<bool>,
    /// Every launchable (format, size, quantization) combination.
    pub specs: Vec<ModelSpec>,
}

/// One launchable combination of a family: format, size and quantization on one hub.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// `pytorch` (safetensors), `ggufv2`, ...
    pub model_format: String,
    /// Normalised size (`"7"`, `"0_5"`), when the family has sizes.
    pub model_size_in_billions: Option<String>,
    /// `none` for unquantised weights, or the GGUF quantization name.
    pub quantization: String,
    /// The hub this spec downloads from.
    pub model_hub: String,
    /// The repository id, `{quantization}` already substituted.
    pub model_id: String,
    /// A pinned revision, when the spec has one.
    pub model_revision: Option<String>,
    /// For single-file formats: the file to fetch from the repository.
    pub model_file_name: Option<String>,
    /// A local copy (`file:///...` or a plain path) that takes the place of a download.
    pub model_uri: Option<String>,
}

#[derive(Deserialize)]
struct RawFamily {
    model_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    model_lang: Vec<String>,
    #[serde(default)]
    language: Option<Value>,
    #[serde(default)]
    model_ability: Option<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    architectures: Vec<String>,
    dimensions: Option<u64>,
    max_tokens: Option<u64>,
    context_length: Option<u64>,
    model_family: Option<String>,
    multilingual: Option<bool>,
    #[serde(default, deserialize_with = "null_as_default")]
    model_specs: Vec<RawSpec>,
    model_src: Option<BTreeMap<String, RawSrc>>,
    model_uri: Option<String>,
}

#[derive(Deserialize)]
struct RawSpec {
    model_format: String,
    model_size_in_billions: Option<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    model_src: BTreeMap<String, RawSrc>,
    // Flat (single-hub) form, as custom registrations often write it.
    model_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    quantizations: Vec<String>,
    quantization: Option<String>,
    model_revision: Option<String>,
    model_file_name_template: Option<String>,
    model_uri: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawSrc {
    model_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    quantizations: Vec<String>,
    model_revision: Option<String>,
    model_file_name_template: Option<String>,
    model_uri: Option<String>,
}

/// A field that may be missing or `null` (Xinference writes every unset field as `null`) reads
/// as its default.
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl ModelFamily {
    /// Parses and validates a family of `model_type` from its JSON.
    pub fn from_json(model_type: ModelType, json: Value, is_builtin: bool) -> Result<Self> {
        let raw: RawFamily = serde_json::from_value(json.clone())
            .map_err(|e| Error::bad_request(format!("Invalid {model_type} model spec: {e}")))?;
        check_plain_name("model_name", &raw.model_name)?;
        let languages = if raw.model_lang.is_empty() {
            string_list(raw.language.as_ref())
        } else {
            raw.model_lang.clone()
        };
        let mut abilities = string_list(raw.model_ability.as_ref());
        if abilities.is_empty() {
            abilities = default_abilities(model_type);
        }
        let specs = flatten_specs(model_type, &raw)?;
        for spec in &specs {
            validate_path_parts(spec)?;
        }
        if specs.is_empty() {
            return Err(Error::bad_request(format!(
                "Invalid {model_type} model spec `{}`: model_specs field required (at least one spec with a model_id or model_uri)",
                raw.model_name
            )));
        }
        match model_type {
            ModelType::Embedding if raw.dimensions.is_none() => {
                return Err(Error::bad_request(format!(
                    "Invalid embedding model spec `{}`: dimensions field required",
                    raw.model_name
                )))
            }
            ModelType::Embedding | ModelType::Rerank if raw.max_tokens == Some(0) => {
                return Err(Error::bad_request("max_tokens must be at least 1"))
            }
            _ => {}
        }
        Ok(ModelFamily {
            model_type,
            name: raw.model_name,
            is_builtin,
            json,
            languages,
            abilities,
            architectures: raw.architectures,
            dimensions: raw.dimensions,
            max_tokens: raw.max_tokens,
            context_length: raw.context_length,
            model_family: raw.model_family,
            multilingual: raw.multilingual,
            specs,
        })
    }

    /// The specs that match the optional filters of a launch request, in spec order.
    pub fn matching_specs(
        &self,
        model_format: Option<&str>,
        size: Option<&str>,
        quantization: Option<&str>,
    ) -> Vec<&ModelSpec> {
        let size = size.map(normalise_size);
        self.specs
            .iter()
            .filter(|s| model_format.is_none_or(|f| s.model_format.eq_ignore_ascii_case(f)))
            .filter(|s| {
                size.as_deref()
                    .is_none_or(|want| s.model_size_in_billions.as_deref() == Some(want))
            })
            .filter(|s| quantization.is_none_or(|q| s.quantization.eq_ignore_ascii_case(q)))
            .collect()
    }

    /// Whether the family lists `ability` (`chat`, `embed`, ...).
    pub fn has_ability(&self, ability: &str) -> bool {
        self.abilities.iter().any(|a| a == ability)
    }
}

/// The one check of every spec string that becomes part of a path: the cache folder is
/// `<name>-<format>-<size>b-<quantization>` under `$XINFERENCE_HOME/cache`, and file templates
/// and repository ids name files inside it and inside the hub cache. Each must stay a plain name
/// (or, for templates and ids, a relative path of plain names), so that no registration can make
/// the cache create, delete or link files outside `$XINFERENCE_HOME`.
fn validate_path_parts(spec: &ModelSpec) -> Result<()> {
    let plain = check_plain_name;
    let relative = check_relative_path;
    plain("model_format", &spec.model_format)?;
    plain("quantization", &spec.quantization)?;
    if let Some(size) = &spec.model_size_in_billions {
        plain("model_size_in_billions", size)?;
    }
    if !spec.model_id.is_empty() {
        relative("model_id", &spec.model_id)?;
    }
    if let Some(name) = &spec.model_file_name {
        relative("model_file_name_template", name)?;
    }
    if let Some(revision) = &spec.model_revision {
        relative("model_revision", revision)?;
    }
    Ok(())
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn default_abilities(model_type: ModelType) -> Vec<String> {
    let a = match model_type {
        ModelType::Embedding => "embed",
        ModelType::Rerank => "rerank",
        ModelType::Llm => "generate",
        ModelType::Image => "text2image",
        ModelType::Audio => "audio2text",
        ModelType::Video => "text2video",
        ModelType::Flexible => "flexible",
    };
    vec![a.to_owned()]
}

/// Normalises a size written as `0.5`, `"0_5"`, `7` or `"7"` to Xinference's `"0_5"` / `"7"`.
pub fn normalise_size(size: &str) -> String {
    let s = size.trim().replace('.', "_");
    match s.strip_suffix("_0") {
        Some(whole) if !whole.contains('_') => whole.to_owned(),
        _ => s,
    }
}

fn size_value(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(normalise_size(&n.to_string())),
        Value::String(s) => Some(normalise_size(s)),
        _ => None,
    }
}

fn flatten_specs(model_type: ModelType, raw: &RawFamily) -> Result<Vec<ModelSpec>> {
    let mut out = Vec::new();
    // Image and audio families carry `model_src` at the top level: one unquantised spec.
    if let Some(srcs) = &raw.model_src {
        for (hub, src) in srcs {
            push_src(
                &mut out,
                "pytorch",
                None,
                hub,
                src,
                None,
                raw.model_uri.clone(),
            );
        }
    }
    for spec in &raw.model_specs {
        let size = spec.model_size_in_billions.as_ref().and_then(size_value);
        if model_type == ModelType::Llm && spec.model_size_in_billions.is_none() {
            return Err(Error::bad_request(format!(
                "Invalid LLM model spec `{}`: every spec needs model_size_in_billions",
                raw.model_name
            )));
        }
        let mut srcs: Vec<(String, RawSrc)> = Vec::new();
        for (hub, src) in &spec.model_src {
            srcs.push((
                hub.clone(),
                RawSrc {
                    model_id: src.model_id.clone(),
                    quantizations: src.quantizations.clone(),
                    model_revision: src.model_revision.clone(),
                    model_file_name_template: src.model_file_name_template.clone(),
                    model_uri: src.model_uri.clone(),
                },
            ));
        }
        if srcs.is_empty() && (spec.model_id.is_some() || spec.model_uri.is_some()) {
            let mut quantizations = spec.quantizations.clone();
            if let Some(q) = &spec.quantization {
                quantizations.push(q.clone());
            }
            srcs.push((
                HUGGINGFACE.to_owned(),
                RawSrc {
                    model_id: spec.model_id.clone(),
                    quantizations,
                    model_revision: spec.model_revision.clone(),
                    model_file_name_template: spec.model_file_name_template.clone(),
                    model_uri: spec.model_uri.clone(),
                },
            ));
        }
        for (hub, src) in &srcs {
            push_src(
                &mut out,
                &spec.model_format,
                size.clone(),
                hub,
                src,
                spec.model_uri.clone(),
                raw.model_uri.clone(),
            );
        }
    }
    Ok(out)
}

fn push_src(
    out: &mut Vec<ModelSpec>,
    format: &str,
    size: Option<String>,
    hub: &str,
    src: &RawSrc,
    spec_uri: Option<String>,
    family_uri: Option<String>,
) {
    let model_uri = src.model_uri.clone().or(spec_uri).or(family_uri);
    if src.model_id.is_none() && model_uri.is_none() {
        return;
    }
    let quantizations = if src.quantizations.is_empty() {
        vec!["none".to_owned()]
    } else {
        src.quantizations.clone()
    };
    for q in quantizations {
        let model_id = src
            .model_id
            .clone()
            .unwrap_or_default()
            .replace("{quantization}", &q);
        out.push(ModelSpec {
            model_format: format.to_owned(),
            model_size_in_billions: size.clone(),
            quantization: q.clone(),
            model_hub: hub.to_owned(),
            model_id,
            model_revision: src.model_revision.clone(),
            model_file_name: src
                .model_file_name_template
                .as_ref()
                .map(|t| t.replace("{quantization}", &q)),
            model_uri: model_uri.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    /// Every spec string that becomes a path is refused when it could leave its folder.
    #[test]
    fn path_parts_cannot_leave_the_cache() {
        let llm = |spec: serde_json::Value| {
            ModelFamily::from_json(
                ModelType::Llm,
                json!({"version": 2, "model_name": "x", "context_length": 2048,
                       "model_lang": ["en"], "model_ability": ["chat"],
                       "model_specs": [spec]}),
                false,
            )
        };
        let good = json!({"model_format": "ggufv2", "model_size_in_billions": "0_5",
            "model_src": {"huggingface": {"model_id": "org/repo", "quantizations": ["Q4_K_M"],
                "model_file_name_template": "m-{quantization}.gguf"}}});
        llm(good.clone()).unwrap();
        for (path, value) in [
            ("/model_src/huggingface/quantizations/0", "../../../x"),
            ("/model_src/huggingface/quantizations/0", "a/b"),
            ("/model_format", "../gguf"),
            ("/model_size_in_billions", "../../1"),
            (
                "/model_src/huggingface/model_file_name_template",
                "../../etc/{quantization}",
            ),
            (
                "/model_src/huggingface/model_file_name_template",
                "/etc/passwd",
            ),
            ("/model_src/huggingface/model_id", "../../org"),
        ] {
            let mut spec = good.clone();
            *spec.pointer_mut(path).unwrap() = json!(value);
            let e = llm(spec).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::BadRequest, "{path} = {value}");
        }
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_normalise_like_xinference() {
        assert_eq!(normalise_size("0.5"), "0_5");
        assert_eq!(normalise_size("0_5"), "0_5");
        assert_eq!(normalise_size("7"), "7");
        assert_eq!(normalise_size("7.0"), "7");
        assert_eq!(normalise_size("1_7"), "1_7");
    }

    #[test]
    fn gguf_specs_flatten_per_quantization() {
        let fam = ModelFamily::from_json(
            ModelType::Llm,
            json!({"version": 2, "model_name": "x", "model_specs": [{
                "model_format": "ggufv2", "model_size_in_billions": "0_5",
                "model_src": {"huggingface": {"model_id": "a/b", "quantizations": ["q4_k_m", "q8_0"],
                    "model_file_name_template": "b-{quantization}.gguf"}}}]}),
            true,
        )
        .unwrap();
        assert_eq!(fam.specs.len(), 2);
        assert_eq!(fam.specs[1].model_file_name.as_deref(), Some("b-q8_0.gguf"));
        assert_eq!(fam.matching_specs(None, Some("0.5"), Some("Q8_0")).len(), 1);
        assert!(fam.matching_specs(Some("pytorch"), None, None).is_empty());
    }

    #[test]
    fn bad_specs_are_rejected_with_a_reason() {
        let e = ModelFamily::from_json(ModelType::Embedding, json!({"model_name": "m"}), false)
            .unwrap_err();
        assert!(e.message().contains("model_specs"), "{e}");
        let e = ModelFamily::from_json(ModelType::Embedding, json!({"model_name": "../x"}), false)
            .unwrap_err();
        assert!(e.message().contains("model_name"), "{e}");
        let e = ModelFamily::from_json(ModelType::Llm, json!([1, 2]), false).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadRequest);
    }
}
