//! `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`: multipart forms as OpenAI's
//! and Xinference's clients send them, answered in the asked `response_format` (json, text, srt,
//! vtt, verbose_json) with its content type.

use super::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Multipart, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use xinference_core::protocol::audio::{AudioTask, ResponseFormat, TranscriptionOptions};
use xinference_core::{Error, ErrorKind};

/// Largest audio upload (OpenAI's limit); larger ones are a 413.
pub const MAX_AUDIO_BYTES: usize = 25 * 1024 * 1024;

/// The fields of a transcription form.
struct Form {
    file: Option<Vec<u8>>,
    model: Option<String>,
    format: ResponseFormat,
    options: TranscriptionOptions,
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let kind = if e.status().as_u16() == 413 {
        ErrorKind::PayloadTooLarge
    } else {
        ErrorKind::BadRequest
    };
    ApiError(Error::new(
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
            "stream" if text == "true" => {
                return Err(ApiError(Error::new(
                    ErrorKind::NotImplemented,
                    "stream=true is not implemented for transcriptions yet",
                )))
            }
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
            }
            _ => {}
        }
    }
    Ok(form)
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
