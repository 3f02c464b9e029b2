//! Launch Stable Diffusion 1.5 in process, generate "an apple", write it as a PNG.
//!
//!     cargo run --release --example image -- /path/to/stable-diffusion-v1-5 [STEPS] [SIZE] [OUT.png]
//!
//! The path is a diffusers folder (`model_index.json`, `unet/`, `vae/`, ...); without it (or
//! with `-`) the model is fetched from the Hugging Face hub into `$XINFERENCE_HOME`. The image
//! goes to `apple.png` unless another file is named. The tiny random pipeline of the tests runs
//! in well under a second (and draws noise, not an apple):
//!
//!     cargo run --release --example image -- tests/fixtures/tiny-diffusion/sd15 20 64

use base64::Engine;
use xinference::{Client, ImageGenerationRequest, LaunchRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).filter(|p| *p != "-");
    let steps: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let size: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(512);
    let out = args.get(4).map(String::as_str).unwrap_or("apple.png");

    let client = Client::local_from_env()?;
    let mut launch = LaunchRequest::image("stable-diffusion-v1.5");
    if let Some(path) = path {
        launch = launch.model_path(path);
    }
    let model = client.launch_image(launch).await?;
    let mut ask = ImageGenerationRequest::new("an apple");
    ask.size = Some(format!("{size}*{size}"));
    ask.response_format = Some("b64_json".into());
    ask.kwargs =
        Some(serde_json::json!({"num_inference_steps": steps, "guidance_scale": 7.5, "seed": 42}));
    let started = std::time::Instant::now();
    let response = model.text_to_image(ask).await?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(response.data[0].b64_json.as_deref().unwrap_or_default())
        .map_err(|e| xinference::Error::internal(format!("bad base64: {e}")))?;
    std::fs::write(out, &png)
        .map_err(|e| xinference::Error::internal(format!("cannot write {out}: {e}")))?;
    println!(
        "wrote {out} ({} bytes, {size}x{size}, {steps} steps, seed {:?}) in {:.2?}",
        png.len(),
        response.seed,
        started.elapsed()
    );
    client.terminate_model(model.uid()).await
}
