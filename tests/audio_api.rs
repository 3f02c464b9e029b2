//! Speech to text over real HTTP: launching whisper-tiny.en (a CTranslate2 folder) through
//! `POST /v1/models`, `/v1/audio/transcriptions` in every response format with its content type,
//! subtitles that parse with monotonic timestamps inside the audio, audio in wav/ogg/mp3 at other
//! rates and channel counts, every bad input a 4xx with a JSON body while the server keeps
//! serving, the Rust remote client, and the official `openai` and `xinference-client` SDKs.

mod common;

use common::{run_python, whisper_dir, TestServer};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xinference::runtime::TranscriptionEvent;
use xinference::Client;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).expect("audio fixture")
}

async fn post_form(url: &str, route: &str, form: Form) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .post(format!("{url}{route}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

fn form(uid: &str, audio: Vec<u8>, format: &str) -> Form {
    Form::new()
        .part("file", Part::bytes(audio).file_name("clip"))
        .text("model", uid.to_owned())
        .text("response_format", format.to_owned())
}

/// Parses `HH:MM:SS,mmm --> HH:MM:SS,mmm` cue lines (`,` in SRT, `.` in VTT) into seconds.
fn cues(text: &str) -> Vec<(f64, f64)> {
    let secs = |t: &str| -> f64 {
        let t = t.trim().replace(',', ".");
        let parts: Vec<&str> = t.split(':').collect();
        assert_eq!(parts.len(), 3, "timestamp {t}");
        parts[0].parse::<f64>().unwrap() * 3600.0
            + parts[1].parse::<f64>().unwrap() * 60.0
            + parts[2].parse::<f64>().unwrap()
    };
    text.lines()
        .filter(|l| l.contains(" --> "))
        .map(|l| {
            let (a, b) = l.split_once(" --> ").unwrap();
            (secs(a), secs(b))
        })
        .collect()
}

/// The JSON events of an SSE body, checking that `data: [DONE]` ends it (and only it).
fn sse_data(body: &str) -> Vec<Value> {
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn check_cues(cues: &[(f64, f64)], duration: f64) {
    assert!(!cues.is_empty());
    let mut last = 0.0;
    for &(a, b) in cues {
        assert!(a >= last && b >= a && b <= duration + 1e-3, "{cues:?}");
        last = b;
    }
}

#[tokio::test]
async fn transcriptions_over_http() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let dir = whisper_dir("whisper-tiny.en-ct2");
    let r = http
        .post(format!("{}/v1/models", server.url))
        .json(&json!({
            "model_name": "whisper-tiny.en",
            "model_type": "audio",
            "model_path": dir.display().to_string(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let uid = r.json::<Value>().await.unwrap()["model_uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = server.url.as_str();
    let route = "/v1/audio/transcriptions";
    let clip = fixture("short_en.flac");

    // Every response format, with its content type.
    let (s, ct, body) = post_form(url, route, form(&uid, clip.clone(), "json")).await;
    assert_eq!((s, ct.as_str()), (200, "application/json"), "{body}");
    let text = serde_json::from_str::<Value>(&body).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("lazy"), "{text}");
    let (s, ct, verbose) = post_form(url, route, form(&uid, clip.clone(), "verbose_json")).await;
    assert_eq!((s, ct.as_str()), (200, "application/json"), "{verbose}");
    let v: Value = serde_json::from_str(&verbose).unwrap();
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "en");
    assert_eq!(v["text"], text);
    let duration = v["duration"].as_f64().unwrap();
    assert!((duration - 5.0).abs() < 3.0, "{duration}");
    for key in [
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    ] {
        assert!(
            v["segments"][0].get(key).is_some(),
            "segments lack {key}: {v}"
        );
    }
    let (s, ct, plain) = post_form(url, route, form(&uid, clip.clone(), "text")).await;
    assert_eq!((s, ct.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(plain.trim(), text.trim());
    let (s, ct, srt) = post_form(url, route, form(&uid, clip.clone(), "srt")).await;
    assert_eq!((s, ct.as_str()), (200, "text/plain; charset=utf-8"));
    assert!(srt.starts_with("1\n"), "{srt}");
    check_cues(&cues(&srt), duration);
    let (s, ct, vtt) = post_form(url, route, form(&uid, clip.clone(), "vtt")).await;
    assert_eq!((s, ct.as_str()), (200, "text/vtt; charset=utf-8"));
    assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
    check_cues(&cues(&vtt), duration);
    assert_eq!(cues(&srt), cues(&vtt));

    // The same speech as a 22.05 kHz wav, an ogg/vorbis, a 44.1 kHz stereo mp3 and raw AAC.
    for file in [
        "short_en_22k.wav",
        "short_en.ogg",
        "short_en_44k_stereo.mp3",
        "short_en.aac",
    ] {
        let (s, _, body) = post_form(url, route, form(&uid, fixture(file), "json")).await;
        assert_eq!(s, 200, "{file}: {body}");
        let got = serde_json::from_str::<Value>(&body).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_lowercase();
        assert!(
            got.contains("lazy") && got.contains("sea shore"),
            "{file}: {got}"
        );
    }

    // Bad input: a 4xx with a JSON body, and the server keeps serving.
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "not audio",
            form(&uid, b"hello, this is text".to_vec(), "json"),
            400,
            "not audio",
        ),
        ("empty file", form(&uid, Vec::new(), "json"), 400, "empty"),
        (
            "corrupt flac",
            form(&uid, clip[..200].to_vec(), "json"),
            400,
            "audio",
        ),
        (
            "no file",
            Form::new().text("model", uid.clone()),
            400,
            "file",
        ),
        (
            "no model",
            Form::new().part("file", Part::bytes(clip.clone()).file_name("a")),
            400,
            "model",
        ),
        (
            "unknown model",
            form("no-such-model", clip.clone(), "json"),
            404,
            "no-such-model",
        ),
        (
            "bad format",
            form(&uid, clip.clone(), "docx"),
            400,
            "response_format",
        ),
        (
            "bad temperature",
            form(&uid, clip.clone(), "json").text("temperature", "hot"),
            400,
            "temperature",
        ),
        (
            "bad kwargs",
            form(&uid, clip.clone(), "json").text("kwargs", "{not json"),
            400,
            "kwargs",
        ),
        (
            "too large",
            form(&uid, vec![0u8; 26 * 1024 * 1024], "json"),
            413,
            "",
        ),
    ];
    for (what, f, status, needle) in cases {
        let (s, ct, body) = post_form(url, route, f).await;
        assert_eq!(s, status, "{what}: {body}");
        assert!(ct.starts_with("application/json"), "{what}: {ct}");
        let detail = serde_json::from_str::<Value>(&body).unwrap()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(detail.contains(needle), "{what}: {detail}");
    }
    let (s, _, body) = post_form(
        url,
        "/v1/audio/translations",
        form(&uid, clip.clone(), "json"),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("English-only"), "{body}");
    let (s, _, body) = post_form(url, route, form(&uid, clip.clone(), "json")).await;
    assert_eq!(s, 200, "the server still serves: {body}");

    // stream=true: OpenAI's transcript.text.delta events, then transcript.text.done.
    let (s, ct, body) = post_form(
        url,
        route,
        form(&uid, clip.clone(), "json").text("stream", "true"),
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "text/event-stream"), "{body}");
    let events = sse_data(&body);
    let done = events.last().unwrap();
    assert_eq!(done["type"], "transcript.text.done", "{body}");
    assert_eq!(done["text"], text);
    let deltas: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "transcript.text.delta", "{body}");
            e["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, text);
    // verbose_json: each segment whole too, and the whole transcription at the end.
    let (s, _, body) = post_form(
        url,
        route,
        form(&uid, clip.clone(), "verbose_json").text("stream", "true"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let events = sse_data(&body);
    let segments: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "transcript.text.segment")
        .collect();
    assert_eq!(
        segments.len(),
        v["segments"].as_array().unwrap().len(),
        "{body}"
    );
    for (got, want) in segments.iter().zip(v["segments"].as_array().unwrap()) {
        assert_eq!(got["text"], want["text"]);
        assert_eq!(got["tokens"], want["tokens"]);
        assert_eq!(
            (got["start"].as_f64(), got["end"].as_f64()),
            (want["start"].as_f64(), want["end"].as_f64())
        );
    }
    let done = events.last().unwrap();
    assert_eq!(done["type"], "transcript.text.done", "{body}");
    assert_eq!(done["text"], text);
    assert_eq!(done["segments"], v["segments"]);
    assert_eq!(done["duration"], v["duration"]);
    // Subtitles do not stream: a 400 that says so.
    let (s, _, body) = post_form(
        url,
        route,
        form(&uid, clip.clone(), "srt").text("stream", "true"),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("srt and vtt"), "{body}");
    // A bad stream request is an ordinary error answer, not a stream.
    let (s, ct, body) = post_form(
        url,
        route,
        form(&uid, b"not audio at all".to_vec(), "json").text("stream", "true"),
    )
    .await;
    assert_eq!((s, ct.as_str()), (400, "application/json"), "{body}");
    // Word timestamps in verbose_json, and search options in Xinference's kwargs.
    let (s, _, body) = post_form(
        url,
        route,
        form(&uid, clip.clone(), "verbose_json")
            .text("timestamp_granularities[]", "word")
            .text("kwargs", r#"{"beam_size": 1, "patience": 2.0}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let words = v["words"].as_array().expect("words");
    assert!(words.len() >= 8, "{body}");
    for w in words {
        let (start, end) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
        assert!(0.0 <= start && start <= end && end <= duration, "{w}");
        assert!(!w["word"].as_str().unwrap().is_empty(), "{w}");
    }
    for (kwargs, needle) in [
        (r#"{"beam_size": 0}"#, "beam_size"),
        (r#"{"beam_size": "five"}"#, "beam_size"),
        (r#"{"patience": 0}"#, "patience"),
    ] {
        let (s, _, body) = post_form(
            url,
            route,
            form(&uid, clip.clone(), "json").text("kwargs", kwargs),
        )
        .await;
        assert_eq!(s, 400, "{kwargs}: {body}");
        assert!(body.contains(needle), "{kwargs}: {body}");
    }

    // The Rust client over HTTP.
    let remote = Client::remote(url, None).unwrap();
    let model = remote.get_model(&uid).await.unwrap().into_audio().unwrap();
    let t = model.transcriptions(clip.clone()).await.unwrap();
    assert_eq!(t.text, text);
    assert!(!t.segments.is_empty());
    let e = model.translations(clip.clone()).await.unwrap_err();
    assert_eq!(e.kind().http_status(), 400);
    // Its stream: the segments as they are decoded, then the whole transcription.
    let mut events = model
        .transcriptions_stream(clip.clone(), Default::default())
        .await
        .unwrap();
    let (mut segments, mut done) = (Vec::new(), None);
    while let Some(event) = events.next().await {
        match event {
            TranscriptionEvent::Segment(s) => segments.push(s),
            TranscriptionEvent::Done(t) => done = Some(t),
            TranscriptionEvent::Failed(e) => panic!("the stream failed: {e}"),
        }
    }
    let done = done.expect("a done event");
    assert_eq!(done.text, text);
    assert_eq!(segments, done.segments);
    assert_eq!(segments, t.segments);
    let e = model
        .transcriptions_stream(b"not audio".to_vec(), Default::default())
        .await
        .err()
        .expect("not audio is refused");
    assert_eq!(e.kind().http_status(), 400);

    // The official SDKs.
    let out = run_python(
        "openai_audio.py",
        &[
            url,
            &uid,
            &fixture_path("short_en.flac").display().to_string(),
        ],
    )
    .await;
    assert!(out.contains("openai audio: ok"), "{out}");
    server.stop().await;
}
