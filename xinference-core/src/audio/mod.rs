//! Speech to text. [`SpeechToText`] is the capability: audio file bytes in, a
//! [`Transcription`] out. Whisper is its one architecture: `ct2.rs` reads CTranslate2's
//! `model.bin`, `whisper.rs` loads either format, `model.rs` is the forward pass, `mel.rs` computes the features,
//! `input.rs` decodes and resamples the audio (`formats.rs`: the container probe), `decode.rs` runs OpenAI's window loop,
//! `search.rs` the token search of one window (greedy, best-of sampling, beam search) and
//! `passes.rs` lets concurrent requests share encoder and decoder passes.

pub mod align;
mod attention;
pub mod ct2;
pub mod decode;
mod encoder_attention;
mod formats;
pub mod input;
pub mod mel;
pub mod model;
pub mod passes;
pub mod search;
pub mod whisper;

use crate::protocol::audio::{Transcription, TranscriptionOptions, TranscriptionSegment};
use crate::Result;
use std::path::Path;
pub use whisper::WhisperModel;

/// What a transcription reports while it runs.
pub enum Progress<'a> {
    /// The audio decoded and the options checked: decoding starts (no request error after).
    Started,
    /// One more segment is decoded.
    Segment(&'a TranscriptionSegment),
    /// One more decoder step is about to run (a chance to stop: an error ends the work).
    Step,
}

/// A speech-to-text model: decodes an audio file and transcribes or translates it. One loaded
/// model serves several requests at once (from several threads), which share its passes.
pub trait SpeechToText: Send + Sync {
    /// Transcribes (or translates, per `options.task`) the audio file in `audio`, reporting
    /// to `on_progress` as it goes; an error from `on_progress` (a gone client) stops it.
    fn transcribe_each(
        &self,
        audio: &[u8],
        options: &TranscriptionOptions,
        on_progress: &mut dyn FnMut(Progress) -> Result<()>,
    ) -> Result<Transcription>;

    /// Counters of the passes this model's concurrent requests shared.
    fn pass_stats(&self) -> passes::PassStats {
        passes::PassStats::default()
    }

    /// Transcribes (or translates, per `options.task`) the audio file in `audio`.
    fn transcribe(&self, audio: &[u8], options: &TranscriptionOptions) -> Result<Transcription> {
        self.transcribe_each(audio, options, &mut |_| Ok(()))
    }
}

impl SpeechToText for WhisperModel {
    fn transcribe_each(
        &self,
        audio: &[u8],
        options: &TranscriptionOptions,
        on_progress: &mut dyn FnMut(Progress) -> Result<()>,
    ) -> Result<Transcription> {
        let samples = input::decode_audio(audio)?;
        let _transcribing = self.passes.enter();
        decode::transcribe_with(self, &samples, options, on_progress)
    }

    fn pass_stats(&self) -> passes::PassStats {
        self.passes.stats()
    }
}

/// Loads the speech-to-text model in `path` (a folder), recognised by its content.
pub fn load_audio_model(path: &Path) -> Result<Box<dyn SpeechToText>> {
    if !whisper::is_whisper_folder(path) {
        return Err(crate::Error::bad_request(format!(
            "{} holds no speech model this build can run (a CTranslate2 Whisper folder with \
             model.bin, or Hugging Face Whisper with model.safetensors)",
            path.display()
        )));
    }
    Ok(Box::new(WhisperModel::load(path)?))
}
