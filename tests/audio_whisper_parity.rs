//! Whisper on the real CTranslate2 test models (tiny.en and base), in process: greedy and
//! beam-5 transcripts match faster-whisper's (recorded once by scripts/fixtures/whisper_speech.py
//! on the same model files) token for token, segment timestamps agree within 0.1 s, word
//! timestamps within 0.1 s, word error rate against the spoken text is at most 10%, a 57 s clip
//! comes back as segments covering it, translation on the multilingual model returns English,
//! and translation on `.en` is a 400.

mod common;

use common::whisper_dir;
use serde_json::Value;
use std::path::Path;
use xinference::protocol::audio::{Transcription, TranscriptionOptions};
use xinference::{AudioModel, Client, LaunchRequest, ModelType};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/audio")
            .join(name),
    )
    .expect("audio fixture")
}

fn reference() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio/whisper_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference")).expect("JSON")
}

async fn launch(client: &Client, name: &str, folder: &str) -> AudioModel {
    let uid = client
        .launch_model(
            LaunchRequest::new(name)
                .model_type(ModelType::Audio)
                .model_path(whisper_dir(folder).display().to_string()),
        )
        .await
        .expect("whisper launches");
    client
        .get_model(&uid)
        .await
        .unwrap()
        .into_audio()
        .expect("an audio handle")
}

/// Lower-case words without punctuation, numbers and British spellings as words.
pub fn words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| match w {
            "30" => "thirty",
            "10" => "ten",
            "9" => "nine",
            "6" => "six",
            "5" => "five",
            "2" => "two",
            "harbor" => "harbour",
            other => other,
        })
        .map(str::to_owned)
        .collect()
}

/// Word error rate of `hypothesis` against `reference` (Levenshtein over words).
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut cur = vec![i; h.len() + 1];
        for j in 1..=h.len() {
            let sub = prev[j - 1] + usize::from(r[i - 1] != h[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

/// Greedy decoding (the fixtures' `segments` were recorded with beam_size=1).
fn greedy() -> TranscriptionOptions {
    TranscriptionOptions {
        beam_size: Some(1),
        ..Default::default()
    }
}

/// Compares our transcription with faster-whisper's greedy one (`segments`).
fn check_parity(key: &str, ours: &Transcription, reference: &Value) {
    check_run(key, "segments", ours, reference)
}

/// Compares our transcription with faster-whisper's run `run` of clip `key`: the token streams,
/// then the timestamps of the segments.
fn check_run(key: &str, run: &str, ours: &Transcription, reference: &Value) {
    let r = &reference["clips"][key];
    let ref_segments = r[run].as_array().unwrap();
    let ref_tokens: Vec<u32> = ref_segments
        .iter()
        .flat_map(|s| {
            s["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
        })
        .collect();
    let our_tokens: Vec<u32> = ours
        .segments
        .iter()
        .flat_map(|s| s.tokens.clone())
        .collect();
    assert_eq!(
        our_tokens,
        ref_tokens,
        "{key} ({run}): tokens differ from faster-whisper's\nours: {}\nref:  {}",
        ours.text,
        ref_segments
            .iter()
            .map(|s| s["text"].as_str().unwrap())
            .collect::<String>()
    );
    assert_eq!(
        ours.segments.len(),
        ref_segments.len(),
        "{key}: segment count"
    );
    for (o, s) in ours.segments.iter().zip(ref_segments) {
        // Ours never end after the audio; faster-whisper's last timestamp may.
        let (start, end) = (
            s["start"].as_f64().unwrap(),
            s["end"].as_f64().unwrap().min(ours.duration),
        );
        assert!(
            (o.start - start).abs() <= 0.1 && (o.end - end).abs() <= 0.1,
            "{key}: segment {} at {}..{} vs faster-whisper's {start}..{end}",
            o.id,
            o.start,
            o.end
        );
        assert_eq!(o.text, s["text"].as_str().unwrap(), "{key}: segment text");
    }
    assert_eq!(
        ours.language,
        r["language"].as_str().unwrap(),
        "{key}: language"
    );
}

/// Segments are ordered, inside the audio, and (for long speech) cover it.
fn check_timeline(t: &Transcription) {
    let mut last = 0.0;
    for s in &t.segments {
        assert!(
            s.start >= last - 1e-9 && s.end >= s.start,
            "{:?}",
            t.segments
        );
        assert!(
            s.end <= t.duration + 1e-6,
            "segment ends after the audio: {s:?}"
        );
        last = s.end;
    }
}

#[tokio::test]
async fn tiny_en_matches_faster_whisper() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        xinference::Runtime::new(xinference::RuntimeConfig::new(home.path())).unwrap(),
    ));
    let model = launch(&client, "whisper-tiny.en", "whisper-tiny.en-ct2").await;
    let reference = reference();
    for clip in ["short_en", "long_en"] {
        let t = model
            .transcriptions_with(fixture(&format!("{clip}.flac")), greedy())
            .await
            .unwrap();
        check_parity(
            &format!("whisper-tiny.en/{clip}/transcribe"),
            &t,
            &reference,
        );
        check_timeline(&t);
    }
    // The 57 s clip: several segments from the start to the end of the speech.
    let t = model
        .transcriptions_with(fixture("long_en.flac"), greedy())
        .await
        .unwrap();
    assert!(t.duration > 50.0, "{}", t.duration);
    assert!(t.segments.len() >= 5, "{:?}", t.segments);
    assert!(t.segments[0].start < 2.0);
    assert!(
        t.segments.last().unwrap().end > t.duration - 5.0,
        "{:?}",
        t.segments.last()
    );
    assert!(
        t.segments.iter().any(|s| s.seek > 0),
        "more than one window was decoded"
    );
    let spoken = reference["clips"]["whisper-tiny.en/long_en/transcribe"]["spoken"]
        .as_str()
        .unwrap();
    let w = wer(spoken, &t.text);
    assert!(w <= 0.10, "WER {w:.3}: {}", t.text);
    // Sampling at a temperature above 0: the best of 3 samples (decoded as one batch), seeded
    // per request so that the same request gives the same answer.
    let sampled = TranscriptionOptions {
        temperature: Some(0.4),
        best_of: Some(3),
        ..Default::default()
    };
    let a = model
        .transcriptions_with(fixture("short_en.flac"), sampled.clone())
        .await
        .unwrap();
    let b = model
        .transcriptions_with(fixture("short_en.flac"), sampled)
        .await
        .unwrap();
    assert_eq!(a.text, b.text);
    assert!(a.text.to_lowercase().contains("lazy"), "{}", a.text);
    assert!(
        a.segments.iter().all(|s| s.temperature >= 0.4),
        "{:?}",
        a.segments
    );
    check_timeline(&a);
    // Translation needs a multilingual model.
    let e = model
        .translations(fixture("short_en.flac"))
        .await
        .unwrap_err();
    assert_eq!(e.kind().http_status(), 400, "{e}");
    assert!(e.to_string().contains("English-only"), "{e}");
}

#[tokio::test]
async fn base_matches_faster_whisper_and_translates() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        xinference::Runtime::new(xinference::RuntimeConfig::new(home.path())).unwrap(),
    ));
    let model = launch(&client, "whisper-base", "whisper-base-ct2").await;
    let reference = reference();
    for clip in ["short_en", "long_en", "spanish"] {
        let t = model
            .transcriptions_with(fixture(&format!("{clip}.flac")), greedy())
            .await
            .unwrap();
        check_parity(&format!("whisper-base/{clip}/transcribe"), &t, &reference);
        check_timeline(&t);
        if clip == "long_en" {
            let spoken = reference["clips"]["whisper-base/long_en/transcribe"]["spoken"]
                .as_str()
                .unwrap();
            let w = wer(spoken, &t.text);
            assert!(w <= 0.10, "WER {w:.3}: {}", t.text);
        }
    }
    // Detected language, and translation into English.
    let t = model
        .translations_with(fixture("spanish.flac"), greedy())
        .await
        .unwrap();
    check_parity("whisper-base/spanish/translate", &t, &reference);
    assert_eq!((t.task.as_str(), t.language.as_str()), ("translate", "es"));
    assert!(
        t.text.contains("Madrid") && t.text.contains("coffee"),
        "{}",
        t.text
    );
    // A given language is used as is.
    let options = TranscriptionOptions {
        language: Some("es".into()),
        ..greedy()
    };
    let t = model
        .transcriptions_with(fixture("spanish.flac"), options)
        .await
        .unwrap();
    assert_eq!(t.language, "es");
    assert!(t.text.contains("Madrid"), "{}", t.text);
    let bad = TranscriptionOptions {
        language: Some("xx".into()),
        ..Default::default()
    };
    let e = model
        .transcriptions_with(fixture("spanish.flac"), bad)
        .await
        .unwrap_err();
    assert_eq!(e.kind().http_status(), 400, "{e}");
}

/// Beam search with faster-whisper's defaults (beam 5, patience 1, length penalty 1, the
/// default when no beam_size is given) gives faster-whisper's beam-5 tokens.
#[tokio::test]
async fn beam_search_matches_faster_whisper() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        xinference::Runtime::new(xinference::RuntimeConfig::new(home.path())).unwrap(),
    ));
    let reference = reference();
    for (name, folder, clips) in [
        (
            "whisper-tiny.en",
            "whisper-tiny.en-ct2",
            &["short_en", "long_en"][..],
        ),
        (
            "whisper-base",
            "whisper-base-ct2",
            &["short_en", "long_en", "spanish"][..],
        ),
    ] {
        let model = launch(&client, name, folder).await;
        for clip in clips {
            let t = model
                .transcriptions(fixture(&format!("{clip}.flac")))
                .await
                .unwrap();
            check_run(
                &format!("{name}/{clip}/transcribe"),
                "beam5_segments",
                &t,
                &reference,
            );
            check_timeline(&t);
        }
    }
}

/// Word timestamps (greedy, word_timestamps=True in faster-whisper): the same words, each
/// start and end within 0.1 s of faster-whisper's, and the segments they move.
#[tokio::test]
async fn word_timestamps_match_faster_whisper() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        xinference::Runtime::new(xinference::RuntimeConfig::new(home.path())).unwrap(),
    ));
    let reference = reference();
    for (name, folder, clips) in [
        (
            "whisper-tiny.en",
            "whisper-tiny.en-ct2",
            &["short_en", "long_en"][..],
        ),
        (
            "whisper-base",
            "whisper-base-ct2",
            &["short_en", "spanish"][..],
        ),
    ] {
        let model = launch(&client, name, folder).await;
        for clip in clips {
            let key = format!("{name}/{clip}/transcribe");
            let options = TranscriptionOptions {
                timestamp_granularities: vec!["word".into()],
                ..greedy()
            };
            let t = model
                .transcriptions_with(fixture(&format!("{clip}.flac")), options)
                .await
                .unwrap();
            check_run(&key, "word_segments", &t, &reference);
            let ref_words: Vec<&Value> = reference["clips"][&key]["word_segments"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["words"].as_array().unwrap())
                .collect();
            let words = t.words.as_ref().expect("words were asked for");
            assert_eq!(words.len(), ref_words.len(), "{key}: word count");
            for (w, r) in words.iter().zip(&ref_words) {
                let (start, end) = (r["start"].as_f64().unwrap(), r["end"].as_f64().unwrap());
                assert_eq!(w.word, r["word"].as_str().unwrap().trim(), "{key}");
                assert!(
                    (w.start - start).abs() <= 0.1 && (w.end - end).abs() <= 0.1,
                    "{key}: {w:?} vs faster-whisper's {start}..{end}"
                );
                assert!(w.start <= w.end && w.end <= t.duration + 1e-6, "{w:?}");
            }
        }
    }
}

#[tokio::test]
async fn five_minute_clip_is_covered_by_ordered_segments() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        xinference::Runtime::new(xinference::RuntimeConfig::new(home.path())).unwrap(),
    ));
    let model = launch(&client, "whisper-tiny.en", "whisper-tiny.en-ct2").await;
    let (samples, short_starts) = common::clips::five_minutes();
    let seconds = samples.len() as f64 / 16_000.0;
    assert!(seconds > 295.0, "{seconds}");
    let t = model
        .transcriptions_with(common::clips::wav_16k(&samples), greedy())
        .await
        .unwrap();
    assert!((t.duration - seconds).abs() < 0.01, "{}", t.duration);
    check_timeline(&t);
    // Ten and more sequential windows, each seeking past the last timestamp of the one before.
    let seeks: Vec<usize> = t.segments.iter().map(|s| s.seek).collect();
    assert!(seeks.windows(2).all(|w| w[0] <= w[1]), "{seeks:?}");
    let windows = seeks
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(windows >= 10, "{windows} windows: {seeks:?}");
    // The segments cover the speech from start to end: no gap longer than the silences
    // (3 s) and a little more, the first near 0 and the last at the end.
    assert!(t.segments[0].start < 2.0, "{:?}", t.segments[0]);
    assert!(
        t.segments.last().unwrap().end > seconds - 3.0,
        "{:?}",
        t.segments.last()
    );
    for w in t.segments.windows(2) {
        assert!(w[1].start - w[0].end < 5.0, "a gap: {:?} {:?}", w[0], w[1]);
    }
    // Timestamps are absolute: each copy of the 5 s clip is found where it was put.
    for start in short_starts {
        assert!(
            t.segments
                .iter()
                .any(|s| (s.start - start).abs() < 2.0 && s.text.to_lowercase().contains("quick")),
            "no segment starts the 5 s clip at {start:.1} s: {:?}",
            t.segments
                .iter()
                .map(|s| (s.start, s.end, s.text.as_str()))
                .collect::<Vec<_>>()
        );
    }
}
