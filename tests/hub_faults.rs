//! A download from a misbehaving hub ends in a verified file or a clear error, never in a
//! trusted half file: 5xx answers, a `Range` answered with the whole body (the file restarts
//! instead of growing by an appended copy), a body longer than announced, corrupted bytes
//! (caught by the SHA-256 the hub announces) and an oversized `.part` left by an earlier run
//! (discarded, not blocking); and `NO_PROXY` / `no_proxy` around a proxy that is down. Every case launches the built-in MiniLM over real HTTP against a
//! local mock hub behind `HF_ENDPOINT`, in a fresh `XINFERENCE_HOME`.
//!
//! Environment variables are process-global, so everything runs in one test function.

mod common;

use common::mock_hub::{Fault, HubRequest, MockHub};
use common::{minilm_dir, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const MODEL: &str = "all-MiniLM-L6-v2";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
const MANIFEST: &str = ".xinference-cache.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hub_fault_ends_in_a_verified_file_or_a_clear_error() {
    let hub = MockHub::start(&minilm_dir(), REPO, &[]).await;
    std::env::set_var("HF_ENDPOINT", &hub.url);
    for var in [
        "HF_HUB_OFFLINE",
        "HF_TOKEN",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        std::env::remove_var(var);
    }
    let size = std::fs::metadata(minilm_dir().join(WEIGHTS)).unwrap().len();

    // 5xx twice, then the body: retried, verified.
    hub.inject(WEIGHTS, Fault::Status(503), 2);
    let bodies = launch_ok(&hub, "two 503s").await;
    assert_eq!(statuses(&bodies), [503, 503, 206], "{bodies:#?}");

    // A broken connection, then a hub that answers the resume with the whole file (200): the
    // file restarts at byte 0 instead of growing by an appended copy.
    hub.break_downloads(WEIGHTS, 1 << 20, 1);
    hub.inject(WEIGHTS, Fault::IgnoreRange, 1);
    let bodies = launch_ok(&hub, "a resume answered from byte 0").await;
    assert_eq!(statuses(&bodies), [206, 200], "{bodies:#?}");
    assert!(bodies[0].broken, "{bodies:#?}");
    assert_eq!(bodies[1].range, Some(format!("bytes={}-", 1 << 20)));
    assert_eq!(bodies[1].body_start, 0, "the hub ignored the range");

    // A body longer than announced: cut, discarded, fetched again.
    hub.inject(WEIGHTS, Fault::LongBody(4096), 1);
    let bodies = launch_ok(&hub, "a body longer than announced").await;
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies[1].range.as_deref(), Some("bytes=0-"), "restarted");

    // One corrupted body: the SHA-256 check throws it away and the retry is whole.
    hub.inject(WEIGHTS, Fault::Corrupt, 1);
    let bodies = launch_ok(&hub, "a corrupted body").await;
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies[1].range.as_deref(), Some("bytes=0-"), "restarted");

    // An oversized `.part` from an earlier run does not block the launch.
    let home = tempfile::tempdir().unwrap();
    let blobs = home
        .path()
        .join("huggingface/models--sentence-transformers--all-MiniLM-L6-v2/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        blobs.join(format!("{WEIGHTS_SHA256}.part")),
        vec![7u8; size as usize + 1000],
    )
    .unwrap();
    let bodies = launch_ok_in(&hub, home.path(), "an oversized .part").await;
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0].range.as_deref(), Some("bytes=0-"), "from scratch");

    // A hub that always corrupts the file: a clear error naming the checksum, and nothing
    // left that a later launch could trust.
    hub.inject(WEIGHTS, Fault::Corrupt, usize::MAX);
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let (status, body) = launch(&server.url).await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(WEIGHTS) && detail.contains("SHA-256") && detail.contains("retries"),
        "{detail}"
    );
    let files = files_under(home.path());
    assert!(
        !files.iter().any(|p| p.ends_with(MANIFEST)
            || p.file_name().is_some_and(|n| n == WEIGHTS_SHA256)
            || p.extension().is_some_and(|e| e == "part")),
        "nothing trusted or resumable is left: {files:#?}"
    );
    server.stop().await;

    // A hub that answers 503 to everything: a clear error, then a working launch once it heals.
    hub.heal();
    hub.inject(WEIGHTS, Fault::Status(503), usize::MAX);
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let (status, body) = launch(&server.url).await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("503") && detail.contains(WEIGHTS),
        "{detail}"
    );
    hub.heal();
    let (status, body) = launch(&server.url).await;
    assert_eq!(status, 200, "after the hub healed: {body}");
    check_verified(home.path());
    server.stop().await;

    // Behind a proxy that is down, NO_PROXY / no_proxy decide: the hub's host (or `*`)
    // listed goes direct and the launch works; another host listed leaves the hub behind
    // the dead proxy: a clear error, and the hub never hears of it.
    let dead_proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_proxy_url = format!("http://{}", dead_proxy.local_addr().unwrap());
    drop(dead_proxy);
    std::env::set_var("HTTP_PROXY", &dead_proxy_url);
    std::env::set_var("NO_PROXY", "huggingface.co, 127.0.0.1");
    launch_ok(&hub, "the hub's host in NO_PROXY").await;
    std::env::remove_var("NO_PROXY");
    std::env::set_var("no_proxy", "*");
    launch_ok(&hub, "no_proxy=*").await;
    std::env::set_var("no_proxy", ".huggingface.co,localhost:1");
    hub.clear_requests();
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let (status, body) = launch(&server.url).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(REPO), "{body}");
    assert!(hub.requests().is_empty(), "{:#?}", hub.requests());
    server.stop().await;
    for var in ["HTTP_PROXY", "no_proxy"] {
        std::env::remove_var(var);
    }
    hub.shutdown().await;
}

/// Launches in a fresh home; the launch must succeed with verified weights. Answers the
/// weights' body requests.
async fn launch_ok(hub: &MockHub, case: &str) -> Vec<HubRequest> {
    let home = tempfile::tempdir().unwrap();
    launch_ok_in(hub, home.path(), case).await
}

async fn launch_ok_in(hub: &MockHub, home: &Path, case: &str) -> Vec<HubRequest> {
    hub.clear_requests();
    let server = TestServer::start(home).await;
    let (status, body) = launch(&server.url).await;
    assert_eq!(status, 200, "{case}: {body}");
    check_verified(home);
    let response = http()
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({"model": MODEL, "input": "a fox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{case}");
    server.stop().await;
    hub.heal();
    hub.requests()
        .into_iter()
        .filter(|r| r.is_body_of(WEIGHTS))
        .collect()
}

/// The cache entry is complete and its weights are byte for byte the hub's.
fn check_verified(home: &Path) {
    let cache = home.join("cache").join(MODEL);
    assert!(cache.join(MANIFEST).exists(), "no manifest in {cache:?}");
    let weights = std::fs::read(cache.join(WEIGHTS)).unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&weights)), WEIGHTS_SHA256);
    let files = files_under(home);
    assert!(
        !files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "part")),
        "{files:#?}"
    );
}

/// A client of the test's server that ignores the proxy variables the test sets.
fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn statuses(requests: &[HubRequest]) -> Vec<u16> {
    requests.iter().map(|r| r.status).collect()
}

async fn launch(url: &str) -> (u16, Value) {
    let response = http()
        .post(format!("{url}/v1/models?wait_ready=true"))
        .json(&json!({"model_name": MODEL, "model_type": "embedding"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}
