//! The speech-to-text capability of the runtime: checks the request and runs it on a replica's
//! worker thread, where the audio file is decoded, resampled and transcribed.

use super::{Loaded, Runtime, Worker};
use crate::audio::SpeechToText;
use crate::protocol::audio::{AudioTask, Transcription, TranscriptionOptions};
use crate::registry::ModelType;
use crate::{Error, Result};
use std::sync::Arc;

/// The worker of one replica of a speech-to-text model.
pub(crate) type AudioWorker = Worker<Box<dyn SpeechToText>>;

impl Runtime {
    /// Transcribes the audio file `audio` with the model `model` (`options.task` picks
    /// transcription or translation into English).
    pub async fn transcriptions(
        &self,
        model: &str,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<Transcription> {
        let instance = self.instance(model)?;
        if instance.family.model_type != ModelType::Audio {
            return Err(Error::bad_request(format!(
                "Model {model} is not an audio model (its type is {})",
                instance.family.model_type
            )));
        }
        if audio.is_empty() {
            return Err(Error::bad_request("the audio file is empty"));
        }
        let loaded: Arc<Loaded> = instance.loaded()?;
        let Loaded::Audio(workers) = &*loaded else {
            return Err(Error::internal(format!(
                "model {model} has no audio workers"
            )));
        };
        let worker = &workers[instance.pick_replica(workers.len())];
        worker
            .call(move |m: &mut Box<dyn SpeechToText>| m.transcribe(&audio, &options))
            .await
    }

    /// Translates the speech in `audio` into English text.
    pub async fn translations(
        &self,
        model: &str,
        audio: Vec<u8>,
        mut options: TranscriptionOptions,
    ) -> Result<Transcription> {
        options.task = AudioTask::Translate;
        self.transcriptions(model, audio, options).await
    }
}
