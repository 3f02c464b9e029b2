//! `chat` and `generate`: an interactive session with a running LLM.

use super::EndpointArgs;
use anyhow::Result;
use clap::Args;
use serde_json::Value;

/// Options of `chat` and `generate`.
#[derive(Args)]
pub struct ReplArgs {
    /// Uid of the running model.
    #[arg(long)]
    model_uid: String,
    /// Most tokens per answer.
    #[arg(long = "max_tokens", alias = "max-tokens", default_value_t = 512)]
    max_tokens: u64,
    /// Print the answer as it is generated (`--stream false` waits for the whole answer).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    stream: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// The interactive loop of `chat` (keeps the conversation) and `generate` (one prompt at a time).
pub async fn repl(args: ReplArgs, chat: bool) -> Result<()> {
    use futures::StreamExt;
    use std::io::{BufRead, Write};
    let model = args
        .endpoint
        .client()?
        .get_model(&args.model_uid)
        .await?
        .into_llm()?;
    let mut history: Vec<Value> = Vec::new();
    let stdin = std::io::stdin();
    loop {
        print!("{}", if chat { "User: " } else { "Prompt: " });
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']).to_owned();
        if line.is_empty() {
            break;
        }
        let mut answer = String::new();
        if chat {
            history.push(serde_json::json!({"role": "user", "content": line}));
            print!("Assistant: ");
            let mut request = xinference_core::ChatCompletionRequest::new(history.clone());
            request.generation.max_tokens = Some(args.max_tokens);
            if args.stream {
                let mut chunks = model.chat_stream(request).await?;
                while let Some(chunk) = chunks.next().await {
                    for choice in chunk?.choices {
                        if let Some(text) = choice.delta.content {
                            print!("{text}");
                            std::io::stdout().flush()?;
                            answer.push_str(&text);
                        }
                    }
                }
            } else {
                let done = model.chat(request).await?;
                answer = done
                    .choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.message.content)
                    .unwrap_or_default();
                print!("{answer}");
            }
            history.push(serde_json::json!({"role": "assistant", "content": answer}));
        } else {
            let mut request = xinference_core::CompletionRequest::new(line);
            request.generation.max_tokens = Some(args.max_tokens);
            if args.stream {
                let mut chunks = model.generate_stream(request).await?;
                while let Some(chunk) = chunks.next().await {
                    for choice in chunk?.choices {
                        print!("{}", choice.text);
                        std::io::stdout().flush()?;
                    }
                }
            } else {
                let done = model.generate(request).await?;
                print!(
                    "{}",
                    done.choices
                        .into_iter()
                        .next()
                        .map(|c| c.text)
                        .unwrap_or_default()
                );
            }
        }
        println!();
    }
    Ok(())
}
