//! Concurrent transcriptions over real HTTP share the model's passes and change nothing: four
//! different clips sent at once to whisper-tiny.en come back with exactly the tokens each gets
//! alone, greedy and with beam 5, and the model's description shows passes that served several
//! requests together.

mod common;

use common::clips::{cut, wav_16k};
use common::{whisper_dir, TestServer};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/audio")
            .join(name),
    )
    .expect("audio fixture")
}

/// The tokens and text of each segment of a `verbose_json` transcription of `audio`.
async fn transcribe(url: &str, uid: &str, audio: Vec<u8>, beam: usize) -> Vec<(Vec<u64>, String)> {
    let form = Form::new()
        .part("file", Part::bytes(audio).file_name("clip"))
        .text("model", uid.to_owned())
        .text("response_format", "verbose_json")
        .text("kwargs", json!({ "beam_size": beam }).to_string());
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/audio/transcriptions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| {
            let tokens = s["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap())
                .collect();
            (tokens, s["text"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn concurrent_requests_share_passes_and_get_their_own_transcripts() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let url = server.url.as_str();
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/models"))
        .json(&json!({
            "model_name": "whisper-tiny.en",
            "model_type": "audio",
            "model_path": whisper_dir("whisper-tiny.en-ct2").display().to_string(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let uid = r.json::<Value>().await.unwrap()["model_uid"]
        .as_str()
        .unwrap()
        .to_owned();
    // Four different clips: the short speech, the same resampled from a stereo mp3, and two
    // cuts of the long clip (20 and 25 s: each a whole window).
    let clips = [
        fixture("short_en.flac"),
        fixture("short_en_44k_stereo.mp3"),
        wav_16k(&cut("long_en.flac", 0, 20)),
        wav_16k(&cut("long_en.flac", 25, 50)),
    ];
    for beam in [1, 5] {
        let mut alone = Vec::new();
        for clip in &clips {
            alone.push(transcribe(url, &uid, clip.clone(), beam).await);
        }
        let together = futures::future::join_all(
            clips
                .iter()
                .map(|clip| transcribe(url, &uid, clip.clone(), beam)),
        )
        .await;
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert!(!a.is_empty(), "clip {i} has no segments");
            assert_eq!(a, t, "clip {i}, beam {beam}: concurrent differs from alone");
        }
        assert_ne!(alone[2], alone[3], "the clips differ");
    }
    let d: Value = reqwest::get(format!("{url}/v1/models/{uid}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let batching = &d["batching"];
    assert!(
        batching["largest_batch"].as_u64().unwrap() >= 2,
        "no pass served two requests: {d}"
    );
    assert!(batching["windows"].as_u64().unwrap() >= 16, "{d}");
    server.stop().await;
}
