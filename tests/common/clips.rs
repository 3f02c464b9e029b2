//! Clips built from the speech fixtures (tests/fixtures/audio), shared by the tests and the
//! audio bench: 16 kHz WAV bytes, cuts, and a 5-minute clip of the fixtures between silences.

use std::path::Path;

/// Samples per second of the clips.
pub const RATE: usize = 16_000;

/// The 16 kHz mono samples of the fixture `name`.
pub fn fixture_samples(name: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    xinference::audio::input::decode_audio(&bytes).expect("the fixture decodes")
}

/// 16 kHz mono 16-bit PCM WAV bytes of `samples`.
pub fn wav_16k(samples: &[f32]) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend(b"RIFF");
    out.extend((36 + data).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes()); // PCM
    out.extend(1u16.to_le_bytes()); // mono
    out.extend((RATE as u32).to_le_bytes());
    out.extend((2 * RATE as u32).to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend(data.to_le_bytes());
    for s in samples {
        out.extend(((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    out
}

/// Seconds `from..to` of the fixture `name`.
pub fn cut(name: &str, from: usize, to: usize) -> Vec<f32> {
    fixture_samples(name)[from * RATE..to * RATE].to_vec()
}

/// About five minutes of speech: the 57 s clip, 3 s of silence, the 5 s clip, 2 s of silence,
/// again and again, ending with the 5 s clip. Returns the samples and the seconds at which
/// each copy of the 5 s clip starts.
pub fn five_minutes() -> (Vec<f32>, Vec<f64>) {
    let long = fixture_samples("long_en.flac");
    let short = fixture_samples("short_en.flac");
    let mut out = Vec::new();
    let mut starts = Vec::new();
    while out.len() < 290 * RATE {
        out.extend(&long);
        out.extend(std::iter::repeat_n(0.0, 3 * RATE));
        starts.push(out.len() as f64 / RATE as f64);
        out.extend(&short);
        out.extend(std::iter::repeat_n(0.0, 2 * RATE));
    }
    starts.push(out.len() as f64 / RATE as f64);
    out.extend(&short);
    (out, starts)
}
