//! `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`: multipart forms as OpenAI's
//! and Xinference's clients send them, answered in the asked `response_format` (json, text, srt,
//! vtt, verbose_json) with its content type.

use super::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Multipart, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use xinference_core::protocol::audio::{AudioTask, ResponseFormat, TranscriptionOptions};
use xinference_core::runtime::{TranscriptionEvent, TranscriptionStream};
use xinference_core::{Error, ErrorKind};

/// Largest audio upload (OpenAI's limit); larger ones are a 413.
pub const MAX_AUDIO_BYTES: usize = 25 * 1024 * 1024;

/// The fields of a transcription form.
struct Form {
    file: Option<Vec<u8>>,
    model: Option<String>,
    format: ResponseFormat,
    options: TranscriptionOptions,
    stream: bool,
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let kind = if e.status().as_u16() == 413 {
        ErrorKind::PayloadTooLarge
    } else {
        ErrorKind::BadRequest
    };
    ApiError::from(Error::new(
        kind,
        format!("invalid multipart form: {}", e.body_text()),
    ))
}

async fn read_form(mut multipart: Multipart) -> ApiResult<Form> {
    let mut form = Form {
        file: None,
        model: None,
        format: ResponseFormat::Json,
        options: TranscriptionOptions::default(),
        stream: false,
    };
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            form.file = Some(field.bytes().await.map_err(multipart_error)?.to_vec());
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        let o = &mut form.options;
        match name.as_str() {
            "model" => form.model = Some(text),
            "language" if !text.is_empty() => o.language = Some(text),
            "prompt" if !text.is_empty() => o.prompt = Some(text),
            "response_format" => form.format = text.parse()?,
            "temperature" if !text.is_empty() => {
                o.temperature = Some(text.trim().parse().map_err(|_| {
                    Error::bad_request(format!("temperature must be a number, not {text}"))
                })?)
            }
            "timestamp_granularities[]" | "timestamp_granularities" => {
                o.timestamp_granularities.push(text)
            }
            "stream" => form.stream = text.trim() == "true",
            "kwargs" if !text.trim().is_empty() => {
                let kwargs: Value = serde_json::from_str(&text).map_err(|e| {
                    Error::bad_request(format!("kwargs must be a JSON object string: {e}"))
                })?;
                if let Some(c) = kwargs
                    .get("condition_on_previous_text")
                    .and_then(Value::as_bool)
                {
                    o.condition_on_previous_text = Some(c);
                }
                if let Some(p) = kwargs.get("initial_prompt").and_then(Value::as_str) {
                    o.prompt.get_or_insert_with(|| p.to_owned());
                }
                apply_search_kwargs(&kwargs, o)?;
            }
            _ => {}
        }
    }
    Ok(form)
}

/// OpenAI's transcription stream: a `transcript.text.delta` event per decoded segment (the
/// deltas add up to the final text), then `transcript.text.done` with the whole text; a failure
/// after the start is an `error` event; `data: [DONE]` ends it. With `verbose_json`, each
/// segment also comes whole as a `transcript.text.segment` event (OpenAI's `id`, `start`, `end`,
/// `text`, and the fields of a `verbose_json` segment), and the done event carries the whole
/// `verbose_json` transcription as well.
fn sse(
    events: TranscriptionStream,
    format: ResponseFormat,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let verbose = format == ResponseFormat::VerboseJson;
    let events = events.scan(true, move |first, event| {
        let data = match event {
            TranscriptionEvent::Segment(s) => {
                let delta = if *first {
                    s.text.trim_start()
                } else {
                    s.text.as_str()
                };
                *first = false;
                let delta = json!({"type": "transcript.text.delta", "delta": delta});
                if verbose {
                    let mut segment = serde_json::to_value(&s).unwrap_or_default();
                    segment["type"] = json!("transcript.text.segment");
                    vec![delta, segment]
                } else {
                    vec![delta]
                }
            }
            TranscriptionEvent::Done(t) if verbose => {
                let mut done = serde_json::to_value(&t).unwrap_or_default();
                done["type"] = json!("transcript.text.done");
                vec![done]
            }
            TranscriptionEvent::Done(t) => {
                vec![json!({"type": "transcript.text.done", "text": t.text})]
            }
            TranscriptionEvent::Failed(e) => vec![json!({
                "type": "error",
                "error": {"message": e.message(), "code": e.kind().http_status()}
            })],
        };
        let events: Vec<Result<Event, Infallible>> = data
            .into_iter()
            .map(|d| Ok(Event::default().data(d.to_string())))
            .collect();
        futures::future::ready(Some(futures::stream::iter(events)))
    });
    let done = futures::stream::once(async { Ok(Event::default().data("[DONE]")) });
    Sse::new(events.flatten().chain(done))
}

/// faster-whisper's search options in Xinference's `kwargs`: `beam_size`, `best_of`,
/// `patience`, `length_penalty`, `word_timestamps`.
fn apply_search_kwargs(kwargs: &Value, o: &mut TranscriptionOptions) -> ApiResult<()> {
    let count = |name: &str| -> ApiResult<Option<usize>> {
        match kwargs.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                ApiError::from(Error::bad_request(format!(
                    "kwargs.{name} must be a positive integer, not {v}"
                )))
            }),
        }
    };
    let number = |name: &str| -> ApiResult<Option<f32>> {
        match kwargs.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(|n| Some(n as f32)).ok_or_else(|| {
                ApiError::from(Error::bad_request(format!(
                    "kwargs.{name} must be a number, not {v}"
                )))
            }),
        }
    };
    o.beam_size = count("beam_size")?.or(o.beam_size);
    o.best_of = count("best_of")?.or(o.best_of);
    o.patience = number("patience")?.or(o.patience);
    o.length_penalty = number("length_penalty")?.or(o.length_penalty);
    if let Some(w) = kwargs.get("word_timestamps").and_then(Value::as_bool) {
        o.word_timestamps = Some(w);
    }
    Ok(())
}

async fn run(rt: AppState, multipart: Multipart, task: AudioTask) -> ApiResult<Response> {
    let mut form = read_form(multipart).await?;
    let model = form
        .model
        .take()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::bad_request("the form has no `model` field"))?;
    let file = form
        .file
        .take()
        .ok_or_else(|| Error::bad_request("the form has no `file` field (the audio file)"))?;
    form.options.task = task;
    if form.stream {
        if matches!(form.format, ResponseFormat::Srt | ResponseFormat::Vtt) {
            return Err(Error::bad_request(
                "stream=true answers in json, text or verbose_json; srt and vtt subtitles come \
                 whole (send stream=false)",
            )
            .into());
        }
        let events = rt.transcriptions_stream(&model, file, form.options).await?;
        return Ok(sse(events, form.format).into_response());
    }
    let result = rt.transcriptions(&model, file, form.options).await?;
    let (body, content_type) = result.render(form.format);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Transcribes the uploaded audio.
pub async fn transcriptions(
    State(rt): State<AppState>,
    multipart: Multipart,
) -> ApiResult<Response> {
    run(rt, multipart, AudioTask::Transcribe).await
}

/// Translates the uploaded audio into English.
pub async fn translations(State(rt): State<AppState>, multipart: Multipart) -> ApiResult<Response> {
    run(rt, multipart, AudioTask::Translate).await
}
