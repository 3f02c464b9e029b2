//! The web UI: static files (HTML, ES modules, CSS) from `xinference-server/ui/`, embedded in
//! the binary and served at `/` (the page) and `/ui/...` (its modules and styles).
//!
//! The UI is no API: it is served by the router's fallback, so it never shadows a route, and
//! any other unknown path (`/v1/...` included) is still a JSON 404. It talks to the server only
//! through the public API, from the same origin (no CORS needed). Its files need no credential;
//! the API calls it makes do (the page logs in when the server has auth on).
//!
//! Dev mode: with `XINFERENCE_UI_DIR=path/to/ui` the files are read from that folder on every
//! request, so edits show on reload without a rebuild.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::path::PathBuf;
use xinference_core::Error;

/// The environment variable naming a folder to serve the UI from instead of the embedded copy.
pub const UI_DIR_ENV: &str = "XINFERENCE_UI_DIR";

/// Files under `xinference-server/ui/`, in the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "ui/"]
struct Embedded;

/// Where the UI's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The copy compiled into the binary.
    Embedded,
    /// A folder read on each request (dev mode).
    Dir(PathBuf),
}

impl Source {
    /// [`UI_DIR_ENV`]'s folder when it is set, else the embedded copy.
    pub fn from_env() -> Source {
        match std::env::var_os(UI_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Source::Dir(PathBuf::from(dir)),
            _ => Source::Embedded,
        }
    }
}

/// The file name under `ui/` that `path` asks for, when `path` is the UI's: `/` and `/ui/` are
/// `index.html`, `/ui/<name>` is `<name>`. Names with empty, `.` or `..` parts, backslashes or
/// hidden parts are refused.
pub fn asset_name(path: &str) -> Option<Cow<'static, str>> {
    if path == "/" || path == "/ui/" || path == "/ui" {
        return Some(Cow::Borrowed("index.html"));
    }
    let name = path.strip_prefix("/ui/")?;
    let plain = name.split('/').all(|part| {
        !part.is_empty() && !part.starts_with('.') && !part.contains('\\') && !part.contains('\0')
    });
    plain.then(|| Cow::Owned(name.to_owned()))
}

/// Whether `method` and `path` ask for a UI file (the auth middleware lets these through).
pub fn is_ui_request(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && asset_name(path).is_some()
}

/// A file's bytes and a tag that changes when they do.
struct Asset {
    bytes: Cow<'static, [u8]>,
    etag: String,
}

fn load(source: &Source, name: &str) -> Option<Asset> {
    match source {
        Source::Embedded => Embedded::get(name).map(|file| Asset {
            etag: format!(
                "\"{}\"",
                file.metadata
                    .sha256_hash()
                    .iter()
                    .take(12)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
            bytes: file.data,
        }),
        Source::Dir(dir) => {
            let bytes = std::fs::read(dir.join(name)).ok()?;
            // Dev mode: never cached.
            Some(Asset {
                bytes: Cow::Owned(bytes),
                etag: String::new(),
            })
        }
    }
}

/// Headers every UI file carries: its type, revalidation on each load, and a content policy
/// that lets the page run only its own scripts and talk only to this server.
fn headers(name: &str, etag: &str) -> HeaderMap {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        if !etag.is_empty() {
            h.insert(header::ETAG, v);
        }
    }
    h
}

/// The router's fallback: a UI file for a GET or HEAD of a UI path, else the JSON 404 that
/// every unknown path gets.
pub async fn fallback(source: Source, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some(name) = asset_name(&path).filter(|_| is_ui_request(request.method(), &path)) else {
        return ApiError::<crate::Xinference>::from(Error::not_found("Not Found")).into_response();
    };
    let asset = match source {
        Source::Embedded => load(&source, &name),
        Source::Dir(_) => {
            let name = name.clone().into_owned();
            tokio::task::spawn_blocking(move || load(&source, &name))
                .await
                .ok()
                .flatten()
        }
    };
    let Some(asset) = asset else {
        return ApiError::<crate::Xinference>::from(Error::not_found(format!("No UI file {path}")))
            .into_response();
    };
    let headers = headers(&name, &asset.etag);
    let unchanged = !asset.etag.is_empty()
        && request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if request.method() == Method::HEAD {
        return (StatusCode::OK, headers).into_response();
    }
    (StatusCode::OK, headers, asset.bytes.into_owned()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_paths_name_files_under_ui() {
        assert_eq!(asset_name("/").as_deref(), Some("index.html"));
        assert_eq!(asset_name("/ui/").as_deref(), Some("index.html"));
        assert_eq!(asset_name("/ui/app.mjs").as_deref(), Some("app.mjs"));
        assert_eq!(
            asset_name("/ui/vendor/preact.mjs").as_deref(),
            Some("vendor/preact.mjs")
        );
        assert_eq!(asset_name("/ui/../Cargo.toml"), None);
        assert_eq!(asset_name("/ui/a//b"), None);
        assert_eq!(asset_name("/ui/.hidden"), None);
        assert_eq!(asset_name("/ui/a\\..\\b"), None);
        assert_eq!(asset_name("/v1/models"), None);
        assert_eq!(asset_name("/uix"), None);
        assert!(is_ui_request(&Method::GET, "/"));
        assert!(is_ui_request(&Method::HEAD, "/ui/app.mjs"));
        assert!(!is_ui_request(&Method::POST, "/"));
        assert!(!is_ui_request(&Method::GET, "/v1/nowhere"));
    }

    #[test]
    fn the_page_and_its_modules_are_embedded() {
        let index = load(&Source::Embedded, "index.html").expect("index.html embedded");
        let text = String::from_utf8_lossy(&index.bytes);
        assert!(text.contains("/ui/app.mjs"), "{text}");
        assert!(load(&Source::Embedded, "app.mjs").is_some());
        assert!(load(&Source::Embedded, "vendor/preact.mjs").is_some());
        assert!(load(&Source::Embedded, "vendor/htm.mjs").is_some());
        assert!(!index.etag.is_empty());
    }

    #[test]
    fn modules_are_served_as_javascript() {
        let h = headers("app.mjs", "\"x\"");
        let ct = h[header::CONTENT_TYPE].to_str().unwrap();
        assert!(ct.contains("javascript"), "{ct}");
        assert_eq!(h[header::ETAG], "\"x\"");
        assert_eq!(headers("index.html", "")[header::CONTENT_TYPE], "text/html");
    }
}
