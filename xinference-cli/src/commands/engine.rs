//! `engine`: which engines can run a model, with which formats, sizes and quantizations.

use super::EndpointArgs;
use crate::table::{self, Cell};
use anyhow::Result;
use clap::Args;
use serde_json::Value;
use xinference_core::registry::normalise_size;
use xinference_core::ModelType;

/// Options of `engine`.
#[derive(Args)]
pub struct EngineArgs {
    /// Model name.
    #[arg(short = 'n', long)]
    model_name: String,
    /// Only this engine, matched case-insensitively (`-en` is accepted).
    #[arg(long)]
    model_engine: Option<String>,
    /// Only this format (pytorch, ggufv2, ...).
    #[arg(short = 'f', long)]
    model_format: Option<String>,
    /// Only this size in billions (`0_5` and `0.5` are the same).
    #[arg(short = 's', long)]
    model_size_in_billions: Option<String>,
    /// Only this quantization.
    #[arg(short = 'q', long)]
    quantization: Option<String>,
    /// Model type (default: search every type).
    #[arg(short = 't', long)]
    model_type: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

impl EngineArgs {
    /// The filters given, spelled as options (for messages).
    fn filters(&self) -> Vec<String> {
        [
            ("--model-engine", &self.model_engine),
            ("--model-format", &self.model_format),
            ("--model-size-in-billions", &self.model_size_in_billions),
            ("--quantization", &self.quantization),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.as_ref().map(|v| format!("{flag} {v}")))
        .collect()
    }
}

/// Prints `Name Engine Format Size (in billions) Quantization`, filtered like Xinference's
/// `engine` command, and why the engines that cannot run the model cannot.
pub async fn engine(args: EngineArgs) -> Result<()> {
    let t = args
        .model_type
        .as_deref()
        .map(str::parse::<ModelType>)
        .transpose()?;
    let options = args
        .endpoint
        .client()?
        .query_engines(&args.model_name, t)
        .await?;
    let engines: Vec<&String> = match &args.model_engine {
        None => options.keys().collect(),
        Some(want) => match options.keys().find(|k| k.eq_ignore_ascii_case(want)) {
            Some(k) => vec![k],
            None => {
                let known: Vec<&str> = options.keys().map(String::as_str).collect();
                println!(
                    "Xinference does not support this inference engine \"{want}\" for {}; its engines: {}.",
                    args.model_name,
                    known.join(", ")
                );
                return Ok(());
            }
        },
    };
    let want_size = args.model_size_in_billions.as_deref().map(normalise_size);
    let mut rows = Vec::new();
    let mut unavailable = Vec::new();
    for engine in engines {
        match &options[engine] {
            Value::Array(params) => {
                for p in params {
                    let format = p["model_format"].as_str().unwrap_or("");
                    let size = match &p["model_size_in_billions"] {
                        Value::Null => "None".to_owned(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if args
                        .model_format
                        .as_deref()
                        .is_some_and(|f| !f.eq_ignore_ascii_case(format))
                        || want_size
                            .as_deref()
                            .is_some_and(|s| s != normalise_size(&size))
                    {
                        continue;
                    }
                    for q in p["quantizations"].as_array().cloned().unwrap_or_default() {
                        let q = q.as_str().unwrap_or("");
                        if args
                            .quantization
                            .as_deref()
                            .is_some_and(|want| !want.eq_ignore_ascii_case(q))
                        {
                            continue;
                        }
                        rows.push(vec![
                            Cell::text(&args.model_name),
                            Cell::text(engine.as_str()),
                            Cell::text(format),
                            Cell::text(size.clone()),
                            Cell::text(q),
                        ]);
                    }
                }
            }
            Value::String(reason) => unavailable.push(format!("  {engine}: {reason}")),
            _ => {}
        }
    }
    let mut explained = false;
    if rows.is_empty() {
        let filters = args.filters();
        if filters.is_empty() {
            let end = if unavailable.is_empty() { "." } else { ":" };
            println!(
                "No engine of this build can run {} yet{end}",
                args.model_name
            );
            explained = true;
        } else {
            println!(
                "Xinference does not support your provided params: {} for the model {}.",
                filters.join(", "),
                args.model_name
            );
        }
    } else {
        println!(
            "{}",
            table::simple(
                &[
                    "Name",
                    "Engine",
                    "Format",
                    "Size (in billions)",
                    "Quantization"
                ],
                &rows
            )
        );
    }
    if !unavailable.is_empty() {
        if !rows.is_empty() {
            println!();
        }
        if !explained {
            println!("Engines that cannot run {} yet:", args.model_name);
        }
        for line in unavailable {
            println!("{line}");
        }
    }
    Ok(())
}
