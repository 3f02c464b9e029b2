//! xinference-server: the Xinference-compatible HTTP surface over `xinference-core`.
//!
//! Handlers only parse, call the runtime, and convert; every error becomes `{"detail": ...}`
//! with the status decided by [`xinference_core::ErrorKind::http_status`].

mod error;
mod extract;
mod openapi;
mod origin;
mod routes;

pub use error::ApiError;
pub use routes::{router, ROUTES};

use std::net::SocketAddr;
use std::sync::Arc;
use xinference_core::Runtime;

/// Serves `runtime` on `listener` until `shutdown` resolves, then terminates every model.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(
        "xinference-rs {} listening on http://{addr} (SIMD: {}; compute threads: {})",
        env!("CARGO_PKG_VERSION"),
        simd_line(),
        xinference_core::compute::threads()
    );
    let app = router(runtime.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    runtime.terminate_all().await;
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
