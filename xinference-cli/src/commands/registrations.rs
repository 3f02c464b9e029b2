//! `registrations`, `register` and `unregister`: the model registry, listed and changed.

use super::EndpointArgs;
use crate::table::{self, Cell};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use xinference_core::runtime::default_home;
use xinference_core::{ModelType, Registry};

/// Options of `registrations`.
#[derive(Args)]
pub struct RegistrationsArgs {
    /// Model type: LLM, embedding, rerank, image, audio, flexible.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Prints Xinference's registrations table. Without an endpoint, reads the registry in process.
pub async fn registrations(args: RegistrationsArgs) -> Result<()> {
    let t: ModelType = args.model_type.parse()?;
    let families: Vec<Value> = match &args.endpoint.endpoint {
        Some(_) => {
            let client = args.endpoint.client()?;
            let mut out = Vec::new();
            for r in client.list_model_registrations(t).await? {
                let mut family = client.get_model_registration(t, &r.model_name).await?;
                family["is_builtin"] = Value::Bool(r.is_builtin);
                out.push(family);
            }
            out
        }
        None => {
            let registry = Registry::open(&default_home())?;
            registry
                .families(t)
                .into_iter()
                .map(|f| {
                    let mut j = f.json;
                    j["is_builtin"] = Value::Bool(f.is_builtin);
                    j
                })
                .collect()
        }
    };
    let (headers, rows) = registration_table(t, &families)?;
    println!("{}", table::simple(&headers, &rows));
    Ok(())
}

/// The middle columns of one model type's table: their headers, and a family's cells.
type Columns = (&'static [&'static str], fn(&Value) -> Vec<Cell>);

/// Xinference's registrations table for one model type: `Type`, `Name`, the type's own
/// columns, `Is-built-in`; one row per family.
fn registration_table(
    t: ModelType,
    families: &[Value],
) -> Result<(Vec<&'static str>, Vec<Vec<Cell>>)> {
    let (label, (middle_headers, middle)): (&str, Columns) = match t {
        ModelType::Llm => (
            "LLM",
            (&["Language", "Ability"], |f| {
                vec![
                    Cell::list(&strings(f, "model_lang")),
                    Cell::list(&strings(f, "model_ability")),
                ]
            }),
        ),
        ModelType::Embedding => (
            "embedding",
            (&["Language", "Dimensions"], |f| {
                vec![
                    Cell::list(&strings(f, "language")),
                    Cell::text(text(&f["dimensions"])),
                ]
            }),
        ),
        ModelType::Rerank => (
            "rerank",
            (&["Language"], |f| vec![Cell::list(&strings(f, "language"))]),
        ),
        ModelType::Image => (
            "image",
            (&["Family"], |f| vec![Cell::text(text(&f["model_family"]))]),
        ),
        ModelType::Audio => (
            "audio",
            (&["Family", "Multilingual"], |f| {
                let multilingual = f["multilingual"].as_bool().unwrap_or(false);
                vec![
                    Cell::text(text(&f["model_family"])),
                    Cell::boolean(multilingual),
                ]
            }),
        ),
        ModelType::Flexible => ("flexible", (&[], |_| Vec::new())),
        ModelType::Video => bail!("model type video is not supported by `registrations`"),
    };
    let mut headers = vec!["Type", "Name"];
    headers.extend_from_slice(middle_headers);
    headers.push("Is-built-in");
    let rows = families
        .iter()
        .map(|f| {
            let mut row = vec![Cell::text(label), Cell::text(text(&f["model_name"]))];
            row.extend(middle(f));
            row.push(Cell::boolean(f["is_builtin"].as_bool().unwrap_or(false)));
            row
        })
        .collect();
    Ok((headers, rows))
}

/// A registration field as a list of strings (a single string is a list of one).
fn strings(v: &Value, key: &str) -> Vec<String> {
    match &v[key] {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// A registration field as Xinference prints it (`None` for a missing value).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

/// Options of `register`.
#[derive(Args)]
pub struct RegisterArgs {
    /// Model type.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    /// JSON file with the model family.
    #[arg(short = 'f', long)]
    file: std::path::PathBuf,
    /// Keep the registration across server restarts.
    #[arg(short = 'p', long)]
    persist: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Registers a custom model from a file.
pub async fn register(args: RegisterArgs) -> Result<()> {
    let t: ModelType = args.model_type.parse()?;
    let json = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    serde_json::from_str::<Value>(&json)
        .with_context(|| format!("{} is not valid JSON", args.file.display()))?;
    args.endpoint
        .client()?
        .register_model(t, &json, args.persist)
        .await?;
    Ok(())
}

/// Options of `unregister`.
#[derive(Args)]
pub struct UnregisterArgs {
    /// Model type.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    /// Name of the custom model.
    #[arg(short = 'n', long)]
    model_name: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Unregisters a custom model.
pub async fn unregister(args: UnregisterArgs) -> Result<()> {
    let t: ModelType = args.model_type.parse()?;
    args.endpoint
        .client()?
        .unregister_model(t, &args.model_name)
        .await?;
    Ok(())
}
