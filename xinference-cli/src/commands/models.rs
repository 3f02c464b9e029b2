//! `launch`, `list` and `terminate`: running models on a server.

use super::EndpointArgs;
use crate::table::{self, Cell};
use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::time::Duration;
use xinference_core::{InstanceStatus, LaunchRequest, ModelType};

/// Options of `launch`.
#[derive(Args)]
pub struct LaunchArgs {
    /// Registry name of the model.
    #[arg(short = 'n', long)]
    model_name: String,
    /// Model type.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    /// Engine (required for LLMs; `-en` is accepted).
    #[arg(long)]
    model_engine: Option<String>,
    /// Uid to serve the model under.
    #[arg(short = 'u', long)]
    model_uid: Option<String>,
    /// Size in billions.
    #[arg(short = 's', long = "size-in-billions")]
    size_in_billions: Option<String>,
    /// Format (pytorch, ggufv2).
    #[arg(short = 'f', long)]
    model_format: Option<String>,
    /// Quantization.
    #[arg(short = 'q', long)]
    quantization: Option<String>,
    /// Replicas.
    #[arg(short = 'r', long, default_value_t = 1)]
    replica: u32,
    /// Local model file or folder.
    #[arg(long)]
    model_path: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Launches without waiting, shows a progress bar while downloading/loading, prints the uid.
pub async fn launch(args: LaunchArgs) -> Result<()> {
    let client = args.endpoint.client()?;
    let mut request = LaunchRequest::new(&args.model_name).replica(args.replica);
    request.model_type = Some(args.model_type.clone());
    request.model_engine = args.model_engine.clone();
    request.model_uid = args.model_uid.clone();
    request.model_size_in_billions = args.size_in_billions.clone().map(Value::String);
    request.model_format = args.model_format.clone();
    request.quantization = args.quantization.clone();
    request.model_path = args.model_path.clone();
    let uid = client.launch_model_with(request, false).await?;
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{elapsed_precise}] [{wide_bar}] {percent:>3}%")
            .expect("valid template")
            .progress_chars("=> "),
    );
    loop {
        let info = client.instance_info(None, Some(&uid)).await?;
        let Some(info) = info.into_iter().next() else {
            bar.abandon();
            bail!("model {uid} disappeared while launching");
        };
        if let Ok(p) = client.launch_progress(&uid).await {
            bar.set_position((p.progress * 1000.0) as u64);
            bar.set_message(format!("{:?}", p.stage).to_lowercase());
        }
        match info.status {
            InstanceStatus::Ready => {
                bar.finish_and_clear();
                break;
            }
            InstanceStatus::Error => {
                bar.abandon();
                bail!(
                    "{}",
                    info.error.unwrap_or_else(|| "launch failed".to_owned())
                );
            }
            InstanceStatus::Terminated | InstanceStatus::Terminating => {
                bar.abandon();
                bail!("launch of {uid} was cancelled");
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("Model uid: {uid}");
    Ok(())
}

/// Prints one table per model type that has running models.
pub async fn list(args: EndpointArgs) -> Result<()> {
    let models: std::collections::BTreeMap<_, _> = args
        .client()?
        .list_models()
        .await?
        .into_iter()
        .map(|(uid, d)| (uid, d.into_json()))
        .collect();
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "None".to_owned(),
        Some(other) => other.to_string(),
    };
    let mut printed = false;
    for t in [
        ModelType::Llm,
        ModelType::Embedding,
        ModelType::Rerank,
        ModelType::Image,
        ModelType::Audio,
    ] {
        let of_type: Vec<_> = models
            .iter()
            .filter(|(_, d)| d.get("model_type").and_then(Value::as_str) == Some(t.as_str()))
            .collect();
        if of_type.is_empty() {
            continue;
        }
        let (headers, rows): (Vec<&str>, Vec<Vec<Cell>>) = match t {
            ModelType::Llm => (
                vec![
                    "UID",
                    "Type",
                    "Name",
                    "Format",
                    "Size (in billions)",
                    "Quantization",
                ],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text("LLM"),
                            Cell::text(text(d.get("model_name"))),
                            Cell::text(text(d.get("model_format"))),
                            Cell::text(text(d.get("model_size_in_billions"))),
                            Cell::text(text(d.get("quantization"))),
                        ]
                    })
                    .collect(),
            ),
            ModelType::Embedding => (
                vec!["UID", "Type", "Name", "Dimensions"],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text("embedding"),
                            Cell::text(text(d.get("model_name"))),
                            Cell::text(text(d.get("dimensions"))),
                        ]
                    })
                    .collect(),
            ),
            ModelType::Image => (
                vec!["UID", "Type", "Name", "Controlnet"],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text("image"),
                            Cell::text(text(d.get("model_name"))),
                            Cell::text(text(d.get("controlnet"))),
                        ]
                    })
                    .collect(),
            ),
            _ => (
                vec!["UID", "Type", "Name"],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text(t.as_str()),
                            Cell::text(text(d.get("model_name"))),
                        ]
                    })
                    .collect(),
            ),
        };
        println!("{}\n", table::simple(&headers, &rows));
        printed = true;
    }
    if !printed {
        println!("No running models.");
    }
    Ok(())
}

/// Options of `terminate`.
#[derive(Args)]
pub struct TerminateArgs {
    /// Uid of the model to stop.
    #[arg(long)]
    model_uid: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Stops a model.
pub async fn terminate(args: TerminateArgs) -> Result<()> {
    args.endpoint
        .client()?
        .terminate_model(&args.model_uid)
        .await?;
    Ok(())
}
