//! Launch Stable Diffusion 1.5 in process, generate "an apple", write it to `apple.png`.
//!
//!     cargo run --release --example image -- /path/to/stable-diffusion-v1-5 [STEPS] [SIZE]
//!
//! The path is a diffusers folder (`model_index.json`, `unet/`, `vae/`, ...); without it the
//! model is fetched from the Hugging Face hub into `$XINFERENCE_HOME`. The tiny random pipeline
//! of the tests runs in well under a second (and draws noise, not an apple):
//!
//!     cargo run --release --example image -- tests/fixtures/tiny-diffusion/sd15 20 64

use base64::Engine;
use xinference::{Client, ImageGenerationRequest, LaunchRequest, ModelType};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let client = Client::local_from_env()?;
    let mut request = LaunchRequest::new("stable-diffusion-v1.5").model_type(ModelType::Image);
    if let Some(path) = args.get(1) {
        request = request.model_path(path);
    }
    let steps: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let size: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(512);
    let uid = client.launch_model(request).await?;
    let model = client.get_model(&uid).await?.into_image()?;
    let mut ask = ImageGenerationRequest::new("an apple");
    ask.size = Some(format!("{size}*{size}"));
    ask.response_format = Some("b64_json".into());
    ask.kwargs = Some(serde_json::json!({"num_inference_steps": steps, "seed": 42}));
    let started = std::time::Instant::now();
    let response = model.text_to_image(ask).await?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(response.data[0].b64_json.as_deref().unwrap_or_default())
        .map_err(|e| xinference::Error::internal(format!("bad base64: {e}")))?;
    std::fs::write("apple.png", &png)
        .map_err(|e| xinference::Error::internal(format!("cannot write apple.png: {e}")))?;
    println!(
        "wrote apple.png ({} bytes, {size}x{size}, {steps} steps, seed {:?}) in {:.2?}",
        png.len(),
        response.seed,
        started.elapsed()
    );
    client.terminate_model(&uid).await
}
