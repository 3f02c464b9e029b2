//! `xinference local`: start the server and serve until Ctrl-C.

use anyhow::{Context, Result};
use clap::Args;
use std::sync::Arc;
use xinference_core::{Runtime, RuntimeConfig};

/// Options of `xinference local`.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(short, long, default_value_t = 9997)]
    port: u16,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Browser origins whose pages may call the API (comma-separated, `*` for any; default:
    /// none, and cross-origin requests that change state are refused).
    #[arg(long, env = "XINFERENCE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
}

/// Starts the server and serves until Ctrl-C.
pub async fn serve(args: ServerArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {}", args.log_level))?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let mut config = RuntimeConfig::from_env();
    config.allowed_origins =
        xinference_core::runtime::parse_origins(&args.allowed_origins.join(","));
    let runtime = Arc::new(Runtime::new(config)?);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    xinference_server::serve(runtime, listener, shutdown).await?;
    Ok(())
}
