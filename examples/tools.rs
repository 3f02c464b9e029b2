//! Tool calling: offer the model a `get_weather` function, run the call it asks for (here a
//! canned forecast), hand the result back, and print its final answer.
//!
//!     cargo run --release --example tools -- \
//!         ~/.cache/xinference-rs/test-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
//!         "What is the weather like in Paris today?"
//!
//! The first argument is a local GGUF file of Qwen2.5-Coder-0.5B-Instruct; without it (or with
//! `-`) the registry's file is downloaded from the Hugging Face hub into `$XINFERENCE_HOME`.

use serde_json::{json, Value};
use xinference::{ChatCompletionRequest, ChatMessage, Client, LaunchRequest};

/// The forecast our pretend weather service gives for `arguments` (the model's JSON), as JSON.
fn get_weather(arguments: &str) -> String {
    let args: Value = serde_json::from_str(arguments).unwrap_or(Value::Null);
    let city = args["city"].as_str().unwrap_or("somewhere");
    json!({"city": city, "temperature": 18, "unit": "celsius", "sky": "sunny"}).to_string()
}

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|p| p != "-");
    let question = args
        .next()
        .unwrap_or_else(|| "What is the weather like in Paris today?".to_owned());

    let client = Client::local_from_env()?;
    let mut launch = LaunchRequest::llm("qwen2.5-coder-instruct")
        .model_format("ggufv2")
        .model_size_in_billions("0_5")
        .quantization("q4_k_m");
    if let Some(path) = path {
        launch = launch.model_path(path);
    }
    let model = client.launch_llm(launch).await?;

    let weather = json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }});
    let question = ChatMessage::user(question);
    let first = ChatCompletionRequest::new([question.clone()])
        .tools(vec![weather.clone()])
        .temperature(0.0)
        .max_tokens(96);
    let answer = model.chat(first).await?;
    let calls = answer.choices[0].message.tool_calls.clone();
    let Some(calls) = calls.filter(|c| !c.is_empty()) else {
        println!("no tool call; the model answered:");
        println!(
            "{}",
            answer.choices[0].message.content.as_deref().unwrap_or("")
        );
        return client.terminate_model(model.uid()).await;
    };

    // Run each call, then hand the results back with the calls that asked for them.
    let mut messages = vec![question, ChatMessage::assistant_tool_calls(calls.clone())];
    for call in &calls {
        let result = get_weather(&call.function.arguments);
        println!(
            "tool call: {}({}) -> {result}",
            call.function.name, call.function.arguments
        );
        messages.push(ChatMessage::tool(&call.id, result));
    }
    let second = ChatCompletionRequest::new(messages)
        .tools(vec![weather])
        .temperature(0.0)
        .max_tokens(64);
    let answer = model.chat(second).await?;
    let choice = &answer.choices[0];
    println!(
        "answer: {}",
        choice.message.content.as_deref().unwrap_or("")
    );
    println!("finish_reason: {}", choice.finish_reason);
    client.terminate_model(model.uid()).await
}
