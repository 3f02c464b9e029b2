//! Whisper speed beside faster-whisper, on the same CTranslate2 model folders (tiny.en and base),
//! the same clips (built from tests/fixtures/audio's espeak-ng speech: 5 s, the first 30 s of
//! the 57 s clip, and 5 minutes of the clips between silences, written as 16 kHz WAV files),
//! the same threads, in the same run: greedy decoding and beam 5, best of 3 after a warm-up
//! (one run for the 5-minute clip), then 4 requests of the 30 s clip one after another and at
//! once (greedy and beam 5). faster-whisper runs fp32 and int8 through
//! `scripts/bench_whisper.py` when `XINFERENCE_BENCH_PEER_PYTHON` names a Python with
//! faster-whisper and soundfile.
//!
//!     CANDLE_NUM_THREADS=2 XINFERENCE_BENCH_PEER_PYTHON=~/.cache/xinference-rs/refvenv-whisper/bin/python \
//!         cargo bench --bench audio
//!
//! Not a test: it asserts nothing about speed. For A/B runs of one's own change, a part of the
//! table: `XINFERENCE_BENCH_WHISPER_MODELS` (e.g. `tiny.en`: folders whose name contains one of
//! the comma-separated words), `XINFERENCE_BENCH_WHISPER_CLIPS` (e.g. `30s`: clips likewise),
//! `XINFERENCE_BENCH_WHISPER_BEAMS` (e.g. `1`), `XINFERENCE_BENCH_WHISPER_RUNS` (runs per row,
//! best kept; default 3, 1 for the 5-minute clip), `XINFERENCE_BENCH_WHISPER_CONCURRENT=0` (no
//! 4-request rows). The 4-request rows also show the CPU seconds of each half and their ratio
//! (on a loaded machine wall time counts the other processes too).
//!
//! `XINFERENCE_BENCH_WHISPER_PROFILE=phases,encoder,one-thread` (any of them) prints, instead
//! of the table, where tiny.en's time goes on the first window of the 57 s clip: `phases` (one
//! window's encoder pass, two side by side, decoder steps of 1, 2 and 4 requests with the
//! logits apart, their cross-attention alone), `encoder` (the encoder by part), `one-thread`
//! (decoder steps on a pool of one thread against two: is the step bound by memory?).

#[path = "../tests/common/clips.rs"]
mod clips;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use xinference::protocol::audio::TranscriptionOptions;
use xinference::{Client, LaunchRequest, ModelType, Runtime, RuntimeConfig};

const THREADS: usize = 2;
/// The clips, by the names the table shows.
const CLIPS: [&str; 3] = ["5s.wav", "30s.wav", "5min.wav"];
/// Greedy and faster-whisper's default beam search.
const BEAMS: [usize; 2] = [1, 5];

/// Whether `name` is selected by the comma-separated words of environment variable `var`
/// (everything when it is not set).
fn selected(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |words| {
        words
            .split(',')
            .any(|w| !w.trim().is_empty() && name.contains(w.trim()))
    })
}

fn models_dir() -> PathBuf {
    std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/xinference-rs/test-models")
        })
}

/// Writes the clips into `dir`.
fn write_clips(dir: &Path) {
    let short = clips::fixture_samples("short_en.flac");
    let (five_minutes, _) = clips::five_minutes();
    for (name, samples) in [
        (CLIPS[0], short),
        (CLIPS[1], clips::cut("long_en.flac", 0, 30)),
        (CLIPS[2], five_minutes),
    ] {
        std::fs::write(dir.join(name), clips::wav_16k(&samples)).expect("clip written");
    }
}

/// Runs `options` on `audio` `n` times concurrently; the seconds it took.
async fn concurrent(
    model: &xinference::AudioModel,
    audio: &[u8],
    options: &TranscriptionOptions,
    n: usize,
) -> f64 {
    let start = Instant::now();
    let runs = (0..n).map(|_| model.transcriptions_with(audio.to_vec(), options.clone()));
    for r in futures::future::join_all(runs).await {
        r.expect("transcribes");
    }
    start.elapsed().as_secs_f64()
}

/// The profiles `modes` names (comma-separated), on tiny.en and the 57 s clip's first window,
/// on the compute pool the runtime configured.
fn profile(modes: &str) {
    use xinference::audio::model::profile;
    let dir = models_dir().join("whisper-tiny.en-ct2");
    let model = xinference::audio::whisper::WhisperModel::load(&dir)
        .expect("tiny.en loads (fetch it with scripts/fetch-test-models.py whisper)");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio/long_en.flac");
    let audio = std::fs::read(&clip).expect("the 57 s clip");
    let mel = profile::first_window(&audio, model.n_mels).expect("decodes");
    for mode in modes.split(',').map(str::trim) {
        println!("## {mode}");
        match mode {
            "phases" => profile::phases(&model, &mel),
            "encoder" => profile::encoder(&model, &mel),
            "one-thread" => profile::decoder_one_thread(&model, &mel),
            other => panic!("unknown profile {other}: phases, encoder or one-thread"),
        }
    }
}

#[tokio::main]
async fn main() {
    let home = tempfile::tempdir().expect("temp dir");
    let clip_dir = tempfile::tempdir().expect("temp dir");
    write_clips(clip_dir.path());
    let clip = |name: &str| clip_dir.path().join(name);
    let mut config = RuntimeConfig::new(home.path());
    config.compute_threads = Some(THREADS);
    let client = Client::local(Arc::new(Runtime::new(config).expect("runtime")));
    if let Ok(modes) = std::env::var("XINFERENCE_BENCH_WHISPER_PROFILE") {
        profile(&modes);
        return;
    }
    println!(
        "| model | clip | search | xinference-rs | faster-whisper fp32 | faster-whisper int8 |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, folder) in [
        ("whisper-tiny.en", "whisper-tiny.en-ct2"),
        ("whisper-base", "whisper-base-ct2"),
    ] {
        if !selected("XINFERENCE_BENCH_WHISPER_MODELS", folder) {
            continue;
        }
        let dir = models_dir().join(folder);
        let uid = client
            .launch_model(
                LaunchRequest::new(name)
                    .model_type(ModelType::Audio)
                    .model_path(dir.display().to_string()),
            )
            .await
            .expect(
                "launch (fetch the models with scripts/fetch-test-models.py whisper whisper-base)",
            );
        let model = client.get_model(&uid).await.unwrap().into_audio().unwrap();
        let peer = std::env::var_os("XINFERENCE_BENCH_PEER_PYTHON").map(|python| {
            let out = std::process::Command::new(python)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_whisper.py"))
                .arg(&dir)
                .args(
                    CLIPS
                        .iter()
                        .filter(|c| selected("XINFERENCE_BENCH_WHISPER_CLIPS", c))
                        .map(|c| clip(c)),
                )
                .env("BENCH_THREADS", THREADS.to_string())
                .output()
                .expect("peer runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        });
        for c in CLIPS {
            if !selected("XINFERENCE_BENCH_WHISPER_CLIPS", c) {
                continue;
            }
            let audio = std::fs::read(clip(c)).expect("clip");
            for beam in BEAMS {
                if !selected("XINFERENCE_BENCH_WHISPER_BEAMS", &beam.to_string()) {
                    continue;
                }
                let options = TranscriptionOptions {
                    beam_size: Some(beam),
                    ..Default::default()
                };
                model
                    .transcriptions_with(audio.clone(), options.clone())
                    .await
                    .expect("warm-up");
                let mut best = f64::MAX;
                let runs = std::env::var("XINFERENCE_BENCH_WHISPER_RUNS")
                    .ok()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(if c == CLIPS[2] { 1 } else { 3 });
                for _ in 0..runs {
                    let start = Instant::now();
                    model
                        .transcriptions_with(audio.clone(), options.clone())
                        .await
                        .expect("transcribes");
                    best = best.min(start.elapsed().as_secs_f64());
                }
                let peer_time = |compute: &str| -> String {
                    peer.as_deref()
                        .and_then(|out| {
                            out.lines()
                                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                                .find(|v| {
                                    v["clip"] == c
                                        && v["compute_type"] == compute
                                        && v["beam_size"] == beam
                                })
                                .and_then(|v| v["seconds"].as_f64())
                        })
                        .map_or("-".to_owned(), |s| format!("{s:.2} s"))
                };
                println!(
                    "| {name} | {c} | beam {beam} | {best:.2} s | {} | {} |",
                    peer_time("float32"),
                    peer_time("int8")
                );
            }
        }
        // 4 requests of the 30 s clip at once against one after another.
        let audio = std::fs::read(clip(CLIPS[1])).expect("clip");
        let concurrent_rows =
            std::env::var("XINFERENCE_BENCH_WHISPER_CONCURRENT").map_or(true, |v| v != "0");
        for beam in BEAMS {
            if !concurrent_rows || !selected("XINFERENCE_BENCH_WHISPER_BEAMS", &beam.to_string()) {
                continue;
            }
            let options = TranscriptionOptions {
                beam_size: Some(beam),
                ..Default::default()
            };
            let (start, cpu) = (Instant::now(), xinference::compute::process_cpu_seconds());
            for _ in 0..4 {
                model
                    .transcriptions_with(audio.clone(), options.clone())
                    .await
                    .expect("transcribes");
            }
            let sequential = start.elapsed().as_secs_f64();
            let sequential_cpu = xinference::compute::process_cpu_seconds() - cpu;
            let cpu = xinference::compute::process_cpu_seconds();
            let together = concurrent(&model, &audio, &options, 4).await;
            let together_cpu = xinference::compute::process_cpu_seconds() - cpu;
            println!(
                "| {name} | 4 x {} | beam {beam}: 4 sequential {sequential:.2} s ({sequential_cpu:.2} s CPU), 4 concurrent {together:.2} s ({together_cpu:.2} s CPU) | {:.2}x | CPU {:.2}x | |",
                CLIPS[1],
                sequential / together,
                sequential_cpu / together_cpu
            );
        }
        client.terminate_model(&uid).await.expect("terminate");
    }
}
