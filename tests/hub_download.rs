//! Launching a built-in model with no `model_path` downloads it from the hub (a local mock
//! behind `HF_ENDPOINT`) over real HTTP, and pins down what that must guarantee: only the needed
//! files are fetched; a broken connection is resumed with a `Range` request, within a launch
//! and across launches; progress is observable while downloading and never goes back; a half
//! file is never trusted (no cache manifest until every file arrived whole); a cached model
//! launches with the hub down; and `HF_HUB_OFFLINE` without a cache is a clear 400.
//!
//! Environment variables are process-global, so everything runs in one test function.

mod common;

use common::mock_hub::{HubRequest, MockHub, Throttle, COMMIT};
use common::{minilm_dir, minilm_fixture, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const MODEL: &str = "all-MiniLM-L6-v2";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
const MANIFEST: &str = ".xinference-cache.json";
/// Where the first download of the weights is cut off.
const FIRST_BREAK: u64 = 16 << 20;
/// Where every download of the weights is cut off when the hub keeps failing.
const EVERY_BREAK: u64 = 1 << 20;

/// Files the mock repository lists beyond the test model's folder (as the real one does).
const EXTRA_FILES: &[(&str, &[u8])] = &[
    ("onnx/model.onnx", b"not used"),
    ("openvino/openvino_model.xml", b"<not used/>"),
    ("pytorch_model.bin", b"not used: safetensors are there"),
    ("train_script.py", b"print('not used')"),
];
/// Repository files a launch must never fetch (those present in the listing are checked).
const NEVER_FETCHED: &[&str] = &[
    ".gitattributes",
    "README.md",
    "model.safetensors.sha256",
    "onnx/model.onnx",
    "openvino/openvino_model.xml",
    "pytorch_model.bin",
    "train_script.py",
];
/// Files a launch must fetch.
const NEEDED: &[&str] = &[
    "1_Pooling/config.json",
    "config.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "vocab.txt",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_download_resumes_caches_and_works_offline() {
    let source = minilm_dir();
    let hub = MockHub::start(&source, REPO, EXTRA_FILES).await;
    // Set once, before any launch reads them. The trailing slash is tolerated, as by
    // huggingface_hub. The hub client honours *_PROXY but not NO_PROXY, so a proxy in
    // the environment would swallow the loopback hub.
    std::env::set_var("HF_ENDPOINT", format!("{}/", hub.url));
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
    let http = reqwest::Client::new();

    // 1. A throttled download whose first weights body breaks after FIRST_BREAK bytes, watched
    //    through the progress and instances routes.
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    hub.set_throttle(Some(Throttle {
        chunk: 512 << 10,
        delay: Duration::from_millis(10),
    }));
    hub.break_downloads(WEIGHTS, FIRST_BREAK, 1);
    let (status, body) = launch(&http, &server.url, false).await;
    assert_eq!(status, 200, "launch: {body}");
    let uid = body["model_uid"].as_str().unwrap().to_owned();
    assert_eq!(uid, MODEL);
    let watched = watch_launch(&http, &server.url, &uid).await;
    hub.set_throttle(None);
    check_progress_while_downloading(&watched);

    let requests = hub.requests();
    let info = format!("/api/models/{REPO}/revision/main");
    assert_eq!(
        requests.iter().filter(|r| r.path == info).count(),
        1,
        "one repo-info request: {requests:#?}"
    );
    let fetched = fetched_files(&requests);
    check_selection(&hub, &fetched);
    for name in &fetched {
        let bodies: Vec<&HubRequest> = requests.iter().filter(|r| r.is_body_of(name)).collect();
        assert!(
            requests
                .iter()
                .any(|r| r.file() == Some(name) && r.is_metadata() && r.status == 206),
            "{name} was probed with Range: bytes=0-0"
        );
        if name != WEIGHTS {
            assert_eq!(bodies.len(), 1, "{name}: {bodies:#?}");
            assert_eq!(bodies[0].range.as_deref(), Some("bytes=0-"));
        }
    }
    let weights: Vec<&HubRequest> = requests.iter().filter(|r| r.is_body_of(WEIGHTS)).collect();
    assert_eq!(weights.len(), 2, "broken once, then resumed: {weights:#?}");
    assert_eq!(weights[0].range.as_deref(), Some("bytes=0-"));
    assert!(weights[0].broken && weights[0].body_bytes == FIRST_BREAK);
    assert_eq!(
        weights[1].range.as_deref(),
        Some(format!("bytes={FIRST_BREAK}-").as_str()),
        "the resume starts where the connection broke"
    );
    assert_eq!(weights[1].status, 206);
    assert!(!weights[1].broken);

    let cache = home.path().join("cache").join(MODEL);
    check_cache_entry(&cache, &source, &fetched);
    check_no_half_files(home.path());
    let progress = get_json(&http, &format!("{}/v1/models/{uid}/progress", server.url)).await;
    assert_eq!(progress["progress"], 1.0, "{progress}");
    assert_eq!(progress["stage"], "ready", "{progress}");
    check_download_files(&progress, &source, &fetched);
    check_embedding(&http, &server.url, &uid).await;
    let cached = get_json(&http, &format!("{}/v1/cache/models", server.url)).await;
    let list = cached["list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{cached}");
    assert_eq!(list[0]["model_name"], MODEL);
    assert_eq!(list[0]["model_version"], MODEL);
    assert_eq!(list[0]["path"], cache.display().to_string());

    // 2. A hub that breaks every weights body: more failures than retries fail the launch with
    //    the reason, and leave no cache entry, only the hub client's partial file.
    let home2 = tempfile::tempdir().unwrap();
    let server2 = TestServer::start(home2.path()).await;
    hub.clear_requests();
    hub.break_downloads(WEIGHTS, EVERY_BREAK, usize::MAX);
    let (status, body) = launch(&http, &server2.url, true).await;
    assert_eq!(status, 400, "launch against a failing hub: {body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(WEIGHTS) && detail.to_lowercase().contains("retries"),
        "the reason names the file and the retries: {detail}"
    );
    let requests = hub.requests();
    let weights: Vec<&HubRequest> = requests.iter().filter(|r| r.is_body_of(WEIGHTS)).collect();
    assert!(
        weights.len() > 5,
        "more failures than retries: {weights:#?}"
    );
    let mut offset = 0;
    for r in &weights {
        assert!(r.broken, "{r:?}");
        assert_eq!(
            r.range,
            Some(format!("bytes={offset}-")),
            "each retry resumes"
        );
        offset += r.body_bytes;
    }
    let cache2 = home2.path().join("cache").join(MODEL);
    assert!(
        !cache2.join(MANIFEST).exists(),
        "a failed download writes no manifest"
    );
    let cached = get_json(&http, &format!("{}/v1/cache/models", server2.url)).await;
    assert_eq!(cached["list"], json!([]), "{cached}");
    let instances = get_json(&http, &format!("{}/v1/models/instances", server2.url)).await;
    assert_eq!(instances[0]["status"], "ERROR", "{instances}");
    assert!(instances[0]["error"].as_str().unwrap().contains(WEIGHTS));
    let progress = get_json(
        &http,
        &format!("{}/v1/models/{MODEL}/progress", server2.url),
    )
    .await;
    assert_eq!(progress["stage"], "error", "{progress}");
    let files = files_under(home2.path());
    let partial: Vec<&PathBuf> = files.iter().filter(|p| is_partial(p)).collect();
    assert_eq!(
        partial.len(),
        1,
        "the partial weights stay for a resume: {files:#?}"
    );
    assert_eq!(std::fs::metadata(partial[0]).unwrap().len(), offset);
    assert!(
        !files
            .iter()
            .any(|p| p.ends_with(WEIGHTS) || p.file_name().is_some_and(|n| n == WEIGHTS_SHA256)),
        "no complete-looking weights file: {files:#?}"
    );

    //    Then a working hub: the next launch resumes the partial file and completes it.
    hub.heal();
    hub.clear_requests();
    let (status, body) = launch(&http, &server2.url, true).await;
    assert_eq!(status, 200, "launch after the hub recovered: {body}");
    let requests = hub.requests();
    let weights: Vec<&HubRequest> = requests.iter().filter(|r| r.is_body_of(WEIGHTS)).collect();
    assert_eq!(weights.len(), 1, "{weights:#?}");
    assert_eq!(weights[0].range, Some(format!("bytes={offset}-")));
    // The files that arrived whole in the failed launch (those before the weights, in name
    // order) are verified blobs: not fetched again.
    let again = fetched_files(&requests);
    assert!(
        again.contains(WEIGHTS) && again.iter().all(|f| f.as_str() >= WEIGHTS),
        "{again:?}"
    );
    check_cache_entry(&cache2, &source, &fetched);
    check_no_half_files(home2.path());
    check_embedding(&http, &server2.url, MODEL).await;
    server2.stop().await;

    // 3. With the hub down, the cached model launches on a new server over the same home.
    let response = http
        .delete(format!("{}/v1/models/{uid}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let instances = get_json(&http, &format!("{}/v1/models/instances", server.url)).await;
    assert_eq!(instances, json!([]));
    server.stop().await;
    let hub_addr = hub.addr;
    hub.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(hub_addr).await.is_err(),
        "the hub is down"
    );
    let server = TestServer::start(home.path()).await;
    let (status, body) = launch(&http, &server.url, true).await;
    assert_eq!(status, 200, "launch from the cache: {body}");
    let progress = get_json(&http, &format!("{}/v1/models/{MODEL}/progress", server.url)).await;
    assert_eq!(progress["progress"], 1.0, "{progress}");
    assert_eq!(progress["stage"], "ready", "{progress}");
    check_download_files(&progress, &source, &fetched);
    check_embedding(&http, &server.url, MODEL).await;
    server.stop().await;

    // 4. HF_HUB_OFFLINE with nothing cached: a 400 that says why.
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let home3 = tempfile::tempdir().unwrap();
    let server = TestServer::start(home3.path()).await;
    let (status, body) = launch(&http, &server.url, true).await;
    assert_eq!(status, 400, "offline launch without a cache: {body}");
    assert!(
        body["detail"].as_str().unwrap().contains("HF_HUB_OFFLINE"),
        "{body}"
    );
    server.stop().await;
    std::env::remove_var("HF_HUB_OFFLINE");
}

/// `POST /v1/models` for the built-in model, answering (status, JSON body).
async fn launch(http: &reqwest::Client, url: &str, wait_ready: bool) -> (u16, Value) {
    let response = http
        .post(format!("{url}/v1/models?wait_ready={wait_ready}"))
        .json(&json!({"model_name": MODEL, "model_type": "embedding"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

/// Polls progress and status until the launch is ready, answering every progress snapshot.
async fn watch_launch(http: &reqwest::Client, url: &str, uid: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut snapshots = Vec::new();
    loop {
        let progress = get_json(http, &format!("{url}/v1/models/{uid}/progress")).await;
        let instances = get_json(http, &format!("{url}/v1/models/instances?model_uid={uid}")).await;
        let status = instances[0]["status"].as_str().unwrap().to_owned();
        snapshots.push(progress);
        match status.as_str() {
            "READY" => return snapshots,
            "CREATING" | "LOADING" => {}
            other => panic!("launch went {other}: {instances}"),
        }
        assert!(Instant::now() < deadline, "launch not ready in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Progress was visible mid-download and never went back, overall or per file.
fn check_progress_while_downloading(snapshots: &[Value]) {
    let mid_download = snapshots.iter().any(|s| {
        let p = s["progress"].as_f64().unwrap();
        s["stage"] == "downloading"
            && p > 0.0
            && p < 1.0
            && s["download_files"].as_array().unwrap().iter().any(|f| {
                let done = f["downloaded_bytes"].as_u64().unwrap();
                done > 0 && done < f["total_bytes"].as_u64().unwrap()
            })
    });
    assert!(
        mid_download,
        "no snapshot caught a file mid-download: {snapshots:#?}"
    );
    let mut last = 0.0;
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    for s in snapshots {
        let p = s["progress"].as_f64().unwrap();
        assert!(p >= last, "progress went back from {last} to {p}");
        last = p;
        for f in s["download_files"].as_array().unwrap() {
            let name = f["file_name"].as_str().unwrap().to_owned();
            let done = f["downloaded_bytes"].as_u64().unwrap();
            let before = bytes.insert(name.clone(), done).unwrap_or(0);
            assert!(done >= before, "{name} went back from {before} to {done}");
        }
    }
}

/// The files whose body the hub served.
fn fetched_files(requests: &[HubRequest]) -> BTreeSet<String> {
    requests
        .iter()
        .filter(|r| r.method == "GET" && !r.is_metadata())
        .filter_map(|r| r.file().map(str::to_owned))
        .collect()
}

/// Config, tokenizer and safetensors weights were fetched; docs, exports, other weights not.
fn check_selection(hub: &MockHub, fetched: &BTreeSet<String>) {
    for name in NEEDED {
        assert!(fetched.contains(*name), "{name} not fetched: {fetched:?}");
    }
    let listed = hub.files();
    for name in NEVER_FETCHED {
        if listed.iter().any(|l| l == name) {
            assert!(!fetched.contains(*name), "{name} was fetched");
        }
    }
    assert!(
        fetched.iter().all(|f| !f.starts_with("onnx/")),
        "{fetched:?}"
    );
}

/// The cache entry holds exactly `fetched`, byte for byte the source, with a manifest of
/// full sizes.
fn check_cache_entry(cache: &Path, source: &Path, fetched: &BTreeSet<String>) {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["model_id"], REPO);
    let listed: BTreeMap<String, u64> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        *fetched,
        "{manifest}"
    );
    for (name, size) in &listed {
        let expected = std::fs::read(source.join(name)).unwrap();
        assert_eq!(*size, expected.len() as u64, "manifest size of {name}");
        if name != WEIGHTS {
            assert_eq!(std::fs::read(cache.join(name)).unwrap(), expected, "{name}");
        }
    }
    let weights = std::fs::read(cache.join(WEIGHTS)).unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&weights)), WEIGHTS_SHA256);
}

/// `download_files` lists every fetched file, done at its full size.
fn check_download_files(progress: &Value, source: &Path, fetched: &BTreeSet<String>) {
    let files = progress["download_files"].as_array().unwrap();
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f["file_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, *fetched, "{progress}");
    for f in files {
        let size = std::fs::metadata(source.join(f["file_name"].as_str().unwrap()))
            .unwrap()
            .len();
        assert_eq!(f["done"], true, "{f}");
        assert_eq!(f["downloaded_bytes"], size, "{f}");
        assert_eq!(f["total_bytes"], size, "{f}");
    }
}

/// No partial download is left under `home`, and the hub client recorded the commit.
fn check_no_half_files(home: &Path) {
    let files = files_under(home);
    assert!(
        !files.iter().any(|p| is_partial(p)),
        "partial files left: {files:#?}"
    );
    let refs = files
        .iter()
        .find(|p| p.ends_with("refs/main"))
        .expect("the download wrote refs/main");
    assert_eq!(std::fs::read_to_string(refs).unwrap().trim(), COMMIT);
}

/// The downloader's resumable partial file (`<blob>.part`).
fn is_partial(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "part")
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

/// `POST /v1/embeddings` answers the sentence-transformers vector of a fixture sentence.
async fn check_embedding(http: &reqwest::Client, url: &str, uid: &str) {
    let fixture = minilm_fixture();
    let item = &fixture["items"][0];
    let response = http
        .post(format!("{url}/v1/embeddings"))
        .json(&json!({"model": uid, "input": item["text"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let got = body["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(got.len(), 384);
    let expected = item["embedding"].as_array().unwrap();
    let max_diff = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
        .fold(0f64, f64::max);
    assert!(max_diff < 1e-4, "max abs diff {max_diff}");
}
