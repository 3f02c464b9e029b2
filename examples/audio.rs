//! Launch Whisper in process and transcribe an audio file (wav, mp3, flac, ogg, m4a).
//!
//!     cargo run --release --example audio -- ~/.cache/xinference-rs/test-models/whisper-tiny.en-ct2 \
//!         tests/fixtures/audio/short_en.flac
//!
//! The first argument is a Whisper folder (CTranslate2 `model.bin` or Hugging Face safetensors);
//! without arguments whisper-tiny.en is fetched from the Hugging Face hub and the bundled test
//! clip is transcribed.

use xinference::{Client, LaunchRequest, ModelType};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let mut args = std::env::args().skip(1);
    let client = Client::local_from_env()?;
    let mut request = LaunchRequest::new("whisper-tiny.en").model_type(ModelType::Audio);
    if let Some(path) = args.next() {
        request = request.model_path(path);
    }
    let file = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/audio/short_en.flac"
        )
        .to_owned()
    });
    let audio = std::fs::read(&file)
        .map_err(|e| xinference::Error::bad_request(format!("cannot read {file}: {e}")))?;
    let uid = client.launch_model(request).await?;
    let model = client.get_model(&uid).await?.into_audio()?;
    let transcription = model.transcriptions(audio).await?;
    for s in &transcription.segments {
        println!("[{:7.2} -> {:7.2}] {}", s.start, s.end, s.text.trim());
    }
    println!("{}", transcription.text);
    client.terminate_model(&uid).await
}
