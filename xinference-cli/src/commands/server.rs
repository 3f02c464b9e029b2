//! `xinference local`: start the server and serve until Ctrl-C or SIGTERM.

use anyhow::{Context, Result};
use clap::Args;
use std::sync::Arc;
use std::time::Duration;
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
    /// Log line format: `text`, or `json` (one object per line, for log collectors).
    #[arg(long, env = "XINFERENCE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Seconds that requests in flight may take to finish after Ctrl-C or SIGTERM before they
    /// are cut and the server exits.
    #[arg(long, env = "XINFERENCE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    shutdown_timeout: u64,
}

/// Starts the server and serves until Ctrl-C or SIGTERM, then lets the requests in flight
/// finish (up to `--shutdown-timeout`) and exits.
pub async fn serve(args: ServerArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {}", args.log_level))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let mut config = RuntimeConfig::from_env();
    config.allowed_origins =
        xinference_core::runtime::parse_origins(&args.allowed_origins.join(","));
    let runtime = Arc::new(Runtime::new(config)?);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let grace = Duration::from_secs(args.shutdown_timeout);
    xinference_server::serve_with_grace(runtime, listener, shutdown_signal(), grace).await?;
    Ok(())
}

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
