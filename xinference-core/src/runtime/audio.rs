//! The speech-to-text capability of the runtime: checks the request and runs it on one of a
//! replica's slot threads, where the audio file is decoded, resampled and transcribed. The
//! slots share the one loaded model, and the requests running on them share its encoder and
//! decoder passes (`audio/passes.rs`); more requests wait in the bounded queue.

use super::{Loaded, Runtime, Worker};
use crate::audio::{Progress, SpeechToText};
use crate::protocol::audio::{
    AudioTask, Transcription, TranscriptionOptions, TranscriptionSegment,
};
use crate::registry::ModelType;
use crate::{Error, Result};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One event of a streamed transcription.
#[derive(Debug)]
pub enum TranscriptionEvent {
    /// A segment was decoded.
    Segment(TranscriptionSegment),
    /// The whole transcription (the last event).
    Done(Transcription),
    /// Decoding failed after it started (the last event).
    Failed(Error),
}

/// The events of a streamed transcription, after its start.
pub type TranscriptionStream = Pin<Box<dyn Stream<Item = TranscriptionEvent> + Send>>;

/// What the worker sends: the start, then [`TranscriptionEvent`]s.
enum Sent {
    Started,
    Event(TranscriptionEvent),
}

/// The worker of one replica of a speech-to-text model: [`AUDIO_SLOTS`] threads over one model.
pub(crate) type AudioWorker = Worker<Arc<dyn SpeechToText>>;

/// Requests one replica transcribes at once (their passes are shared).
pub(crate) const AUDIO_SLOTS: usize = 4;

impl Runtime {
    /// Transcribes the audio file `audio` with the model `model` (`options.task` picks
    /// transcription or translation into English).
    pub async fn transcriptions(
        &self,
        model: &str,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<Transcription> {
        let record = self.begin_request(model);
        let result = self.transcriptions_unrecorded(model, audio, options).await;
        super::metrics::finish(record, result)
    }

    async fn transcriptions_unrecorded(
        &self,
        model: &str,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<Transcription> {
        let (loaded, replica) = self.audio_replica(model, &audio)?;
        let Loaded::Audio(workers) = &*loaded else {
            unreachable!("checked by audio_replica")
        };
        // A stream of one result, so that the decoding sees a caller that went away (a
        // disconnected HTTP client drops this future) and stops at its next decoder step.
        let mut rx = workers[replica].stream(
            1,
            move |m: &mut Arc<dyn SpeechToText>, tx: &mpsc::Sender<Result<Transcription>>| {
                let result = m.transcribe_each(&audio, &options, &mut |_| {
                    if tx.is_closed() {
                        Err(Error::internal("the client went away"))
                    } else {
                        Ok(())
                    }
                });
                let _ = tx.blocking_send(result);
            },
            Err,
        )?;
        rx.recv().await.unwrap_or_else(|| {
            Err(Error::internal(format!(
                "model {model} stopped while serving the request"
            )))
        })
    }

    /// Transcribes (or translates) `audio` as a stream of segments. Returns once the audio is
    /// decoded and the options are checked, so that request errors are ordinary errors; a
    /// dropped stream stops the decoding at its next decoder step.
    pub async fn transcriptions_stream(
        &self,
        model: &str,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<TranscriptionStream> {
        let record = self.begin_request(model);
        let result = self
            .transcriptions_stream_unrecorded(model, audio, options)
            .await;
        super::metrics::finish(record, result)
    }

    async fn transcriptions_stream_unrecorded(
        &self,
        model: &str,
        audio: Vec<u8>,
        options: TranscriptionOptions,
    ) -> Result<TranscriptionStream> {
        let (loaded, replica) = self.audio_replica(model, &audio)?;
        let Loaded::Audio(workers) = &*loaded else {
            unreachable!("checked by audio_replica")
        };
        let mut rx = workers[replica].stream(
            8,
            move |m: &mut Arc<dyn SpeechToText>, tx: &mpsc::Sender<Sent>| {
                let mut on_progress = |p: Progress| -> Result<()> {
                    let sent = match p {
                        Progress::Step if tx.is_closed() => {
                            return Err(Error::internal("the client went away"))
                        }
                        Progress::Step => return Ok(()),
                        Progress::Started => Sent::Started,
                        Progress::Segment(s) => Sent::Event(TranscriptionEvent::Segment(s.clone())),
                    };
                    tx.blocking_send(sent)
                        .map_err(|_| Error::internal("the client went away"))
                };
                let last = match m.transcribe_each(&audio, &options, &mut on_progress) {
                    Ok(t) => TranscriptionEvent::Done(t),
                    Err(e) => TranscriptionEvent::Failed(e),
                };
                let _ = tx.blocking_send(Sent::Event(last));
            },
            |error| Sent::Event(TranscriptionEvent::Failed(error)),
        )?;
        match rx.recv().await {
            Some(Sent::Started) => {}
            Some(Sent::Event(TranscriptionEvent::Failed(e))) => return Err(e),
            _ => {
                return Err(Error::internal(format!(
                    "model {model} stopped while serving the request"
                )))
            }
        }
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await? {
                Sent::Event(e) => Some((e, rx)),
                Sent::Started => None,
            }
        })))
    }

    /// The loaded audio model `model` and the replica to run on, after the request's checks.
    fn audio_replica(&self, model: &str, audio: &[u8]) -> Result<(Arc<Loaded>, usize)> {
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
        let replica = instance.pick_replica(workers.len());
        Ok((loaded.clone(), replica))
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
