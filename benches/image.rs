//! Image generation speed beside diffusers, on the same pipeline folder, the same threads, in
//! the same run: seconds per UNet step (one classifier-free-guided step: the UNet on a batch of
//! two) and seconds per whole image, with Stable Diffusion 1.5's real UNet/VAE/CLIP
//! configuration and random weights, plus peak RSS.
//!
//! The folder is written once by `scripts/bench_image_peer.py prepare` (diffusers needed);
//! diffusers' side runs when `XINFERENCE_BENCH_PEER_PYTHON` names a Python with torch and
//! diffusers:
//!
//!     P=~/.cache/xinference-rs/refvenv/bin/python
//!     $P scripts/bench_image_peer.py prepare --out ~/.cache/xinference-rs/bench/sd15-random
//!     CANDLE_NUM_THREADS=2 XINFERENCE_BENCH_PEER_PYTHON=$P cargo bench --bench image
//!
//! stable-diffusion.cpp's side runs when `XINFERENCE_BENCH_SDCPP_PYTHON` names a Python with
//! stable-diffusion-cpp-python (built from its sdist; see the script's `run-sdcpp`), on the
//! same weights as one original-layout checkpoint that `prepare` writes beside the folder
//! (`sd15-random.safetensors`, by `scripts/sd15_to_single_file.py`):
//!
//!     XINFERENCE_BENCH_SDCPP_PYTHON=~/.cache/xinference-rs/sdcpp/venv/bin/python
//!
//! `XINFERENCE_BENCH_IMAGE_SIZE` (default 512) and `XINFERENCE_BENCH_IMAGE_STEPS` (default 4)
//! choose the image. Not a test: it asserts nothing about speed.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use xinference::{ImageGenerationRequest, LaunchRequest, ModelType, Runtime, RuntimeConfig};

const THREADS: usize = 2;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn generate(runtime: &Runtime, size: usize, steps: usize) -> f64 {
    let mut request = ImageGenerationRequest::new("an apple");
    request.model = "sd".into();
    request.size = Some(format!("{size}*{size}"));
    request.response_format = Some("b64_json".into());
    request.kwargs = Some(json!({"num_inference_steps": steps, "seed": 0}));
    let start = Instant::now();
    runtime.text_to_image(request).await.expect("image");
    start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = std::env::var_os("XINFERENCE_BENCH_SD15_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/xinference-rs/bench/sd15-random")
        });
    assert!(
        dir.join("model_index.json").exists(),
        "{} is missing: run `python scripts/bench_image_peer.py prepare --out {}` with diffusers",
        dir.display(),
        dir.display()
    );
    let size = env_usize("XINFERENCE_BENCH_IMAGE_SIZE", 512);
    let steps = env_usize("XINFERENCE_BENCH_IMAGE_STEPS", 4);
    let home = tempfile::tempdir().expect("tempdir");
    let mut config = RuntimeConfig::new(home.path());
    config.compute_threads = Some(THREADS);
    let runtime = Arc::new(Runtime::new(config).expect("runtime"));
    runtime
        .launch_model(
            LaunchRequest::new("stable-diffusion-v1.5")
                .model_type(ModelType::Image)
                .model_uid("sd")
                .model_path(dir.display().to_string()),
            true,
        )
        .await
        .expect("launch");
    // PNDM (skip_prk_steps) runs one UNet call for 1 step and steps + 1 calls for more, so a
    // `steps`-step image (steps >= 2) makes `steps` calls more than a 1-step one.
    let short = generate(&runtime, size, 1).await;
    let image = generate(&runtime, size, steps).await;
    let unet_step = (image - short) / steps.max(2) as f64;
    let ours = json!({"unet_step_s": unet_step, "image_s": image, "peak_rss_mb": peak_rss_mb()});
    println!("ours: {ours}");
    // Free our model before the peer loads its copy.
    runtime.terminate_all().await;
    let run_peer = |env: &str, command: &str| {
        std::env::var_os(env).map(|python| {
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_image_peer.py");
            let out = std::process::Command::new(python)
                .arg(script)
                .args([command, "--dir"])
                .arg(&dir)
                .args(["--threads", &THREADS.to_string()])
                .args(["--size", &size.to_string(), "--steps", &steps.to_string()])
                .output()
                .expect("peer runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let peer: Value =
                serde_json::from_str(text.lines().last().unwrap_or("{}")).expect("peer JSON");
            println!("{command}: {peer}");
            peer
        })
    };
    let diffusers = run_peer("XINFERENCE_BENCH_PEER_PYTHON", "run");
    let sdcpp = run_peer("XINFERENCE_BENCH_SDCPP_PYTHON", "run-sdcpp");
    println!(
        "\n| measure ({size}x{size}, {THREADS} threads) | xinference-rs | diffusers | ratio | \
         stable-diffusion.cpp | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, key) in [
        ("seconds per UNet step (CFG, batch 2)", "unet_step_s"),
        ("seconds per image", "image_s"),
        ("peak RSS, MB", "peak_rss_mb"),
    ] {
        let a = ours[key].as_f64().unwrap_or(0.0);
        let cell = |peer: &Option<Value>| match peer {
            Some(p) => {
                let b = p[key].as_f64().unwrap_or(0.0);
                format!("{b:.2} | {:.2}x", a / b)
            }
            None => "- | -".to_owned(),
        };
        println!(
            "| {label} | {a:.2} | {} | {} |",
            cell(&diffusers),
            cell(&sdcpp)
        );
    }
}
