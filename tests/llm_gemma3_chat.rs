//! A Gemma 3 GGUF that carries Gemma 3's chat template chats over real HTTP with the official
//! `openai` SDK: the template renders as Gemma's (`<bos><start_of_turn>user\n...`), the
//! answer comes back whole and streamed, and `<end_of_turn>` ends it. The test model is the
//! real Gemma 3 270M base GGUF, which has no template; the test writes a copy whose metadata
//! also holds `tokenizer.chat_template` (google/gemma-3-270m-it's, from its
//! tokenizer_config.json), as an instruction-tuned GGUF does.

mod common;

use candle_core::quantized::gguf_file::{self, Content, Value as GgufValue};
use common::tiny_families::launch_from_path;
use common::{run_python, TestServer};
use serde_json::json;
use std::path::{Path, PathBuf};
use xinference::llm::LlmEngine;

/// Gemma 3's chat template (google/gemma-3-270m-it, tokenizer_config.json).
const GEMMA3_CHAT_TEMPLATE: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '

' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
"#;

fn gemma_gguf() -> PathBuf {
    let path = common::test_models_dir().join("gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing. Fix: run `python3 scripts/fetch-test-models.py gemma`",
        path.display()
    );
    path
}

/// Writes `dir/gemma-3-270m-it-template.gguf`: the test model with the chat template added.
fn with_chat_template(dir: &Path) -> PathBuf {
    let mut file = std::fs::File::open(gemma_gguf()).unwrap();
    let ct = Content::read(&mut file).unwrap();
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort_by_key(|n| ct.tensor_infos[*n].offset);
    let device = candle_core::Device::Cpu;
    let tensors: Vec<_> = names
        .iter()
        .map(|n| ct.tensor(&mut file, n, &device).unwrap())
        .collect();
    let template = GgufValue::String(GEMMA3_CHAT_TEMPLATE.to_owned());
    let mut metadata: Vec<(&str, &GgufValue)> =
        ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    metadata.push(("tokenizer.chat_template", &template));
    let tensor_refs: Vec<(&str, &candle_core::quantized::QTensor)> = names
        .iter()
        .map(|n| n.as_str())
        .zip(tensors.iter())
        .collect();
    let out = dir.join("gemma-3-270m-it-template.gguf");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    gguf_file::write(&mut w, &metadata, &tensor_refs).unwrap();
    drop(w);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma3_gguf_with_a_chat_template_chats_over_http() {
    let models = tempfile::tempdir().unwrap();
    let gguf = with_chat_template(models.path());

    // The template renders as Gemma's; `<end_of_turn>` stops generation even though the GGUF
    // names only `<eos>` (llama.cpp treats it as end of generation too).
    let messages = [
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": "What is the capital of France?"}),
    ];
    let parts = xinference::llm::load_gguf(&gguf).unwrap();
    let end_of_turn = parts.tokenizer.token_to_id("<end_of_turn>").unwrap();
    assert!(
        parts.eos_token_ids.contains(&end_of_turn),
        "<end_of_turn> must end generation: {:?}",
        parts.eos_token_ids
    );
    let engine = LlmEngine::new(parts, None, &[], &[]).unwrap();
    assert!(engine.has_chat_template());
    let prompt = engine
        .render_chat(&messages, None, &Default::default())
        .unwrap();
    assert_eq!(
        prompt,
        "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    );
    let prompt_ids = engine.tokenize(&prompt).unwrap();
    assert_eq!(
        prompt_ids[..3],
        [2, 105, 2364],
        "<bos> <start_of_turn> user"
    );
    // Roles that do not alternate are the template's own error: a 400.
    let e = engine
        .render_chat(
            &[messages[1].clone(), messages[1].clone()],
            None,
            &Default::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), xinference::ErrorKind::BadRequest, "{e}");
    drop(engine);

    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let spec = json!({
        "model_name": "gemma-3-1b-it",
        "model_size_in_billions": 1,
        "quantization": "Q4_K_M",
    });
    let v = launch_from_path(&server.url, &gguf, spec).await;
    let uid = v["model_uid"].as_str().unwrap().to_owned();
    let out = run_python(
        "openai_gemma3_chat.py",
        &[&server.url, &uid, &prompt_ids.len().to_string()],
    )
    .await;
    assert!(out.contains("openai gemma3 chat: ok"), "{out}");
    println!("{out}");
    server.stop().await;
}
