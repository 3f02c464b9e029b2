//! The web UI served by the server at `/`: its files over real HTTP (public, typed, never in
//! the way of an API route), and the pages driven in a real browser (headless Chromium through
//! selenium, `tests/python/web_ui.py`) against a real server with real models. Screenshots of
//! each page go to `target/tmp/web-ui-screenshots/` (printed).

mod common;

use common::mock_hub::{MockHub, Throttle};
use common::{minilm_dir, python, qwen_gguf, tiny_reranker, whisper_dir, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xinference::RuntimeConfig;

/// Where the screenshots go (under the target dir, never committed).
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chromium and its driver, from Debian's packages. Fails loudly, with the fix, when missing.
fn require_chromium() {
    for (path, var) in [
        ("/usr/bin/chromium", "XINFERENCE_TEST_CHROMIUM"),
        ("/usr/bin/chromedriver", "XINFERENCE_TEST_CHROMEDRIVER"),
    ] {
        let path = std::env::var(var).unwrap_or_else(|_| path.to_owned());
        assert!(
            Path::new(&path).exists(),
            "{path} is missing: the web UI tests drive a real browser.\nFix: `apt-get install -y chromium chromium-driver` \
             (or `bash .ci/run`), or set {var} to its path."
        );
    }
    let ok = std::process::Command::new(python())
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import selenium.\nFix: `pip install -r tests/python/requirements.txt` into that venv (or `bash .ci/run`).",
        python().display()
    );
}

/// Runs `tests/python/web_ui.py` with `args`, echoing its output (screenshot paths).
async fn run_browser(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/web_ui.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "web_ui.py {} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args[0]
    );
    assert!(stdout.contains("web ui: ok"), "{stdout}");
    stdout
}

#[tokio::test]
async fn ui_files_are_served_beside_the_api() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();

    let page = http.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let etag = page.headers()["etag"].clone();
    let body = page.text().await.unwrap();
    assert!(
        body.contains(r#"<script type="module" src="/ui/app.mjs">"#),
        "{body}"
    );

    // Unchanged: 304 on revalidation.
    let again = http
        .get(format!("{}/", server.url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    for (path, kind) in [
        ("/ui/app.mjs", "javascript"),
        ("/ui/vendor/preact.mjs", "javascript"),
        ("/ui/vendor/hooks.mjs", "javascript"),
        ("/ui/vendor/htm.mjs", "javascript"),
        ("/ui/pages/launch.mjs", "javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.contains(kind), "{path}: {ct}");
    }

    // Not UI files, nor API routes: JSON 404s, as before.
    for path in [
        "/v1/no-such-route",
        "/ui/missing.mjs",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
        "/nowhere",
    ] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["detail"].is_string(), "{path}: {v}");
    }
    let r = http.post(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The API is untouched: a real route still answers as the API.
    let r = http
        .get(format!("{}/v1/models", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The read-only cluster routes the Cluster info page uses.
    let info: Value = http
        .get(format!("{}/v1/cluster/info", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node = &info[0];
    assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
    assert!(node["simd_features"].is_array(), "{info}");
    assert!(node["cpu_count"].as_u64().unwrap() >= 1, "{info}");
    assert!(
        node["mem_total"].as_u64().unwrap() >= node["mem_available"].as_u64().unwrap(),
        "{info}"
    );
    assert_eq!(node["models"], 0);
    let version: Value = http
        .get(format!("{}/v1/cluster/version", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    server.stop().await;
}

#[tokio::test]
async fn dev_mode_serves_the_ui_from_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>edited</p>").unwrap();
    let home = tempfile::tempdir().unwrap();
    let runtime =
        std::sync::Arc::new(xinference::Runtime::new(RuntimeConfig::new(home.path())).unwrap());
    // What `XINFERENCE_UI_DIR=dir` selects (the variable is not set here: other tests run
    // in this process at the same time).
    let app = xinference_server::router_with_ui(
        runtime,
        xinference_server::ui::Source::Dir(dir.path().to_owned()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn(async move { axum::serve(listener, app).await });
    let get = |path: &'static str| {
        let url = url.clone();
        async move {
            let r = reqwest::get(format!("{url}{path}")).await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/").await, (StatusCode::OK, "<p>edited</p>".to_owned()));
    // Edits show on the next load, without a rebuild.
    std::fs::write(dir.path().join("index.html"), "<p>edited again</p>").unwrap();
    assert_eq!(
        get("/ui/index.html").await,
        (StatusCode::OK, "<p>edited again</p>".to_owned())
    );
    assert_eq!(get("/ui/app.mjs").await.0, StatusCode::NOT_FOUND);
    served.abort();
}

#[tokio::test]
async fn browser_launches_chats_registers_and_terminates() {
    require_chromium();
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let shots = screenshot_dir();
    let minilm = minilm_dir().display().to_string();
    let qwen = qwen_gguf().display().to_string();
    let started = std::time::Instant::now();
    run_browser(&[
        "models",
        &server.url,
        &minilm,
        &qwen,
        &shots.display().to_string(),
    ])
    .await;
    println!(
        "web UI flow: {:.0?}; screenshots in {}",
        started.elapsed(),
        shots.display()
    );

    // What the browser did, seen from the server.
    let running: Vec<String> = server.runtime.list_models().into_keys().collect();
    assert_eq!(running, vec!["qwen2.5-coder-instruct".to_owned()]);
    // The failed launch was cleared too (an ERROR instance would keep its uid).
    let instances = server.runtime.instance_info(None, None);
    assert_eq!(instances.len(), 1, "{instances:?}");
    // Registered, edited, then deleted in the browser; the bad one never registered.
    for name in ["ui-minilm", "no-dimensions"] {
        assert!(server
            .runtime
            .registry()
            .get(xinference::ModelType::Embedding, name)
            .is_err());
    }
    assert!(!home
        .path()
        .join("model/v2/embedding/ui-minilm.json")
        .exists());
    server.stop().await;
}

/// Launches `body` over HTTP, waiting until it serves.
async fn launch(server: &TestServer, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/models", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn browser_transcribes_audio_draws_images_and_reranks() {
    require_chromium();
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    launch(
        &server,
        json!({"model_name": "whisper-tiny.en", "model_type": "audio", "model_uid": "whisper",
               "model_path": whisper_dir("whisper-tiny.en-ct2")}),
    )
    .await;
    launch(
        &server,
        json!({"model_name": "stable-diffusion-v1.5", "model_type": "image", "model_uid": "tiny-sd",
               "model_path": fixtures.join("tiny-diffusion/sd15")}),
    )
    .await;
    launch(
        &server,
        json!({"model_name": "bge-reranker-base", "model_type": "rerank", "model_uid": "tiny-rerank",
               "model_path": tiny_reranker("xlmr").0}),
    )
    .await;
    run_browser(&[
        "media",
        &server.url,
        &screenshot_dir().display().to_string(),
        "whisper",
        &fixtures.join("audio/short_en.flac").display().to_string(),
        "tiny-sd",
        "tiny-rerank",
    ])
    .await;
    server.stop().await;
}

#[tokio::test]
async fn browser_follows_a_download_and_cancels_it() {
    require_chromium();
    // MiniLM from a local stand-in of the hub, slowed down so that the download can be watched
    // and cancelled. No other test here downloads: they all launch from a model path.
    let hub = MockHub::start(&minilm_dir(), "sentence-transformers/all-MiniLM-L6-v2", &[]).await;
    hub.set_throttle(Some(Throttle {
        chunk: 64 << 10,
        delay: std::time::Duration::from_millis(40),
    }));
    std::env::set_var("HF_ENDPOINT", &hub.url);
    for var in [
        "HF_HUB_OFFLINE",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        std::env::remove_var(var);
    }
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    run_browser(&[
        "cancel",
        &server.url,
        &screenshot_dir().display().to_string(),
    ])
    .await;
    assert!(server.runtime.list_models().is_empty());
    assert!(server.runtime.instance_info(None, None).is_empty());
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.is_body_of("model.safetensors")),
        "the weights were being downloaded"
    );
    server.stop().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn browser_logs_in_when_auth_is_on() {
    require_chromium();
    let home = tempfile::tempdir().unwrap();
    let auth = home.path().join("auth.json");
    std::fs::write(
        &auth,
        json!({
            "auth_config": {"algorithm": "HS256", "secret_key": "web-ui-secret", "token_expire_in_minutes": 30},
            "user_config": [{"username": "admin", "password": "admin-pw", "permissions": ["admin"]}]
        })
        .to_string(),
    )
    .unwrap();
    let mut config = RuntimeConfig::new(home.path().join("home"));
    config.auth_config = Some(auth);
    let server = TestServer::start_with(config).await;

    // The page is public, the API is not.
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let module = http
        .get(format!("{}/ui/app.mjs", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(module.status(), StatusCode::OK);
    let api = http
        .get(format!("{}/v1/models", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let nowhere = http
        .get(format!("{}/v1/nowhere", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::UNAUTHORIZED);

    run_browser(&[
        "login",
        &server.url,
        &screenshot_dir().display().to_string(),
        "admin",
        "admin-pw",
    ])
    .await;
    server.stop().await;
}
