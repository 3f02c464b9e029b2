//! Transcription as faster-whisper does it: 30 s windows that seek by the last timestamp token,
//! greedy decoding under OpenAI's timestamp rules with temperature fallback (compression ratio,
//! average log-probability, no-speech thresholds), language detection on multilingual models,
//! and segments with absolute timestamps.

use super::mel::{log_mel, N_FRAMES};
use super::whisper::WhisperModel;
use crate::protocol::audio::{
    AudioTask, Transcription, TranscriptionOptions, TranscriptionSegment,
};
use crate::{Error, Result};
use candle_core::Tensor;
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::SeedableRng;
use std::io::Write;

/// Seconds per timestamp token step.
const TIME_PRECISION: f64 = 0.02;
/// Seconds per feature frame.
const FRAME_SECONDS: f64 = 0.01;
/// Feature frames per encoder position.
const INPUT_STRIDE: usize = 2;
/// Latest first timestamp (1 s), in timestamp steps.
const MAX_INITIAL_TIMESTAMP_INDEX: u32 = 50;
/// Temperatures tried in turn when a decode fails the thresholds.
const FALLBACK: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
const COMPRESSION_RATIO_THRESHOLD: f64 = 2.4;
const LOG_PROB_THRESHOLD: f64 = -1.0;
const NO_SPEECH_THRESHOLD: f64 = 0.6;
/// Above this temperature the previous text no longer conditions the next window.
const PROMPT_RESET_ON_TEMPERATURE: f32 = 0.5;

/// One decode of one window.
struct Decoded {
    tokens: Vec<u32>,
    avg_logprob: f64,
    no_speech_prob: f64,
    temperature: f32,
    compression_ratio: f64,
}

/// Transcribes (or translates) 16 kHz mono `samples`.
pub fn transcribe(
    model: &mut WhisperModel,
    samples: &[f32],
    options: &TranscriptionOptions,
) -> Result<Transcription> {
    if options.task == AudioTask::Translate && !model.multilingual {
        return Err(Error::bad_request(
            "this model is English-only (.en) and cannot translate; use a multilingual Whisper model",
        ));
    }
    if options
        .timestamp_granularities
        .iter()
        .any(|g| g != "segment" && g != "word")
    {
        return Err(Error::bad_request(
            "timestamp_granularities[] takes segment and/or word",
        ));
    }
    if options.timestamp_granularities.iter().any(|g| g == "word") {
        return Err(Error::new(
            crate::ErrorKind::NotImplemented,
            "word timestamps are not implemented yet; ask for segment timestamps",
        ));
    }
    let temperatures: Vec<f32> = match options.temperature {
        Some(t) if !(0.0..=1.0).contains(&t) => {
            return Err(Error::bad_request("temperature must be between 0 and 1"))
        }
        Some(t) if t > 0.0 => FALLBACK.iter().copied().filter(|&f| f >= t).collect(),
        _ => FALLBACK.to_vec(),
    };
    let (features, frames) = log_mel(samples, model.n_mels, 160);
    let content_frames = frames - 1;
    let duration = samples.len() as f64 / 16_000.0;
    let n_mels = model.n_mels;
    let window = |seek: usize, size: usize| -> Vec<f32> {
        let mut mel = vec![0f32; n_mels * N_FRAMES];
        for m in 0..n_mels {
            let row = &features[m * frames + seek..m * frames + seek + size];
            mel[m * N_FRAMES..m * N_FRAMES + size].copy_from_slice(row);
        }
        mel
    };
    let sp = model.special.clone();
    let mut language = None;
    if model.multilingual {
        if let Some(code) = &options.language {
            language = Some(model.language_token(code)?);
        }
    }
    let mut all_tokens: Vec<u32> = Vec::new();
    if let Some(prompt) = options.prompt.as_deref().filter(|p| !p.trim().is_empty()) {
        all_tokens.extend(model.encode_text(&format!(" {}", prompt.trim()))?);
    }
    let condition = options.condition_on_previous_text.unwrap_or(true);
    let mut prompt_reset_since = 0;
    let mut segments = Vec::new();
    let mut seek = 0usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    while seek < content_frames {
        let time_offset = seek as f64 * FRAME_SECONDS;
        let segment_size = N_FRAMES.min(content_frames - seek);
        let segment_duration = segment_size as f64 * FRAME_SECONDS;
        let audio = model.encode(&window(seek, segment_size))?;
        if model.multilingual && language.is_none() {
            language = Some(detect_language(model, &audio)?);
        }
        let mut prompt = Vec::new();
        let previous = &all_tokens[prompt_reset_since..];
        if !previous.is_empty() {
            prompt.push(sp.sot_prev);
            let keep = model.max_length / 2 - 1;
            prompt.extend(&previous[previous.len().saturating_sub(keep)..]);
        }
        let sot_index = prompt.len();
        prompt.push(sp.sot);
        if model.multilingual {
            prompt.push(language.unwrap_or(sp.sot + 1));
            prompt.push(match options.task {
                AudioTask::Transcribe => sp.transcribe,
                AudioTask::Translate => sp.translate,
            });
        }
        let result =
            decode_with_fallback(model, &audio, &prompt, sot_index, &temperatures, &mut rng)?;
        if result.no_speech_prob > NO_SPEECH_THRESHOLD && result.avg_logprob <= LOG_PROB_THRESHOLD {
            seek += segment_size;
            continue;
        }
        let previous_seek = seek;
        let tokens = &result.tokens;
        let ts = sp.timestamp_begin;
        let mut pieces: Vec<(f64, f64, Vec<u32>)> = Vec::new();
        let single_timestamp_ending =
            tokens.len() >= 2 && tokens[tokens.len() - 2] < ts && ts <= tokens[tokens.len() - 1];
        let consecutive: Vec<usize> = (1..tokens.len())
            .filter(|&i| tokens[i] >= ts && tokens[i - 1] >= ts)
            .collect();
        if !consecutive.is_empty() {
            let mut slices = consecutive.clone();
            if single_timestamp_ending {
                slices.push(tokens.len());
            }
            let mut last = 0;
            for &cut in &slices {
                let piece = &tokens[last..cut];
                let start = time_offset + (piece[0] - ts) as f64 * TIME_PRECISION;
                let end = time_offset + (piece[piece.len() - 1] - ts) as f64 * TIME_PRECISION;
                pieces.push((start, end, piece.to_vec()));
                last = cut;
            }
            if single_timestamp_ending {
                seek += segment_size;
            } else {
                seek += (tokens[last - 1] - ts) as usize * INPUT_STRIDE;
            }
        } else {
            let mut seconds = segment_duration;
            if let Some(&t) = tokens.iter().rev().find(|&&t| t >= ts) {
                if t != ts {
                    seconds = (t - ts) as f64 * TIME_PRECISION;
                }
            }
            pieces.push((time_offset, time_offset + seconds, tokens.clone()));
            seek += segment_size;
        }
        for (start, end, piece) in pieces {
            let text = model.decode_text(&piece);
            if start == end || text.trim().is_empty() {
                continue;
            }
            all_tokens.extend(&piece);
            segments.push(TranscriptionSegment {
                id: segments.len(),
                seek: previous_seek,
                start: round3(start),
                end: round3(end.min(duration.max(start))),
                text,
                tokens: piece,
                temperature: result.temperature,
                avg_logprob: result.avg_logprob,
                compression_ratio: result.compression_ratio,
                no_speech_prob: result.no_speech_prob,
            });
        }
        if !condition || result.temperature > PROMPT_RESET_ON_TEMPERATURE {
            prompt_reset_since = all_tokens.len();
        }
    }
    let text: String = segments.iter().map(|s| s.text.as_str()).collect();
    Ok(Transcription {
        task: options.task.as_str().to_owned(),
        language: language
            .map(|l| model.language_code_of(l))
            .unwrap_or_else(|| "en".to_owned()),
        duration: round3(duration),
        text: text.trim().to_owned(),
        segments,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The most probable language token after `<|startoftranscript|>`.
fn detect_language(model: &mut WhisperModel, audio: &Tensor) -> Result<u32> {
    let mut state = model.net.start(audio)?;
    let logits = model.step(&[model.special.sot], &mut state, &[0])?;
    let logits = &logits[0];
    model
        .lang_ids
        .iter()
        .copied()
        .filter(|&id| (id as usize) < logits.len())
        .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
        .ok_or_else(|| Error::internal("the model has no language tokens"))
}

/// zlib compression ratio of `text` (repetitive text compresses well).
fn compression_ratio(text: &str) -> f64 {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = z.write_all(bytes);
    let compressed = z.finish().map(|c| c.len()).unwrap_or(bytes.len());
    bytes.len() as f64 / compressed.max(1) as f64
}

fn decode_with_fallback(
    model: &mut WhisperModel,
    audio: &Tensor,
    prompt: &[u32],
    sot_index: usize,
    temperatures: &[f32],
    rng: &mut rand::rngs::StdRng,
) -> Result<Decoded> {
    let mut tries: Vec<Decoded> = Vec::new();
    let mut below_cr: Vec<usize> = Vec::new();
    for &temperature in temperatures {
        let mut d = decode_window(model, audio, prompt, sot_index, temperature, rng)?;
        d.compression_ratio = compression_ratio(model.decode_text(&d.tokens).trim());
        let mut fallback = false;
        if d.compression_ratio > COMPRESSION_RATIO_THRESHOLD {
            fallback = true;
        } else {
            below_cr.push(tries.len());
        }
        if d.avg_logprob < LOG_PROB_THRESHOLD {
            fallback = true;
        }
        if d.no_speech_prob > NO_SPEECH_THRESHOLD && d.avg_logprob < LOG_PROB_THRESHOLD {
            fallback = false;
        }
        if !fallback {
            return Ok(d);
        }
        tries.push(d);
    }
    let last_temperature = *temperatures.last().unwrap_or(&0.0);
    let pool: Vec<usize> = if below_cr.is_empty() {
        (0..tries.len()).collect()
    } else {
        below_cr
    };
    let best = pool
        .into_iter()
        .max_by(|&a, &b| tries[a].avg_logprob.total_cmp(&tries[b].avg_logprob))
        .unwrap_or(0);
    let mut d = tries.swap_remove(best);
    d.temperature = last_temperature;
    Ok(d)
}

/// Log-softmax of `logits` in place.
fn log_softmax(logits: &mut [f32]) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter_mut().for_each(|l| *l -= log_sum);
}

/// Decodes one window from `prompt`: greedy at temperature 0, sampled above.
fn decode_window(
    model: &mut WhisperModel,
    audio: &Tensor,
    prompt: &[u32],
    sot_index: usize,
    temperature: f32,
    rng: &mut rand::rngs::StdRng,
) -> Result<Decoded> {
    let sp = model.special.clone();
    let ts = sp.timestamp_begin as usize;
    let mut tokens = prompt.to_vec();
    let sample_begin = prompt.len();
    let mut sum_logprob = 0f64;
    let mut state = model.net.start(audio)?;
    let mut first_logits = model.step(prompt, &mut state, &[sot_index, prompt.len() - 1])?;
    let mut logits = first_logits.pop().unwrap_or_default();
    let mut at_sot = first_logits.pop().unwrap_or_default();
    log_softmax(&mut at_sot);
    let no_speech_prob = at_sot
        .get(sp.no_speech as usize)
        .map_or(0.0, |l| l.exp() as f64);
    loop {
        let first = tokens.len() == sample_begin;
        let vocab = logits.len();
        // Suppression: blank at the start, the model's suppress list, <|notimestamps|>.
        if first {
            for &t in &model.suppress_begin {
                if (t as usize) < vocab {
                    logits[t as usize] = f32::NEG_INFINITY;
                }
            }
        }
        for &t in &model.suppress {
            if (t as usize) < vocab {
                logits[t as usize] = f32::NEG_INFINITY;
            }
        }
        logits[sp.no_timestamps as usize] = f32::NEG_INFINITY;
        apply_timestamp_rules(
            &mut logits,
            &tokens[sample_begin..],
            ts,
            sp.eot as usize,
            first,
        );
        let mut logprobs = logits.clone();
        log_softmax(&mut logprobs);
        let next = if temperature > 0.0 {
            let max = logits.iter().cloned().fold(f32::MIN, f32::max);
            let weights: Vec<f32> = logits
                .iter()
                .map(|&l| ((l - max) / temperature).exp())
                .collect();
            let dist = WeightedIndex::new(&weights)
                .map_err(|e| Error::internal(format!("sampling failed: {e}")))?;
            dist.sample(rng)
        } else {
            // The first of equal maxima, as argmax does.
            let mut best = 0;
            for (i, &l) in logits.iter().enumerate() {
                if l > logits[best] {
                    best = i;
                }
            }
            best
        };
        sum_logprob += logprobs[next] as f64;
        if next == sp.eot as usize {
            break;
        }
        tokens.push(next as u32);
        if tokens.len() >= model.max_length {
            break;
        }
        logits = model
            .step(&[next as u32], &mut state, &[0])?
            .pop()
            .unwrap_or_default();
    }
    let generated = tokens[sample_begin..].to_vec();
    let avg_logprob = sum_logprob / (generated.len() + 1) as f64;
    Ok(Decoded {
        tokens: generated,
        avg_logprob,
        no_speech_prob,
        temperature,
        compression_ratio: 0.0,
    })
}

/// OpenAI's `ApplyTimestampRules` on the logits of the next token after `sampled`.
fn apply_timestamp_rules(logits: &mut [f32], sampled: &[u32], ts: usize, eot: usize, first: bool) {
    let n = sampled.len();
    let last_was_ts = n >= 1 && sampled[n - 1] as usize >= ts;
    let penultimate_was_ts = n < 2 || sampled[n - 2] as usize >= ts;
    if last_was_ts {
        if penultimate_was_ts {
            logits[ts..].iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
        } else {
            logits[..eot]
                .iter_mut()
                .for_each(|l| *l = f32::NEG_INFINITY);
        }
    }
    if let Some(&last_ts) = sampled.iter().rev().find(|&&t| t as usize >= ts) {
        let bound = if last_was_ts && !penultimate_was_ts {
            last_ts as usize
        } else {
            last_ts as usize + 1
        };
        let bound = bound.min(logits.len());
        logits[ts..bound]
            .iter_mut()
            .for_each(|l| *l = f32::NEG_INFINITY);
    }
    if first {
        logits[..ts].iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
        let last_allowed = ts + MAX_INITIAL_TIMESTAMP_INDEX as usize;
        if last_allowed + 1 < logits.len() {
            logits[last_allowed + 1..]
                .iter_mut()
                .for_each(|l| *l = f32::NEG_INFINITY);
        }
    }
    let mut logprobs = logits.to_vec();
    log_softmax(&mut logprobs);
    let max_ts = logprobs[ts..]
        .iter()
        .cloned()
        .fold(f32::NEG_INFINITY, f32::max);
    if max_ts > f32::NEG_INFINITY {
        let ts_logprob = max_ts
            + logprobs[ts..]
                .iter()
                .map(|&l| (l - max_ts).exp())
                .sum::<f32>()
                .ln();
        let max_text = logprobs[..ts]
            .iter()
            .cloned()
            .fold(f32::NEG_INFINITY, f32::max);
        if ts_logprob > max_text {
            logits[..ts].iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_pairs_and_order() {
        let (ts, eot) = (10usize, 5usize);
        // After text then a timestamp: text is banned (a timestamp or eot follows).
        let mut l = vec![0f32; 20];
        apply_timestamp_rules(&mut l, &[11, 1, 12], ts, eot, false);
        assert!(l[..eot].iter().all(|x| x.is_infinite()));
        assert!(l[12].is_finite() && l[11].is_infinite());
        // After a pair of timestamps: no timestamp may follow.
        let mut l = vec![0f32; 20];
        apply_timestamp_rules(&mut l, &[11, 1, 12, 12], ts, eot, false);
        assert!(l[ts..].iter().all(|x| x.is_infinite()));
        // First token: a timestamp.
        let mut l = vec![0f32; 100];
        apply_timestamp_rules(&mut l, &[], ts, eot, true);
        assert!(l[..ts].iter().all(|x| x.is_infinite()) && l[ts].is_finite());
    }

    #[test]
    fn compression_ratio_flags_repetition() {
        assert!(compression_ratio(&"la ".repeat(100)) > 2.4);
        assert!(compression_ratio("The quick brown fox jumps over the lazy dog.") < 2.4);
    }
}
