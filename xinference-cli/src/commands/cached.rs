//! `cached`: the models in the local cache.

use super::EndpointArgs;
use crate::table::{self, Cell};
use anyhow::Result;
use clap::Args;

/// Options of `cached`.
#[derive(Args)]
pub struct CachedArgs {
    /// Only this model's entries.
    #[arg(short = 'n', long = "model_name", alias = "model-name")]
    model_name: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Prints the cache entries in tabulate's "pretty" format, as Xinference does (a missing value
/// is shown as `-`, and an empty cache as a sentence instead of an empty table).
pub async fn cached(args: CachedArgs) -> Result<()> {
    let entries = args
        .endpoint
        .client()?
        .list_cached_models(args.model_name.as_deref())
        .await?;
    if entries.is_empty() {
        println!("There are no cache files.");
        return Ok(());
    }
    let headers = [
        "model_name",
        "model_size_in_billions",
        "model_format",
        "quantization",
        "model_version",
        "path",
        "real_path",
        "actor_ip_address",
    ];
    let rows: Vec<Vec<Cell>> = entries
        .iter()
        .map(|e| {
            vec![
                Cell::text(&e.model_name),
                Cell::text(
                    e.model_size_in_billions
                        .clone()
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::text(&e.model_format),
                Cell::text(&e.quantization),
                Cell::text(&e.model_version),
                Cell::text(&e.path),
                Cell::text(&e.real_path),
                Cell::text(&e.actor_ip_address),
            ]
        })
        .collect();
    println!("cached_model: ");
    println!("{}", table::pretty(&headers, &rows));
    Ok(())
}
