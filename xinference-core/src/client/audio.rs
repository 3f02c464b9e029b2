//! The speech-to-text handle: transcriptions and translations, in process or over HTTP
//! (multipart, as OpenAI's and Xinference's clients send them).

use super::Transport;
use crate::protocol::audio::{AudioTask, Transcription, TranscriptionOptions};
use crate::runtime::{TranscriptionEvent, TranscriptionStream};
use crate::{Error, Result};
use serde_json::Value;

/// A handle to a launched speech-to-text model.
#[derive(Clone)]
pub struct AudioModel {
    pub(crate) transport: Transport,
    pub(crate) uid: String,
}

impl AudioModel {
    /// The model's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Transcribes an audio file (wav, mp3, flac, ogg, m4a bytes) with default options.
    pub async fn transcriptions(&self, audio: Vec<u8>) -> Result<Transcription> {
        self.transcriptions_with(audio, TranscriptionOptions::default())
            .await
    }

    /// Transcribes with options (`language`, `prompt`, `temperature`, ...).
    pub async fn transcriptions_with(
        &self,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<Transcription> {
        self.run("/v1/audio/transcriptions", audio, options, false)
            .await
    }

    /// Translates the speech of an audio file into English.
    pub async fn translations(&self, audio: Vec<u8>) -> Result<Transcription> {
        self.translations_with(audio, TranscriptionOptions::default())
            .await
    }

    /// Translates into English with options.
    pub async fn translations_with(
        &self,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<Transcription> {
        self.run("/v1/audio/translations", audio, options, true)
            .await
    }

    /// Transcribes (or, with `options.task`, translates) as a stream of segments, each as
    /// soon as it is decoded, then the whole transcription. Returns once the request is
    /// checked (request errors are ordinary errors); dropping the stream stops the work.
    pub async fn transcriptions_stream(
        &self,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<TranscriptionStream> {
        use futures::StreamExt;
        match &self.transport {
            Transport::Local(r) => r.transcriptions_stream(&self.uid, audio, options).await,
            Transport::Remote(c) => {
                let path = match options.task {
                    AudioTask::Transcribe => "/v1/audio/transcriptions",
                    AudioTask::Translate => "/v1/audio/translations",
                };
                let form = self.form(audio, options).text("stream", "true");
                let events = c.post_multipart_stream::<Value>(path, form).await?;
                Ok(events
                    .filter_map(|event| futures::future::ready(stream_event(event)))
                    .boxed())
            }
        }
    }

    async fn run(
        &self,
        path: &str,
        audio: Vec<u8>,
        options: TranscriptionOptions,
        translate: bool,
    ) -> Result<Transcription> {
        match &self.transport {
            Transport::Local(r) if translate => r.translations(&self.uid, audio, options).await,
            Transport::Local(r) => r.transcriptions(&self.uid, audio, options).await,
            Transport::Remote(c) => c.post_multipart_as(path, self.form(audio, options)).await,
        }
    }

    /// The multipart form of a request, as OpenAI's fields and Xinference's `kwargs`, asking
    /// for `verbose_json`.
    fn form(&self, audio: Vec<u8>, options: TranscriptionOptions) -> reqwest::multipart::Form {
        let mut form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(audio).file_name("audio"),
            )
            .text("model", self.uid.clone())
            .text("response_format", "verbose_json");
        if let Some(language) = options.language {
            form = form.text("language", language);
        }
        if let Some(prompt) = options.prompt {
            form = form.text("prompt", prompt);
        }
        if let Some(t) = options.temperature {
            form = form.text("temperature", t.to_string());
        }
        for g in options.timestamp_granularities {
            form = form.text("timestamp_granularities[]", g);
        }
        let mut kwargs = serde_json::Map::new();
        if let Some(c) = options.condition_on_previous_text {
            kwargs.insert("condition_on_previous_text".into(), c.into());
        }
        if let Some(n) = options.beam_size {
            kwargs.insert("beam_size".into(), n.into());
        }
        if let Some(n) = options.best_of {
            kwargs.insert("best_of".into(), n.into());
        }
        if let Some(p) = options.patience {
            kwargs.insert("patience".into(), p.into());
        }
        if let Some(p) = options.length_penalty {
            kwargs.insert("length_penalty".into(), p.into());
        }
        if let Some(w) = options.word_timestamps {
            kwargs.insert("word_timestamps".into(), w.into());
        }
        if !kwargs.is_empty() {
            form = form.text("kwargs", Value::Object(kwargs).to_string());
        }
        form
    }
}

/// One server-sent event of a `verbose_json` transcription stream as a [`TranscriptionEvent`]
/// (`None` for the text deltas, which the segments repeat).
fn stream_event(event: Result<Value>) -> Option<TranscriptionEvent> {
    let value = match event {
        Ok(value) => value,
        Err(e) => return Some(TranscriptionEvent::Failed(e)),
    };
    let parsed = match value.get("type").and_then(Value::as_str) {
        Some("transcript.text.segment") => {
            serde_json::from_value(value).map(TranscriptionEvent::Segment)
        }
        Some("transcript.text.done") => serde_json::from_value(value).map(TranscriptionEvent::Done),
        _ => return None,
    };
    Some(parsed.unwrap_or_else(|e| {
        TranscriptionEvent::Failed(Error::internal(format!(
            "bad transcription event from the server: {e}"
        )))
    }))
}
