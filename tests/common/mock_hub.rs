//! A local stand-in for the Hugging Face hub, serving a model folder in the hub's URL layout
//! (`/api/models/{repo}/revision/{rev}` and `/{repo}/resolve/{rev}/{file}`), with the headers
//! and `Range` answers a hub client relies on. It records every request, can throttle bodies (so
//! a download can be watched), break connections mid-body (so resuming can be proven) and
//! inject the other faults a real hub or CDN shows ([`Fault`]: 5xx answers, a `Range` ignored,
//! bodies longer than announced, corrupted bytes).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The commit every revision of the mock repository resolves to.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Files at least this large are announced as LFS files (`x-linked-etag`, as the hub does).
const LFS_THRESHOLD: usize = 10 * 1024 * 1024;

/// One request the hub received.
#[derive(Debug, Clone)]
pub struct HubRequest {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The URL path.
    pub path: String,
    /// The `Range` header, when sent.
    pub range: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// Offset of the first body byte sent.
    pub body_start: u64,
    /// Body bytes sent before the body ended or the connection was broken.
    pub body_bytes: u64,
    /// The connection was broken before the announced length was sent.
    pub broken: bool,
}

impl HubRequest {
    /// The repository file this request resolves, when it is a file request.
    pub fn file(&self) -> Option<&str> {
        let rest = self.path.split_once("/resolve/")?.1;
        Some(rest.split_once('/')?.1)
    }
    /// The hub client's metadata probe (`Range: bytes=0-0`).
    pub fn is_metadata(&self) -> bool {
        self.range.as_deref() == Some("bytes=0-0")
    }
    /// A request for a file's body (not the metadata probe).
    pub fn is_body_of(&self, file: &str) -> bool {
        self.method == "GET" && self.file() == Some(file) && !self.is_metadata()
    }
}

/// Bodies sent in `chunk`-byte pieces, one every `delay`.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Bytes per piece.
    pub chunk: usize,
    /// Pause before each piece.
    pub delay: Duration,
}

/// A misbehaviour of the hub for a file's body requests (never its metadata probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers this status (a 5xx) with no body.
    Status(u16),
    /// Answers a resume (a `Range` from past byte 0) with the whole file (200), as a server
    /// without range support; requests from byte 0 do not use it up.
    IgnoreRange,
    /// Sends the requested bytes followed by this many more (a body longer than announced).
    LongBody(usize),
    /// Sends the right length with one byte changed in the middle of the file.
    Corrupt,
}

#[derive(Debug, Clone)]
struct Injected {
    file: String,
    fault: Fault,
    times: usize,
}

#[derive(Debug, Clone)]
struct Break {
    file: String,
    after: u64,
    times: usize,
}

struct HubFile {
    data: Bytes,
    etag: String,
}

struct Hub {
    repo_id: String,
    files: BTreeMap<String, HubFile>,
    requests: Mutex<Vec<HubRequest>>,
    throttle: Mutex<Option<Throttle>>,
    breaks: Mutex<Option<Break>>,
    faults: Mutex<Vec<Injected>>,
}

/// A running mock hub.
pub struct MockHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub url: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    hub: Arc<Hub>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl MockHub {
    /// Serves every file under `root`, plus the `extra` (path, content) files, as repository
    /// `repo_id` on an ephemeral port of 127.0.0.1.
    pub async fn start(root: &Path, repo_id: &str, extra: &[(&str, &[u8])]) -> MockHub {
        let mut files = BTreeMap::new();
        collect(root, root, &mut files);
        for (name, content) in extra {
            files.insert(
                (*name).to_owned(),
                hub_file(Bytes::copy_from_slice(content)),
            );
        }
        let hub = Arc::new(Hub {
            repo_id: repo_id.to_owned(),
            files,
            requests: Mutex::new(Vec::new()),
            throttle: Mutex::new(None),
            breaks: Mutex::new(None),
            faults: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new().fallback(handle).with_state(hub.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("mock hub runs");
        });
        MockHub {
            url: format!("http://{addr}"),
            addr,
            hub,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<HubRequest> {
        self.hub.requests.lock().unwrap().clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.hub.requests.lock().unwrap().clear();
    }

    /// The files the repository lists.
    pub fn files(&self) -> Vec<String> {
        self.hub.files.keys().cloned().collect()
    }

    /// Sends bodies slowly (`None`: at full speed).
    pub fn set_throttle(&self, throttle: Option<Throttle>) {
        *self.hub.throttle.lock().unwrap() = throttle;
    }

    /// Breaks the connection of the next `times` body requests of `file` once `after` bytes of
    /// the body were sent: the announced length is never reached.
    pub fn break_downloads(&self, file: &str, after: u64, times: usize) {
        *self.hub.breaks.lock().unwrap() = Some(Break {
            file: file.to_owned(),
            after,
            times,
        });
    }

    /// Answers the next `times` body requests of `file` with `fault` (after any faults
    /// injected before for that file).
    pub fn inject(&self, file: &str, fault: Fault, times: usize) {
        self.hub.faults.lock().unwrap().push(Injected {
            file: file.to_owned(),
            fault,
            times,
        });
    }

    /// Stops breaking connections and injecting faults.
    pub fn heal(&self) {
        *self.hub.breaks.lock().unwrap() = None;
        self.hub.faults.lock().unwrap().clear();
    }

    /// Stops the hub; its port refuses connections afterwards.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, HubFile>) {
    for entry in std::fs::read_dir(dir).expect("model folder is readable") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let name = path
                .strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let data = std::fs::read(&path).expect("model file is readable");
            out.insert(name, hub_file(Bytes::from(data)));
        }
    }
}

fn hub_file(data: Bytes) -> HubFile {
    let etag = format!("{:x}", Sha256::digest(&data));
    HubFile { data, etag }
}

async fn handle(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut record = HubRequest {
        method: method.to_string(),
        path: path.clone(),
        range: range.clone(),
        status: 200,
        body_start: 0,
        body_bytes: 0,
        broken: false,
    };
    let response = if method != Method::GET && method != Method::HEAD {
        not_found("method")
    } else if let Some(rest) = path.strip_prefix("/api/models/") {
        repo_info(&hub, rest)
    } else if let Some(rest) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(hub.repo_id.as_str()))
        .and_then(|p| p.strip_prefix("/resolve/"))
    {
        resolve(&hub, rest, range.as_deref(), &method, &mut record)
    } else {
        not_found("repository")
    };
    record.status = response.status().as_u16();
    hub.requests.lock().unwrap().push(record);
    response
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [("x-error-code", "EntryNotFound")],
        axum::Json(serde_json::json!({"error": format!("{what} not found")})),
    )
        .into_response()
}

fn known_revision(rev: &str) -> bool {
    rev == "main" || rev == COMMIT
}

/// `GET /api/models/{repo}/revision/{rev}`.
fn repo_info(hub: &Hub, rest: &str) -> Response {
    match rest.split_once("/revision/") {
        Some((repo, rev)) if repo == hub.repo_id && known_revision(rev) => {
            let siblings: Vec<_> = hub
                .files
                .keys()
                .map(|name| serde_json::json!({"rfilename": name}))
                .collect();
            axum::Json(serde_json::json!({
                "id": hub.repo_id,
                "modelId": hub.repo_id,
                "sha": COMMIT,
                "siblings": siblings,
            }))
            .into_response()
        }
        _ => not_found("repository"),
    }
}

/// `GET /{repo}/resolve/{rev}/{file}`, honouring `Range: bytes=A-` and `bytes=A-B`.
fn resolve(
    hub: &Hub,
    rest: &str,
    range: Option<&str>,
    method: &Method,
    record: &mut HubRequest,
) -> Response {
    let Some((rev, name)) = rest.split_once('/') else {
        return not_found("file");
    };
    let Some(file) = hub.files.get(name).filter(|_| known_revision(rev)) else {
        return not_found("file");
    };
    let total = file.data.len();
    let fault = if range == Some("bytes=0-0") || method != Method::GET {
        None
    } else {
        let resuming = range
            .and_then(parse_range)
            .is_some_and(|(start, _)| start > 0);
        take_fault(hub, name, resuming)
    };
    if let Some(Fault::Status(code)) = fault {
        return StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let range = if fault == Some(Fault::IgnoreRange) {
        None
    } else {
        range
    };
    let (status, start, end) = match range.map(parse_range) {
        None => (StatusCode::OK, 0, total),
        Some(Some((start, _))) if start >= total => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{total}"))],
            )
                .into_response();
        }
        Some(Some((start, last))) => (
            StatusCode::PARTIAL_CONTENT,
            start,
            last.map_or(total, |l| (l + 1).min(total)),
        ),
        Some(None) => return (StatusCode::BAD_REQUEST, "bad range").into_response(),
    };
    let extra = match fault {
        Some(Fault::LongBody(n)) => n,
        _ => 0,
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, end - start + extra)
        .header(header::ETAG, format!("\"{}\"", file.etag))
        .header("x-repo-commit", COMMIT);
    if total >= LFS_THRESHOLD {
        builder = builder
            .header("x-linked-etag", format!("\"{}\"", file.etag))
            .header("x-linked-size", total);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", end - 1),
        );
    }
    record.body_start = start as u64;
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("response");
    }
    let is_metadata = range == Some("bytes=0-0");
    let break_at = if is_metadata {
        None
    } else {
        take_break(hub, name).map(|after| start + after as usize)
    }
    .filter(|&at| at < end);
    let throttle = if is_metadata {
        None
    } else {
        *hub.throttle.lock().unwrap()
    };
    record.broken = break_at.is_some();
    record.body_bytes = (break_at.unwrap_or(end + extra) - start) as u64;
    let data = match fault {
        Some(Fault::LongBody(n)) => {
            let mut longer = file.data.slice(start..end).to_vec();
            longer.resize(longer.len() + n, b'x');
            Bytes::from(longer)
        }
        Some(Fault::Corrupt) => {
            let mut bad = file.data.slice(start..end).to_vec();
            let middle = (total / 2)
                .saturating_sub(start)
                .min(bad.len().saturating_sub(1));
            if let Some(b) = bad.get_mut(middle) {
                *b ^= 0xff;
            }
            Bytes::from(bad)
        }
        _ => file.data.slice(start..end),
    };
    let body = if break_at.is_none() && throttle.is_none() {
        Body::from(data)
    } else {
        body_stream(data, break_at.map(|at| at - start), throttle)
    };
    builder.body(body).expect("response")
}

/// Consumes one injected fault for `file`, the earliest injected first.
fn take_fault(hub: &Hub, file: &str, resuming: bool) -> Option<Fault> {
    let mut faults = hub.faults.lock().unwrap();
    let plan = faults
        .iter_mut()
        .find(|f| f.file == file && f.times > 0 && (resuming || f.fault != Fault::IgnoreRange))?;
    plan.times -= 1;
    Some(plan.fault)
}

/// Consumes one planned break for `file`, answering after how many bytes to break.
fn take_break(hub: &Hub, file: &str) -> Option<u64> {
    let mut breaks = hub.breaks.lock().unwrap();
    let plan = breaks.as_mut().filter(|b| b.file == file && b.times > 0)?;
    plan.times -= 1;
    Some(plan.after)
}

/// `bytes=A-` or `bytes=A-B` as (A, Some(B)).
fn parse_range(value: &str) -> Option<(usize, Option<usize>)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let last = match b.trim() {
        "" => None,
        b => Some(b.parse().ok()?),
    };
    Some((start, last))
}

/// A body sent piece by piece that, with `break_at`, fails after that many bytes: the server
/// then drops the connection short of the announced `Content-Length`.
fn body_stream(data: Bytes, break_at: Option<usize>, throttle: Option<Throttle>) -> Body {
    let chunk = throttle.map_or(1 << 20, |t| t.chunk.max(1));
    let delay = throttle.map_or(Duration::ZERO, |t| t.delay);
    let stream = futures::stream::unfold(Some(0usize), move |pos| {
        let data = data.clone();
        async move {
            let pos = pos?;
            if break_at == Some(pos) {
                // Let what was sent reach the client before the connection goes.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let error = std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "mock hub breaks the connection",
                );
                return Some((Err(error), None));
            }
            if pos >= data.len() {
                return None;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let limit = break_at.unwrap_or(data.len()).min(data.len());
            let next = (pos + chunk).min(limit);
            Some((Ok(data.slice(pos..next)), Some(next)))
        }
    });
    Body::from_stream(stream)
}
