//! Entry points for fuzzing (`fuzz/`, cargo-fuzz on nightly) and for the corpus replay that
//! runs on stable (`tests/fuzz_corpus.rs`): each takes arbitrary bytes through the same code a
//! request or a model file takes, up to the point where a model would be needed. The property
//! is that none of them panics, whatever the bytes: bad input must come back as an `Err`.
//! Not an API: hidden from the docs, and only called by those two harnesses.

use crate::protocol::anthropic::MessagesRequest;
use crate::protocol::chat::{ChatCompletionRequest, CompletionRequest};
use crate::protocol::openai::EmbeddingRequest;
use crate::protocol::rerank::RerankRequest;
use crate::protocol::responses::ResponsesRequest;
use crate::registry::{ModelFamily, ModelType};
use serde_json::{json, Value};

/// A target's entry point: arbitrary bytes in, nothing out (a panic is the failure).
pub type Entry = fn(&[u8]);

/// Every target: its name (the folder of its corpus, `fuzz/corpus/<name>/`) and entry point.
pub const TARGETS: &[(&str, Entry)] = &[
    ("chat_request", chat_request),
    ("completion_request", completion_request),
    ("embedding_request", embedding_request),
    ("rerank_request", rerank_request),
    ("responses_request", responses_request),
    ("anthropic_messages", anthropic_messages),
    ("registration", registration),
    ("gguf_file", gguf_file),
    ("safetensors_file", safetensors_file),
    ("safetensors_config", safetensors_config),
    ("tokenizer_json", tokenizer_json),
    ("chat_template", chat_template),
    ("audio_file", audio_file),
    ("image_upload", image_upload),
];

/// The entry point of `name`.
pub fn target(name: &str) -> Option<Entry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// `POST /v1/chat/completions`: the body, the sampling checks, the messages and template
/// variables as the worker prepares them, and the requested grammar.
pub fn chat_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<ChatCompletionRequest>(data) else {
        return;
    };
    let _ = super::chat_input::plan(&request.generation, request.top_logprobs, Some(16));
    let _ = super::chat_input::normalise_messages(&request.messages);
    let _ = super::chat_input::template_kwargs(&request);
    let _ = super::structured::requested_grammar(&request.extra);
}

/// `POST /v1/completions`.
pub fn completion_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<CompletionRequest>(data) else {
        return;
    };
    let _ = super::chat_input::plan(&request.generation, request.logprobs, Some(16));
    let _ = super::structured::requested_grammar(&request.extra);
}

/// `POST /v1/embeddings`.
pub fn embedding_request(data: &[u8]) {
    let _ = serde_json::from_slice::<EmbeddingRequest>(data);
}

/// `POST /v1/rerank`.
pub fn rerank_request(data: &[u8]) {
    let _ = serde_json::from_slice::<RerankRequest>(data);
}

/// `POST /v1/responses`: the body, its input items and the chat request they become.
pub fn responses_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<ResponsesRequest>(data) else {
        return;
    };
    let Ok(items) = crate::responses::request::input_items(request.input.as_ref()) else {
        return;
    };
    if let Ok(chat) = crate::responses::request::to_chat_request(&request, &items) {
        chat_followup(&chat);
    }
}

/// `POST /v1/messages` (Anthropic): the body and the chat request it becomes.
pub fn anthropic_messages(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<MessagesRequest>(data) else {
        return;
    };
    if let Ok(chat) = crate::anthropic::to_chat_request(request) {
        chat_followup(&chat);
    }
}

fn chat_followup(chat: &ChatCompletionRequest) {
    let _ = super::chat_input::plan(&chat.generation, chat.top_logprobs, Some(16));
    let _ = super::chat_input::normalise_messages(&chat.messages);
    let _ = super::chat_input::template_kwargs(chat);
    let _ = super::structured::requested_grammar(&chat.extra);
}

/// `POST /v1/model_registrations/{type}`: the model JSON, as every model type.
pub fn registration(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for model_type in [
        ModelType::Llm,
        ModelType::Embedding,
        ModelType::Rerank,
        ModelType::Image,
        ModelType::Audio,
    ] {
        if let Ok(family) = ModelFamily::from_json(model_type, json.clone(), false) {
            for spec in &family.specs {
                let _ = crate::hub::cache_name(&family, spec);
            }
        }
    }
}

/// A GGUF file as a launch loads it (from a file, as a `model_path`).
pub fn gguf_file(data: &[u8]) {
    let Ok(dir) = tempfile_dir() else { return };
    let path = dir.join("model.gguf");
    if std::fs::write(&path, data).is_ok() {
        let _ = crate::llm::load_gguf(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A safetensors weights file as candle reads it.
pub fn safetensors_file(data: &[u8]) {
    let _ = candle_core::safetensors::load_buffer(data, &candle_core::Device::Cpu);
}

/// A safetensors model folder's `config.json` as the loader checks it.
pub fn safetensors_config(data: &[u8]) {
    let Ok(dir) = tempfile_dir() else { return };
    if std::fs::write(dir.join("config.json"), data).is_ok() {
        let _ = crate::llm::load_safetensors(&dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `tokenizer.json` as the loaders read it, then one encode and decode with it.
pub fn tokenizer_json(data: &[u8]) {
    let Ok(tokenizer) = crate::tokenizer_file::from_bytes(data) else {
        return;
    };
    if let Ok(encoding) = tokenizer.encode("Hello, world! 你好 <s>", true) {
        let _ = tokenizer.decode(encoding.get_ids(), false);
    }
}

/// A chat template (from a model or a registration), compiled and rendered over a short
/// conversation with a tool.
pub fn chat_template(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = crate::llm::ChatTemplate::new(source, "<s>", "</s>") else {
        return;
    };
    let messages = [
        json!({"role": "system", "content": "Be brief."}),
        json!({"role": "user", "content": "Hi"}),
        json!({"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}),
        json!({"role": "tool", "tool_call_id": "c1", "content": "2"}),
    ];
    let tools = [json!({"type": "function", "function": {"name": "f", "parameters": {}}})];
    let extra = serde_json::Map::new();
    let _ = template.render(&crate::llm::TemplateInput {
        messages: &messages,
        tools: Some(&tools),
        add_generation_prompt: true,
        extra: &extra,
    });
}

/// An uploaded audio file, decoded and resampled to 16 kHz mono.
pub fn audio_file(data: &[u8]) {
    let _ = crate::audio::input::decode_unguarded(data);
}

/// An uploaded image (and the same bytes as an inpainting mask).
pub fn image_upload(data: &[u8]) {
    if let Ok((_, w, h)) = crate::image::codec::decode(data, None, 8) {
        let _ = crate::image::codec::decode_mask(data, w.max(8), h.max(8));
    }
}

/// A fresh private folder under the system temp folder.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "xinference-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
