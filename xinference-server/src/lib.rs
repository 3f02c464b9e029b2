//! xinference-server: the Xinference-compatible HTTP surface over `xinference-core`.
//!
//! Handlers only parse, call the runtime, and convert; every error becomes `{"detail": ...}`
//! with the status decided by [`xinference_core::ErrorKind::http_status`].

mod error;
mod key_limit;
mod metrics;
mod model_permission;
mod openapi;
mod origin;
mod routes;
pub mod ui;

pub use error::{Anthropic, ApiError, ApiJson, ApiResult, ErrorShape, OpenAi, Xinference};
pub use routes::{router, router_with_ui, ROUTES};

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use xinference_core::Runtime;

/// How long [`serve`] lets in-flight requests finish after the shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `runtime` on `listener` until `shutdown` resolves, then finishes in-flight requests
/// for up to [`DEFAULT_SHUTDOWN_GRACE`] and terminates every model.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_grace(runtime, listener, shutdown, DEFAULT_SHUTDOWN_GRACE).await
}

/// Serves `runtime` on `listener` until `shutdown` resolves. Then no new connection is
/// accepted, idle connections close, and requests in flight (streams included) run to their
/// end for up to `grace`; whatever is still running after that is cut. Every model is
/// terminated before this returns.
pub async fn serve_with_grace(
    runtime: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(
        "xinference-rs {} listening on http://{addr} (SIMD: {}; compute threads: {})",
        env!("CARGO_PKG_VERSION"),
        simd_line(),
        xinference_core::compute::threads()
    );
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing the requests in flight (up to {grace:?})");
        let _ = signalled.send(());
    };
    // The peer address of each connection is kept, for the per-client request limit.
    let app = router(runtime.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .into_future();
    let deadline = async move {
        match on_signal.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server ended without the signal (an accept error): nothing to wait for.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served?,
        () = deadline => tracing::warn!("requests still running after {grace:?}: cutting them"),
    }
    runtime.terminate_all().await;
    tracing::info!("shut down");
    Ok(())
}

/// The SIMD features of this build, for the start-up log line.
pub fn simd_line() -> String {
    let f = xinference_core::simd_features();
    if f.is_empty() {
        "none (build with -C target-cpu=native for fast kernels)".to_owned()
    } else {
        f.join(", ")
    }
}
