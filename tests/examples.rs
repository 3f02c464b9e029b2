//! Every example in `examples/` runs against the test models and prints a real answer: an
//! example that does not run is a failing test.
//!
//! The example binaries are the ones cargo builds beside this test (`cargo test --release
//! --workspace` builds every example; with only `--test examples` selected, build them first
//! with `cargo build --release --examples`). Each runs with its own `XINFERENCE_HOME`.

mod common;

use common::{minilm_dir, qwen_gguf, tiny_reranker, whisper_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The built example `name`, beside this test binary (`target/release/examples/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/release/deps/examples-HASH -> target/release/examples/NAME
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example `{name}` is not built at {}.\nFix: `cargo build --release --examples` (or run the \
         whole `cargo test --release --workspace`, which builds every example).",
        path.display()
    );
    path
}

/// Runs example `name` with `args` and its own home; its stdout, after asserting it exited 0.
fn run(name: &str, args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(example(name))
        .args(args)
        .env("XINFERENCE_HOME", home.path())
        .current_dir(home.path())
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "example {name} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// The value after `key` on the line that starts with it.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{out}"))
        .trim()
}

const QUESTION: &str = "What is the capital of France?";

#[test]
fn chat_and_chat_stream_give_the_same_greedy_answer() {
    let gguf = path_arg(&qwen_gguf());
    let whole = run("chat", &[&gguf, QUESTION]);
    let answer = whole.lines().next().unwrap_or_default();
    assert!(answer.contains("Paris"), "{whole}");
    assert!(whole.contains("completion_tokens: "), "{whole}");

    // The stream's deltas add up to the same greedy answer.
    let streamed = run("chat_stream", &[&gguf, QUESTION]);
    let text = streamed
        .rsplit_once("\ndeltas: ")
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("no deltas line:\n{streamed}"));
    assert_eq!(text.trim(), answer.trim(), "{streamed}");
    let deltas: usize = field(&streamed, "deltas: ")
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(deltas > 1, "{streamed}");
    let finish = field(&whole, "finish_reason: ").split(',').next().unwrap();
    assert!(
        streamed.contains(&format!("finish_reason: {finish}")),
        "{streamed}"
    );
}

#[test]
fn tools_calls_get_weather_and_answers_with_its_result() {
    let out = run(
        "tools",
        &[
            &path_arg(&qwen_gguf()),
            "What is the weather like in Paris today?",
        ],
    );
    let call = field(&out, "tool call: ");
    assert!(call.starts_with("get_weather("), "{out}");
    assert!(call.contains("Paris"), "{out}");
    assert!(call.contains(r#""temperature":18"#), "{out}");
    // The second turn reads the tool's result (the 0.5B model restates it).
    let answer = out
        .split_once("answer: ")
        .map(|(_, a)| a)
        .unwrap_or_default();
    assert!(
        answer.contains("18"),
        "the answer uses the tool's result:\n{out}"
    );
    assert_eq!(field(&out, "finish_reason: "), "stop", "{out}");
}

#[test]
fn embeddings_match_sentence_transformers() {
    let fixture = common::minilm_fixture();
    let items = fixture["items"].as_array().unwrap();
    let (a, b) = (&items[0], &items[1]);
    let out = run(
        "embeddings",
        &[
            &path_arg(&minilm_dir()),
            a["text"].as_str().unwrap(),
            b["text"].as_str().unwrap(),
        ],
    );
    let tokens = a["tokens"].as_u64().unwrap() + b["tokens"].as_u64().unwrap();
    assert!(
        out.starts_with(&format!("2 vectors of 384 dimensions, {tokens} tokens")),
        "{out}"
    );
    let vector = |v: &serde_json::Value| -> Vec<f32> {
        v["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let expected = common::cosine(&vector(a), &vector(b));
    let printed: f32 = field(&out, "cosine(0, 1) = ").parse().unwrap();
    assert!(
        (printed - expected).abs() < 1e-3,
        "cosine {printed} against sentence-transformers' {expected}:\n{out}"
    );
}

#[test]
fn rerank_orders_documents_as_the_reference() {
    let (dir, reference) = tiny_reranker("xlmr");
    let set = &reference["sets"][0];
    let documents: Vec<&str> = set["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let mut args = vec![path_arg(&dir), set["query"].as_str().unwrap().to_owned()];
    args.extend(documents.iter().map(|d| d.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("rerank", &args);
    // One line per document, most relevant first: "SCORE  [INDEX] DOCUMENT".
    let ranked: Vec<(f64, usize)> = out
        .lines()
        .skip(1)
        .map(|l| {
            let (score, rest) = l.split_once("  [").unwrap_or_else(|| panic!("{out}"));
            let index = rest.split(']').next().unwrap().parse().unwrap();
            assert!(rest.ends_with(documents[index]), "{out}");
            (score.parse().unwrap(), index)
        })
        .collect();
    assert_eq!(ranked.len(), documents.len(), "{out}");
    for pair in ranked.windows(2) {
        assert!(pair[0].0 >= pair[1].0, "most relevant first:\n{out}");
    }
    for (score, index) in ranked {
        let expected = set["scores"][index].as_f64().unwrap();
        assert!(
            (score - expected).abs() < 1e-4,
            "document {index}: {score} against sentence-transformers' {expected}:\n{out}"
        );
    }
}

#[test]
fn image_draws_the_diffusers_reference() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-diffusion");
    let out_dir = tempfile::tempdir().unwrap();
    let png_path = out_dir.path().join("apple.png");
    // diffusers' first recorded case: sd15, "an apple", seed 42, 4 steps, guidance 7.5, 64x64.
    let out = run(
        "image",
        &[
            &path_arg(&fixtures.join("sd15")),
            "4",
            "64",
            &path_arg(&png_path),
        ],
    );
    assert!(out.contains("seed Some(42)"), "{out}");
    let png = std::fs::read(&png_path).expect("the example wrote the PNG");
    let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("a PNG")
        .to_rgb8();
    assert_eq!(image.dimensions(), (64, 64));
    let reference: Vec<f32> = std::fs::read(fixtures.join("reference-sd15-0.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let pixels = image.into_raw();
    assert_eq!(pixels.len(), reference.len());
    let max = pixels
        .iter()
        .zip(&reference)
        .map(|(a, r)| (i32::from(*a) - (r.clamp(0.0, 1.0) * 255.0).round() as i32).abs())
        .max()
        .unwrap();
    assert!(max <= 1, "{max} levels from diffusers' image");
}

#[test]
fn audio_transcribes_as_faster_whisper() {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio/short_en.flac");
    let out = run(
        "audio",
        &[
            &path_arg(&whisper_dir("whisper-tiny.en-ct2")),
            &path_arg(&clip),
        ],
    );
    // No options: beam search of 5, faster-whisper's default, recorded as `beam5_segments`.
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/audio/whisper_reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let segments = reference["clips"]["whisper-tiny.en/short_en/transcribe"]["beam5_segments"]
        .as_array()
        .unwrap();
    let expected: Vec<String> = segments
        .iter()
        .map(|s| {
            format!(
                "[{:7.2} -> {:7.2}] {}",
                s["start"].as_f64().unwrap(),
                s["end"].as_f64().unwrap(),
                s["text"].as_str().unwrap().trim()
            )
        })
        .collect();
    let printed: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(printed, expected, "{out}");
    let text = field(&out, "text: ");
    assert!(text.contains("lazy"), "{out}");
}
