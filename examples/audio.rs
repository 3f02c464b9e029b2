//! Launch Whisper in process and transcribe an audio file (wav, mp3, flac, ogg, m4a).
//!
//!     cargo run --release --example audio -- ~/.cache/xinference-rs/test-models/whisper-tiny.en-ct2 \
//!         tests/fixtures/audio/short_en.flac
//!
//! The first argument is a Whisper folder (CTranslate2 `model.bin` or Hugging Face safetensors);
//! without it (or with `-`) whisper-tiny.en is fetched from the Hugging Face hub. The second is
//! the audio file (the bundled test clip by default).

use xinference::{Client, LaunchRequest};

#[tokio::main]
async fn main() -> xinference::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|p| p != "-");
    let file = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/audio/short_en.flac"
        )
        .to_owned()
    });
    let audio = std::fs::read(&file)
        .map_err(|e| xinference::Error::bad_request(format!("cannot read {file}: {e}")))?;

    let client = Client::local_from_env()?;
    let mut launch = LaunchRequest::audio("whisper-tiny.en");
    if let Some(path) = path {
        launch = launch.model_path(path);
    }
    let model = client.launch_audio(launch).await?;
    let transcription = model.transcriptions(audio).await?;
    for s in &transcription.segments {
        println!("[{:7.2} -> {:7.2}] {}", s.start, s.end, s.text.trim());
    }
    println!("text: {}", transcription.text.trim());
    client.terminate_model(model.uid()).await
}
