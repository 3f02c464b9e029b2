//! The speech-to-text handle: transcriptions and translations, in process or over HTTP
//! (multipart, as OpenAI's and Xinference's clients send them).

use super::Transport;
use crate::protocol::audio::{Transcription, TranscriptionOptions};
use crate::Result;

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
            Transport::Remote(c) => {
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
                    form = form.text("kwargs", serde_json::Value::Object(kwargs).to_string());
                }
                c.post_multipart_as(path, form).await
            }
        }
    }
}
