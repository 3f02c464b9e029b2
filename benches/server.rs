//! Server benchmarks: start-to-ready time of the real `xinference` binary, and
//! `GET /v1/models` requests/s under concurrent load (with one model launched).
//! With `XINFERENCE_BENCH_PEER_PYTHON` set to a Python that has Xinference installed, the
//! same measurements run against Python Xinference in the same run and the ratios are printed.
//!
//!     cargo build --release -p xinference-cli && cargo bench --bench server
//!
//! Not a test: it asserts nothing about speed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn our_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("xinference");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p xinference-cli` first",
        bin.display()
    );
    bin
}

/// A server process, started in its own process group, that is killed with every process it
/// started (Python Xinference forks actor pools) on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child we spawned with process_group(0).
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server with `cmd` and returns it with the seconds until `/status` answered.
async fn start(mut cmd: Command, url: &str) -> (Server, f64) {
    let t0 = Instant::now();
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let server = Server(child);
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if r.status().is_success() {
                return (server, t0.elapsed().as_secs_f64());
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "server at {url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET path` from `concurrency` clients for `seconds`; returns requests/s.
async fn load(url: &str, concurrency: usize, seconds: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (done, stop, url) = (done.clone(), stop.clone(), format!("{url}/v1/models"));
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let r = http.get(&url).send().await.expect("request");
                assert!(r.status().is_success());
                r.bytes().await.expect("body");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// Launches the MiniLM folder under a name both servers have built in (both BERT, 384 dims).
async fn launch_minilm(url: &str, minilm: &Path) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/models"))
        .json(
            &serde_json::json!({"model_name": "bge-small-en-v1.5", "model_type": "embedding",
            "model_engine": "sentence_transformers", "model_uid": "bench", "model_path": minilm}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "launch: {}",
        r.text().await.unwrap()
    );
}

struct Figures {
    start_s: f64,
    rps: Vec<(usize, f64)>,
}

const CONCURRENCY: [usize; 3] = [1, 16, 64];

async fn measure(mut make: impl FnMut(u16) -> Command, minilm: &Path, runs: usize) -> Figures {
    let mut starts = Vec::new();
    for _ in 0..runs {
        let port = free_port();
        let (_server, s) = start(make(port), &format!("http://127.0.0.1:{port}")).await;
        starts.push(s);
    }
    starts.sort_by(f64::total_cmp);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_server, _) = start(make(port), &url).await;
    launch_minilm(&url, minilm).await;
    load(&url, 4, 1.0).await; // warm up
    let mut rps = Vec::new();
    for c in CONCURRENCY {
        rps.push((c, load(&url, c, 3.0).await));
    }
    Figures {
        start_s: starts[starts.len() / 2],
        rps,
    }
}

#[tokio::main]
async fn main() {
    let models = std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/xinference-rs/test-models")
        });
    let minilm = models.join("all-MiniLM-L6-v2");
    assert!(
        minilm.exists(),
        "run `python3 scripts/fetch-test-models.py minilm` first"
    );
    let home = tempfile::tempdir().unwrap();
    let bin = our_binary();
    let ours = measure(
        |port| {
            let mut c = Command::new(&bin);
            c.args([
                "local",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--log-level",
                "warn",
            ])
            .env("XINFERENCE_HOME", home.path());
            c
        },
        &minilm,
        5,
    )
    .await;

    let peer = match std::env::var_os("XINFERENCE_BENCH_PEER_PYTHON") {
        Some(python) => {
            let peer_home = tempfile::tempdir().unwrap();
            let python = PathBuf::from(python);
            let bin = python.parent().unwrap().join("xinference-local");
            Some(
                measure(
                    |port| {
                        let mut c = Command::new(&bin);
                        c.args([
                            "-H",
                            "127.0.0.1",
                            "-p",
                            &port.to_string(),
                            "--log-level",
                            "warning",
                        ])
                        .env("XINFERENCE_HOME", peer_home.path())
                        .env("XINFERENCE_AUTH_ADVANCED", "false")
                        .env("XINFERENCE_ENABLE_VIRTUAL_ENV", "0")
                        .env("HF_HUB_OFFLINE", "1");
                        c
                    },
                    &minilm,
                    1,
                )
                .await,
            )
        }
        None => None,
    };

    println!("| measure | xinference-rs | Python Xinference | ratio |");
    println!("|---|---|---|---|");
    let row = |name: &str, ours: f64, peer: Option<f64>, unit: &str, higher_better: bool| match peer
    {
        Some(p) => {
            let ratio = if higher_better { ours / p } else { p / ours };
            println!("| {name} | {ours:.3} {unit} | {p:.3} {unit} | {ratio:.1}x |")
        }
        None => println!("| {name} | {ours:.3} {unit} | (not run) | |"),
    };
    row(
        "start to ready",
        ours.start_s,
        peer.as_ref().map(|p| p.start_s),
        "s",
        false,
    );
    for (i, (c, r)) in ours.rps.iter().enumerate() {
        row(
            &format!("GET /v1/models, {c} concurrent"),
            *r,
            peer.as_ref().map(|p| p.rps[i].1),
            "req/s",
            true,
        );
    }
}
