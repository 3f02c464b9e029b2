//! Model descriptions in Xinference's `to_description()` shape, per model type.

use super::Instance;
use crate::protocol::xinference::DescriptionMap;
use crate::registry::ModelType;
use serde_json::{json, Value};

/// The address reported for in-process models (Xinference reports its actor's address).
const ADDRESS: &str = "127.0.0.1";

/// The description `GET /v1/models/{uid}` answers with (including `replica`).
pub fn describe(instance: &Instance) -> DescriptionMap {
    let f = &instance.family;
    let s = &instance.spec;
    let revision = json!(s.model_revision);
    let value = match f.model_type {
        ModelType::Llm => json!({
            "model_type": "LLM",
            "address": ADDRESS,
            "accelerators": [],
            "model_name": f.name,
            "model_lang": f.languages,
            "model_ability": f.abilities,
            "model_description": f.json.get("model_description").cloned().unwrap_or(Value::Null),
            "model_format": s.model_format,
            "model_size_in_billions": s.model_size_in_billions,
            "model_family": f.model_family.clone().unwrap_or_else(|| f.name.clone()),
            "quantization": s.quantization,
            "multimodal_projector": null,
            "model_hub": s.model_hub,
            "revision": revision,
            "context_length": f.context_length,
            "strict_system_first": false,
            "model_engine": instance.engine,
        }),
        ModelType::Embedding => json!({
            "model_type": "embedding",
            "address": ADDRESS,
            "accelerators": [],
            "model_name": f.name,
            "model_engine": instance.engine,
            "model_format": s.model_format,
            "dimensions": f.dimensions,
            "max_tokens": f.max_tokens,
            "language": f.languages,
            "model_ability": f.abilities,
            "model_hub": s.model_hub,
            "model_revision": revision,
            "quantization": s.quantization,
        }),
        ModelType::Rerank => json!({
            "model_type": "rerank",
            "address": ADDRESS,
            "accelerators": [],
            "type": f.json.get("type").cloned().unwrap_or(json!("normal")),
            "model_name": f.name,
            "model_engine": instance.engine,
            "model_format": s.model_format,
            "language": f.languages,
            "model_ability": f.abilities,
            "model_revision": revision,
            "quantization": s.quantization,
        }),
        ModelType::Image => json!({
            "model_type": "image",
            "address": ADDRESS,
            "accelerators": [],
            "model_name": f.name,
            "model_engine": instance.engine,
            "model_family": f.model_family,
            "model_revision": revision,
            "model_ability": f.abilities,
            "controlnet": null,
        }),
        other => json!({
            "model_type": other.as_str(),
            "address": ADDRESS,
            "accelerators": [],
            "model_name": f.name,
            "model_family": f.model_family,
            "model_revision": revision,
            "model_ability": f.abilities,
            "model_engine": instance.engine,
        }),
    };
    let Value::Object(mut map) = value else {
        unreachable!("descriptions are objects")
    };
    map.insert("n_worker".into(), json!(1));
    map.insert("replica".into(), json!(instance.replicas));
    map
}
