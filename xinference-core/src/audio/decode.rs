//! Transcription as faster-whisper does it: 30 s windows that seek by the last timestamp token,
//! each searched by `search.rs` (beam search, greedy or best-of sampling under OpenAI's
//! timestamp rules) with temperature fallback (compression ratio, average log-probability,
//! no-speech thresholds), language detection on multilingual models, and segments with absolute
//! timestamps.

use super::align::{add_word_timestamps, Piece};
use super::mel::{log_mel, N_FRAMES};
use super::model::DecoderState;
use super::search::{generate, Decoded, SearchOptions};
use super::whisper::WhisperModel;
use super::Progress;
use crate::protocol::audio::{
    AudioTask, Transcription, TranscriptionOptions, TranscriptionSegment, TranscriptionWord,
};
use crate::{Error, Result};
use rand::SeedableRng;
use std::io::Write;

/// Seconds per timestamp token step.
const TIME_PRECISION: f64 = 0.02;
/// Seconds per feature frame.
const FRAME_SECONDS: f64 = 0.01;
/// Feature frames per encoder position.
const INPUT_STRIDE: usize = 2;
/// Temperatures tried in turn when a decode fails the thresholds.
const FALLBACK: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
const COMPRESSION_RATIO_THRESHOLD: f64 = 2.4;
const LOG_PROB_THRESHOLD: f64 = -1.0;
const NO_SPEECH_THRESHOLD: f64 = 0.6;
/// Above this temperature the previous text no longer conditions the next window.
const PROMPT_RESET_ON_TEMPERATURE: f32 = 0.5;

/// Transcribes (or translates) 16 kHz mono `samples`.
pub fn transcribe(
    model: &WhisperModel,
    samples: &[f32],
    options: &TranscriptionOptions,
) -> Result<Transcription> {
    transcribe_with(model, samples, options, &mut |_| Ok(()))
}

/// [`transcribe`], reporting to `on_progress` once the request is checked, before each decoder
/// step, and each segment as soon as it is decoded (an error from it, such as a gone client,
/// stops the work within a step).
pub fn transcribe_with(
    model: &WhisperModel,
    samples: &[f32],
    options: &TranscriptionOptions,
    on_progress: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Transcription> {
    let (temperatures, search) = check_request(model, options)?;
    on_progress(Progress::Started)?;
    let (features, frames) = log_mel(samples, model.n_mels, 160);
    let content_frames = frames - 1;
    let duration = samples.len() as f64 / 16_000.0;
    let mut language = requested_language(model, options)?;
    let mut all_tokens = initial_prompt_tokens(model, options)?;
    let condition = options.condition_on_previous_text.unwrap_or(true);
    let mut prompt_reset_since = 0;
    let mut segments = Vec::new();
    let words_wanted = options.wants_words();
    let mut words = Vec::new();
    let mut last_speech = 0.0;
    let mut seek = 0usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    while seek < content_frames {
        let time_offset = seek as f64 * FRAME_SECONDS;
        let segment_size = N_FRAMES.min(content_frames - seek);
        let mel = window_mel(&features, frames, model.n_mels, seek, segment_size);
        let audio = model.encode(mel)?;
        if model.multilingual && language.is_none() {
            language = Some(detect_language(model, &audio)?);
        }
        let (prompt, sot_index) = window_prompt(
            model,
            &all_tokens[prompt_reset_since..],
            language,
            options.task,
        );
        let result = decode_with_fallback(
            model,
            &audio,
            (&prompt, sot_index),
            &temperatures,
            &search,
            &mut rng,
            &mut || on_progress(Progress::Step),
        )?;
        if result.no_speech_prob > NO_SPEECH_THRESHOLD && result.avg_logprob <= LOG_PROB_THRESHOLD {
            seek += segment_size;
            continue;
        }
        let previous_seek = seek;
        let (mut pieces, next_seek, single_timestamp_ending) = split_by_timestamps(
            &result.tokens,
            model.special.timestamp_begin,
            seek,
            segment_size,
        );
        seek = next_seek;
        if words_wanted {
            let code = language
                .map(|l| model.language_code_of(l))
                .unwrap_or_else(|| "en".to_owned());
            add_word_timestamps(
                model,
                &audio,
                &prompt[sot_index..],
                &mut pieces,
                previous_seek,
                segment_size,
                &code,
                last_speech,
            )?;
            let last_word_end = last_word_end(&pieces);
            if !single_timestamp_ending {
                if let Some(end) = last_word_end.filter(|&e| e > time_offset) {
                    seek = (end * 100.0).round() as usize;
                }
            }
            if let Some(end) = last_word_end {
                last_speech = end;
            }
        }
        let window = WindowResult {
            seek: previous_seek,
            duration,
            decoded: &result,
        };
        for piece in pieces {
            let Some(segment) = piece_segment(model, &piece, segments.len(), &window) else {
                continue;
            };
            all_tokens.extend(&piece.tokens);
            on_progress(Progress::Segment(&segment))?;
            segments.push(segment);
            words.extend(piece.words.into_iter().map(|w| TranscriptionWord {
                word: w.word.trim().to_owned(),
                start: w.start,
                end: w.end,
                probability: w.probability,
            }));
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
        words: words_wanted.then_some(words),
    })
}

/// Checks a request against the model before any work: translation needs a multilingual
/// model, granularities are `segment`/`word`, the temperature is in 0..=1 and the language is
/// known. Returns the fallback temperatures to try and the search options.
fn check_request(
    model: &WhisperModel,
    options: &TranscriptionOptions,
) -> Result<(Vec<f32>, SearchOptions)> {
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
    let temperatures: Vec<f32> = match options.temperature {
        Some(t) if !(0.0..=1.0).contains(&t) => {
            return Err(Error::bad_request("temperature must be between 0 and 1"))
        }
        Some(t) if t > 0.0 => FALLBACK.iter().copied().filter(|&f| f >= t).collect(),
        _ => FALLBACK.to_vec(),
    };
    let search = search_options(options)?;
    if let Some(code) = options.language.as_deref().filter(|_| model.multilingual) {
        model.language_token(code)?;
    }
    Ok((temperatures, search))
}

/// The language token the request asks for, on multilingual models (`None`: detect it).
fn requested_language(model: &WhisperModel, options: &TranscriptionOptions) -> Result<Option<u32>> {
    let mut language = None;
    if model.multilingual {
        if let Some(code) = &options.language {
            language = Some(model.language_token(code)?);
        }
    }
    Ok(language)
}

/// The tokens of the request's initial prompt (a leading space, trimmed), conditioning the
/// first window; empty without one.
fn initial_prompt_tokens(model: &WhisperModel, options: &TranscriptionOptions) -> Result<Vec<u32>> {
    let mut all_tokens: Vec<u32> = Vec::new();
    if let Some(prompt) = options.prompt.as_deref().filter(|p| !p.trim().is_empty()) {
        all_tokens.extend(model.encode_text(&format!(" {}", prompt.trim()))?);
    }
    Ok(all_tokens)
}

/// The `n_mels x N_FRAMES` encoder input for the `size` frames at `seek` of the whole log-mel
/// `features` (`n_mels` rows of `frames`), zero-padded on the right.
pub(crate) fn window_mel(
    features: &[f32],
    frames: usize,
    n_mels: usize,
    seek: usize,
    size: usize,
) -> Vec<f32> {
    let mut mel = vec![0f32; n_mels * N_FRAMES];
    for m in 0..n_mels {
        let row = &features[m * frames + seek..m * frames + seek + size];
        mel[m * N_FRAMES..m * N_FRAMES + size].copy_from_slice(row);
    }
    mel
}

/// The decoder prompt of a window: the tail of the `previous` text tokens (after
/// `<|startofprev|>`, at most half the context), then `<|startoftranscript|>` and, on
/// multilingual models, the language and task tokens. Returns it and the index of
/// `<|startoftranscript|>`.
fn window_prompt(
    model: &WhisperModel,
    previous: &[u32],
    language: Option<u32>,
    task: AudioTask,
) -> (Vec<u32>, usize) {
    let sp = &model.special;
    let mut prompt = Vec::new();
    if !previous.is_empty() {
        prompt.push(sp.sot_prev);
        let keep = model.max_length / 2 - 1;
        prompt.extend(&previous[previous.len().saturating_sub(keep)..]);
    }
    let sot_index = prompt.len();
    prompt.push(sp.sot);
    if model.multilingual {
        prompt.push(language.unwrap_or(sp.sot + 1));
        prompt.push(match task {
            AudioTask::Transcribe => sp.transcribe,
            AudioTask::Translate => sp.translate,
        });
    }
    (prompt, sot_index)
}

/// The end of the last word of `pieces`, or of the last piece when none has words.
fn last_word_end(pieces: &[Piece]) -> Option<f64> {
    pieces
        .iter()
        .rev()
        .flat_map(|p| p.words.iter().rev())
        .map(|w| w.end)
        .next()
        .or(pieces.last().map(|p| p.end))
}

/// What the segments of one decoded window share.
struct WindowResult<'a> {
    /// The frame the window started at.
    seek: usize,
    /// Seconds of audio in the whole request (segments end no later).
    duration: f64,
    /// The decode the segments come from.
    decoded: &'a Decoded,
}

/// The segment `id` of one piece of a window, or `None` for an empty piece (no time span or
/// blank text).
fn piece_segment(
    model: &WhisperModel,
    piece: &Piece,
    id: usize,
    window: &WindowResult,
) -> Option<TranscriptionSegment> {
    let text = model.decode_text(&piece.tokens);
    if piece.start == piece.end || text.trim().is_empty() {
        return None;
    }
    let result = window.decoded;
    Some(TranscriptionSegment {
        id,
        seek: window.seek,
        start: round3(piece.start),
        end: round3(piece.end.min(window.duration.max(piece.start))),
        text,
        tokens: piece.tokens.clone(),
        temperature: result.temperature,
        avg_logprob: result.avg_logprob,
        compression_ratio: result.compression_ratio,
        no_speech_prob: result.no_speech_prob,
    })
}

/// Cuts the tokens of a window (which starts at frame `seek` and holds `size` frames) into
/// segments at consecutive timestamp tokens, as faster-whisper's
/// `_split_segments_by_timestamps`. Returns them, the next seek, and whether the tokens end
/// with a single timestamp.
fn split_by_timestamps(
    tokens: &[u32],
    ts: u32,
    seek: usize,
    size: usize,
) -> (Vec<Piece>, usize, bool) {
    let time_offset = seek as f64 * FRAME_SECONDS;
    let piece = |start: f64, end: f64, tokens: &[u32]| Piece {
        start,
        end,
        tokens: tokens.to_vec(),
        words: Vec::new(),
    };
    let mut pieces = Vec::new();
    let single_timestamp_ending =
        tokens.len() >= 2 && tokens[tokens.len() - 2] < ts && ts <= tokens[tokens.len() - 1];
    let consecutive: Vec<usize> = (1..tokens.len())
        .filter(|&i| tokens[i] >= ts && tokens[i - 1] >= ts)
        .collect();
    let next_seek = if !consecutive.is_empty() {
        let mut slices = consecutive;
        if single_timestamp_ending {
            slices.push(tokens.len());
        }
        let mut last = 0;
        for &cut in &slices {
            let p = &tokens[last..cut];
            let start = time_offset + (p[0] - ts) as f64 * TIME_PRECISION;
            let end = time_offset + (p[p.len() - 1] - ts) as f64 * TIME_PRECISION;
            pieces.push(piece(start, end, p));
            last = cut;
        }
        if single_timestamp_ending {
            seek + size
        } else {
            seek + (tokens[last - 1] - ts) as usize * INPUT_STRIDE
        }
    } else {
        let mut seconds = size as f64 * FRAME_SECONDS;
        if let Some(&t) = tokens.iter().rev().find(|&&t| t >= ts) {
            if t != ts {
                seconds = (t - ts) as f64 * TIME_PRECISION;
            }
        }
        pieces.push(piece(time_offset, time_offset + seconds, tokens));
        seek + size
    };
    (pieces, next_seek, single_timestamp_ending)
}

/// The search options of a request, checked (faster-whisper's defaults: beam 5, best of 5,
/// patience 1, length penalty 1).
fn search_options(options: &TranscriptionOptions) -> Result<SearchOptions> {
    let search = SearchOptions {
        beam_size: options.beam_size.unwrap_or(5),
        best_of: options.best_of.unwrap_or(5),
        patience: options.patience.unwrap_or(1.0),
        length_penalty: options.length_penalty.unwrap_or(1.0),
    };
    if !(1..=64).contains(&search.beam_size) || !(1..=64).contains(&search.best_of) {
        return Err(Error::bad_request(
            "beam_size and best_of must be between 1 and 64",
        ));
    }
    if !(search.patience > 0.0 && search.patience <= 16.0) {
        return Err(Error::bad_request(
            "patience must be above 0 (and at most 16)",
        ));
    }
    if !search.length_penalty.is_finite() || search.length_penalty.abs() > 16.0 {
        return Err(Error::bad_request(
            "length_penalty must be a number between -16 and 16",
        ));
    }
    Ok(search)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The most probable language token after `<|startoftranscript|>`.
fn detect_language(model: &WhisperModel, audio: &DecoderState) -> Result<u32> {
    let mut state = audio.clone();
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

/// Decodes one window at each temperature in turn until one passes the thresholds
/// (`prompt`: its tokens and where `<|startoftranscript|>` is); `stop` runs before each
/// decoder step.
fn decode_with_fallback(
    model: &WhisperModel,
    audio: &DecoderState,
    (prompt, sot_index): (&[u32], usize),
    temperatures: &[f32],
    search: &SearchOptions,
    rng: &mut rand::rngs::StdRng,
    stop: &mut dyn FnMut() -> Result<()>,
) -> Result<Decoded> {
    let mut tries: Vec<Decoded> = Vec::new();
    let mut below_cr: Vec<usize> = Vec::new();
    for &temperature in temperatures {
        let mut d = generate(
            model,
            audio,
            (prompt, sot_index),
            temperature,
            search,
            rng,
            stop,
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_client_stops_the_decoding_within_a_step() {
        let model = crate::audio::passes::tests::tiny_en();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/audio/short_en.flac");
        let samples = crate::audio::input::decode_audio(&std::fs::read(path).unwrap()).unwrap();
        for beam_size in [1, 5] {
            let options = TranscriptionOptions {
                beam_size: Some(beam_size),
                ..Default::default()
            };
            // Undisturbed, the clip takes many decoder steps before its first segment.
            let (mut steps, mut segments) = (0, 0);
            transcribe_with(&model, &samples, &options, &mut |p| {
                match p {
                    Progress::Step => steps += 1,
                    Progress::Segment(_) => segments += 1,
                    Progress::Started => {}
                }
                Ok(())
            })
            .unwrap();
            assert!(
                segments >= 1 && steps > 10,
                "{steps} steps, {segments} segments"
            );
            // A client gone at the fourth step: no step and no segment after it.
            let (mut seen, mut segments) = (0, 0);
            let result = transcribe_with(&model, &samples, &options, &mut |p| {
                match p {
                    Progress::Step => seen += 1,
                    Progress::Segment(_) => segments += 1,
                    Progress::Started => {}
                }
                if seen >= 4 {
                    return Err(crate::Error::internal("the client went away"));
                }
                Ok(())
            });
            assert!(result.is_err());
            assert_eq!((seen, segments), (4, 0));
        }
    }

    #[test]
    fn compression_ratio_flags_repetition() {
        assert!(compression_ratio(&"la ".repeat(100)) > 2.4);
        assert!(compression_ratio("The quick brown fox jumps over the lazy dog.") < 2.4);
    }
}
