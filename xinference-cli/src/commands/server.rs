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
    /// Auth config file (Xinference's `--auth-config` JSON: users, hashed or clear passwords,
    /// permissions, API keys). Turns access control on.
    #[arg(long, env = "XINFERENCE_AUTH_CONFIG")]
    auth_config: Option<std::path::PathBuf>,
    /// Serve without access control on a non-loopback address (`-H 0.0.0.0`), which is
    /// refused otherwise.
    #[arg(long, conflicts_with = "auth_config")]
    no_auth: bool,
    /// Folders that launches may load local models from (`model_path`, a registration's
    /// `model_uri`) while auth is on; comma-separated. Default: none, and local paths are
    /// refused with 403 when auth is on.
    #[arg(long, env = "XINFERENCE_MODEL_ROOTS", value_delimiter = ',')]
    model_roots: Vec<std::path::PathBuf>,
    /// Requests one API key (or logged-in user) may have in flight at once; more are answered
    /// 429 with Retry-After. Without auth (or a request without a key), the limit applies per
    /// client IP address instead. Public routes (/health, /metrics) are not limited. Default:
    /// no limit.
    #[arg(long, env = "XINFERENCE_MAX_CONCURRENT_REQUESTS_PER_KEY", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_requests_per_key: Option<u32>,
}

/// Whether `host` names only this machine (`localhost`, 127.0.0.0/8, ::1).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Starts the server and serves until Ctrl-C or SIGTERM, then lets the requests in flight
/// finish (up to `--shutdown-timeout`) and exits.
pub async fn serve(args: ServerArgs) -> Result<()> {
    if !is_loopback(&args.host) && args.auth_config.is_none() && !args.no_auth {
        anyhow::bail!(
            "refusing to serve {} without access control: pass --auth-config FILE, or --no-auth to serve it open",
            args.host
        );
    }
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
    config.auth_config = args.auth_config.clone();
    config.model_roots = args.model_roots.clone();
    config.max_concurrent_per_key = args.max_concurrent_requests_per_key.map(|n| n as usize);
    let runtime = Arc::new(Runtime::new(config)?);
    if runtime.auth().is_some() {
        tracing::info!("access control on: every route but /status, /health, /metrics, /v1/cluster/auth and /token needs a token or API key");
    }
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

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["0.0.0.0", "::", "192.168.1.2", "example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
