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
    if f.model_type == ModelType::Llm {
        let caches = instance.prefix_caches.lock().expect("instance lock");
        if !caches.is_empty() {
            map.insert("prefix_cache".into(), prefix_cache_json(&caches));
        }
        let batchers = instance.batchers.lock().expect("instance lock");
        if !batchers.is_empty() {
            map.insert("batching".into(), batching_json(&batchers));
        }
    }
    if f.model_type == ModelType::Audio {
        let models = instance.audio_models.lock().expect("instance lock");
        if !models.is_empty() {
            map.insert("batching".into(), audio_batching_json(&models));
        }
    }
    map.insert("n_worker".into(), json!(1));
    map.insert("replica".into(), json!(instance.replicas));
    if instance.status() == crate::protocol::xinference::InstanceStatus::Error {
        // A model whose compute panicked (or whose launch failed) says so, in the status
        // words of `/v1/models/instances`.
        map.insert("status".into(), json!("ERROR"));
        map.insert("error".into(), json!(instance.error()));
    }
    map
}

/// The prompt-prefix caches of an LLM's replicas, summed: hit rate, tokens reused and
/// computed, bytes held and the budget.
fn prefix_cache_json(caches: &[std::sync::Arc<crate::llm::PrefixCache>]) -> Value {
    let mut total = crate::llm::PrefixCacheStats::default();
    for s in caches.iter().map(|c| c.stats()) {
        total.lookups += s.lookups;
        total.hits += s.hits;
        total.reused_tokens += s.reused_tokens;
        total.prefilled_tokens += s.prefilled_tokens;
        total.entries += s.entries;
        total.bytes += s.bytes;
        total.budget_bytes += s.budget_bytes;
        total.evictions += s.evictions;
    }
    if total.lookups > 0 {
        total.hit_rate = total.hits as f64 / total.lookups as f64;
    }
    serde_json::to_value(total).unwrap_or(Value::Null)
}

/// The shared passes of a speech-to-text model's replicas, summed: passes, the calls (window
/// encodes and decoder steps of all requests) they served, windows encoded, the mean and the
/// largest batch.
fn audio_batching_json(models: &[std::sync::Arc<dyn crate::audio::SpeechToText>]) -> Value {
    let mut total = crate::audio::passes::PassStats::default();
    for s in models.iter().map(|m| m.pass_stats()) {
        total.passes += s.passes;
        total.calls += s.calls;
        total.windows += s.windows;
        total.largest = total.largest.max(s.largest);
    }
    let mean = if total.passes > 0 {
        total.calls as f64 / total.passes as f64
    } else {
        0.0
    };
    json!({"passes": total.passes, "calls": total.calls, "windows": total.windows,
           "mean_batch": mean, "largest_batch": total.largest})
}

/// The decode passes of an LLM's replicas, summed: passes, sequence steps, the mean and the
/// largest batch, passes by batch size, the prompt chunks and rows fed in passes (those that
/// shared a pass with decode steps apart), and the seconds spent in passes and gathering.
fn batching_json(batchers: &[std::sync::Arc<crate::llm::StepBatcher>]) -> Value {
    let mut t = crate::llm::BatchStats::default();
    for s in batchers.iter().map(|b| b.stats()) {
        t.passes += s.passes;
        t.steps += s.steps;
        t.largest = t.largest.max(s.largest);
        t.prompt_chunks += s.prompt_chunks;
        t.shared_prompt_chunks += s.shared_prompt_chunks;
        t.prompt_passes += s.prompt_passes;
        t.prompt_rows += s.prompt_rows;
        for (a, b) in t.sizes.iter_mut().zip(s.sizes) {
            *a += b;
        }
        t.decode_pass_s += s.decode_pass_s;
        t.prompt_pass_s += s.prompt_pass_s;
        t.gather_s += s.gather_s;
    }
    let mean = if t.passes > 0 {
        t.steps as f64 / t.passes as f64
    } else {
        0.0
    };
    json!({"passes": t.passes, "steps": t.steps, "mean_batch": mean, "largest_batch": t.largest,
           "batch_sizes": t.sizes, "prompt_chunks": t.prompt_chunks,
           "shared_prompt_chunks": t.shared_prompt_chunks, "prompt_passes": t.prompt_passes,
           "prompt_rows": t.prompt_rows, "decode_pass_s": t.decode_pass_s,
           "prompt_pass_s": t.prompt_pass_s, "gather_s": t.gather_s})
}
