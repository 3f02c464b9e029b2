//! Which browser pages may use the API. Without this, any web page open in the user's browser
//! could launch models, register specs and read answers from a server on localhost.
//!
//! - CORS headers are sent only for the origins the operator allowed
//!   ([`RuntimeConfig::allowed_origins`](xinference_core::RuntimeConfig), `--allowed-origins`);
//!   none by default, so browsers keep other origins' scripts from reading any answer.
//! - A state-changing request (anything but GET, HEAD, OPTIONS) that carries an `Origin`
//!   header naming neither this server nor an allowed origin is refused with 403 before it
//!   reaches a handler: a cross-site form or `fetch` cannot act, even unread.
//!   Clients that send no `Origin` (SDKs, curl, the CLI) are not affected.

use crate::error::{ApiError, Xinference};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};
use xinference_core::Error;

/// The CORS layer for `allowed` origins: none, a list, or any (`*`).
pub fn cors_layer(allowed: &[String]) -> CorsLayer {
    if allowed.iter().any(|o| o == "*") {
        return CorsLayer::permissive();
    }
    let origins: Vec<HeaderValue> = allowed
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(tower_http::cors::Any)
        .allow_headers(tower_http::cors::Any)
}

/// Whether a request with `origin` (and `host`, its `Host` header) may change state.
pub fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    let same_origin = host.is_some_and(|host| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    });
    same_origin
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

/// Middleware: refuses cross-origin state-changing requests from origins not allowed.
pub async fn refuse_foreign_writes(
    allowed: Arc<Vec<String>>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            if !origin_allowed(origin, host, &allowed) {
                return ApiError::<Xinference>::from(Error::forbidden(format!(
                    "Cross-origin request from {origin} refused: start the server with \
                     --allowed-origins {origin} to let that page use the API"
                )))
                .into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_server_itself_and_allowed_origins_may_write() {
        let none: Vec<String> = Vec::new();
        let host = Some("127.0.0.1:9997");
        assert!(origin_allowed("http://127.0.0.1:9997", host, &none));
        assert!(origin_allowed("http://127.0.0.1:9997/", host, &none));
        assert!(!origin_allowed("http://evil.example", host, &none));
        assert!(!origin_allowed("http://127.0.0.1:9998", host, &none));
        assert!(!origin_allowed("null", host, &none));
        assert!(!origin_allowed("http://127.0.0.1:9997", None, &none));
        let some = vec!["http://localhost:3000".to_owned()];
        assert!(origin_allowed("http://localhost:3000", host, &some));
        assert!(!origin_allowed("http://localhost:3001", host, &some));
        assert!(origin_allowed("http://anything", host, &["*".to_owned()]));
    }
}
