//! Audio files to 16 kHz mono samples: symphonia demuxes and decodes (wav, mp3, flac,
//! ogg/vorbis, m4a/aac), channels are averaged, and rubato resamples to 16 kHz.

use super::mel::SAMPLE_RATE;
use crate::{Error, Result};
use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Longest audio accepted, seconds (beyond it a request is refused before decoding more).
pub const MAX_SECONDS: usize = 4 * 3600;

/// Sample rates accepted, Hz: telephone-grade audio and up. Below, a few bytes would stand for
/// minutes of audio that resampling to 16 kHz must produce (a 1 Hz WAV of 3 KB is 27 minutes).
const SAMPLE_RATES: std::ops::RangeInclusive<usize> = 1_000..=768_000;

/// Decodes an audio file's bytes to 16 kHz mono f32 samples. Bytes that are not audio, hold no
/// samples, or are corrupt are a 400 that says so.
pub fn decode_audio(bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.is_empty() {
        return Err(Error::bad_request("the audio file is empty"));
    }
    // Any panic inside a third-party demuxer or decoder is this file's fault, not the
    // server's: a 400 like other corrupt files, and the model stays up.
    std::panic::catch_unwind(|| decode_unguarded(bytes)).unwrap_or_else(|_| {
        Err(Error::bad_request(
            "the audio file is corrupt: its decoder failed on it",
        ))
    })
}

/// [`decode_audio`] without its guard against decoder panics: what the `audio_file` fuzz
/// target and the corpus replay run, so that a panic is seen there rather than caught.
pub(crate) fn decode_unguarded(bytes: &[u8]) -> Result<Vec<f32>> {
    let not_audio = |e: SymphoniaError| {
        Error::bad_request(format!(
            "the file is not audio this server can decode (wav, mp3, flac, ogg/vorbis, m4a/aac): {e}"
        ))
    };
    let source = MediaSourceStream::new(
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        Default::default(),
    );
    let probed = super::formats::probe()
        .format(
            &Hint::new(),
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(not_audio)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| Error::bad_request("the audio file has no audio track"))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(not_audio)?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0) as usize;
    let mut mono: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => {
                if mono.is_empty() {
                    return Err(Error::bad_request(format!(
                        "the audio file is corrupt: {e}"
                    )));
                }
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet is skipped, as ffmpeg does.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => {
                return Err(Error::bad_request(format!(
                    "the audio file is corrupt: {e}"
                )))
            }
        };
        let spec = *decoded.spec();
        rate = spec.rate as usize;
        if !SAMPLE_RATES.contains(&rate) {
            return Err(Error::bad_request(format!(
                "the audio's sample rate {rate} Hz is outside {}..={} Hz",
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            )));
        }
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        mono.extend(
            buf.samples()
                .chunks(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        if rate > 0 && mono.len() / rate > MAX_SECONDS {
            return Err(Error::new(
                crate::ErrorKind::PayloadTooLarge,
                format!("the audio is longer than {MAX_SECONDS} seconds"),
            ));
        }
    }
    if mono.is_empty() || rate == 0 {
        return Err(Error::bad_request(
            "the audio file holds no samples (empty or corrupt)",
        ));
    }
    resample(&mono, rate)
}

/// Resamples mono `samples` at `rate` Hz to 16 kHz (band-limited sinc interpolation).
pub fn resample(samples: &[f32], rate: usize) -> Result<Vec<f32>> {
    if rate == SAMPLE_RATE {
        return Ok(samples.to_vec());
    }
    let params = SincInterpolationParameters {
        sinc_len: 256,
        f_cutoff: 0.95,
        interpolation: SincInterpolationType::Linear,
        oversampling_factor: 256,
        window: WindowFunction::BlackmanHarris2,
    };
    let chunk = 4096;
    let ratio = SAMPLE_RATE as f64 / rate as f64;
    let mut resampler = SincFixedIn::<f32>::new(ratio, 1.0, params, chunk, 1)
        .map_err(|e| Error::internal(format!("cannot resample: {e}")))?;
    let expected = (samples.len() as f64 * ratio).round() as usize;
    let delay = resampler.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + chunk);
    let fail = |e: rubato::ResampleError| Error::internal(format!("resampling failed: {e}"));
    let mut at = 0;
    while at + chunk <= samples.len() {
        let o = resampler
            .process(&[&samples[at..at + chunk]], None)
            .map_err(fail)?;
        out.extend_from_slice(&o[0]);
        at += chunk;
    }
    let o = resampler
        .process_partial(Some(&[&samples[at..]]), None)
        .map_err(fail)?;
    out.extend_from_slice(&o[0]);
    // Flush the filter's delay.
    while out.len() < expected + delay {
        let o = resampler
            .process_partial::<&[f32]>(None, None)
            .map_err(fail)?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    let end = (delay + expected).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut b = Vec::new();
        b.extend(b"RIFF");
        b.extend((36 + data_len).to_le_bytes());
        b.extend(b"WAVEfmt ");
        b.extend(16u32.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend(channels.to_le_bytes());
        b.extend(rate.to_le_bytes());
        b.extend((rate * channels as u32 * 2).to_le_bytes());
        b.extend((channels * 2).to_le_bytes());
        b.extend(16u16.to_le_bytes());
        b.extend(b"data");
        b.extend(data_len.to_le_bytes());
        samples.iter().for_each(|s| b.extend(s.to_le_bytes()));
        b
    }

    #[test]
    fn stereo_44k_becomes_16k_mono() {
        let n = 44_100;
        let samples: Vec<i16> = (0..n)
            .flat_map(|i| {
                let v = ((i as f32 * 440.0 * 2.0 * std::f32::consts::PI / 44_100.0).sin()
                    * 16_000.0) as i16;
                [v, v]
            })
            .collect();
        let out = decode_audio(&wav(44_100, 2, &samples)).unwrap();
        assert!((out.len() as i64 - 16_000).abs() <= 2, "{}", out.len());
        let peak = out[1000..15_000]
            .iter()
            .cloned()
            .fold(0f32, |a, b| a.max(b.abs()));
        assert!((peak - 16_000.0 / 32_768.0).abs() < 0.02, "{peak}");
    }

    #[test]
    fn refuses_what_is_not_audio() {
        assert!(decode_audio(b"").is_err());
        assert!(decode_audio(b"this is not audio at all, just some text").is_err());
        let header_only = wav(16_000, 1, &[]);
        let e = decode_audio(&header_only).unwrap_err();
        assert_eq!(e.kind().http_status(), 400);
    }

    /// Files with an ADTS sync word in their second half (found by the `audio_file` fuzz
    /// target, kept in its corpus): symphonia's ADTS reader, on a seekable source, divided a
    /// length of 0 into sampling steps and panicked (`audio::formats`). They are refused with
    /// a 400, without reaching the panic guard.
    #[test]
    fn adts_sync_word_late_in_the_file_is_a_400() {
        for bytes in [
            &include_bytes!(
                "../../../fuzz/regressions/audio_file/crash-22f2f86312a09a25559a94a2641392a27c2056ed"
            )[..],
            &include_bytes!(
                "../../../fuzz/regressions/audio_file/crash-f19286f36c46649ace2a02b0ad2b85ac4ada35de"
            )[..],
        ] {
            let e = decode_unguarded(bytes).unwrap_err();
            assert_eq!(e.kind().http_status(), 400);
        }
    }

    /// Raw AAC (ADTS), which `audio::formats` reads as a stream: the same speech as the
    /// 22.05 kHz WAV fixture, as long and as loud.
    #[test]
    fn adts_files_decode_as_a_stream() {
        let fixture = |name: &str| {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/audio");
            decode_audio(&std::fs::read(dir.join(name)).unwrap()).unwrap()
        };
        let (aac, wav) = (fixture("short_en.aac"), fixture("short_en_22k.wav"));
        // AAC adds an encoder delay and pads its last frame: at most a few frames of 1024.
        let frames = (aac.len() as f64 - wav.len() as f64) / (1024.0 * 16_000.0 / 22_050.0);
        assert!(
            (0.0..4.0).contains(&frames),
            "{} vs {}",
            aac.len(),
            wav.len()
        );
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        assert!(
            (rms(&aac) / rms(&wav) - 1.0).abs() < 0.1,
            "{} vs {}",
            rms(&aac),
            rms(&wav)
        );
    }

    /// A WAV at 1 Hz (found by the `audio_file` fuzz target: 3 KB that resampled to 27 minutes
    /// of 16 kHz audio) is refused by its sample rate.
    #[test]
    fn absurd_sample_rates_are_a_400() {
        let e = decode_audio(&wav(1, 1, &[1000; 1600])).unwrap_err();
        assert_eq!(e.kind().http_status(), 400);
        assert!(e.to_string().contains("sample rate"), "{e}");
        assert!(decode_audio(&wav(8_000, 1, &[1000; 1600])).is_ok());
    }
}
