//! Wire types of speech to text (`/v1/audio/transcriptions`, `/v1/audio/translations`): the
//! options a request carries, the result in OpenAI's `verbose_json` shape, and its other
//! renderings (`json`, `text`, `srt`, `vtt`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Transcribe in the spoken language, or translate into English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AudioTask {
    /// Text in the spoken language.
    #[default]
    Transcribe,
    /// English text.
    Translate,
}

impl AudioTask {
    /// `transcribe` or `translate`.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioTask::Transcribe => "transcribe",
            AudioTask::Translate => "translate",
        }
    }
}

/// How the answer is rendered (`response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// `{"text": ...}`.
    #[default]
    Json,
    /// The plain text.
    Text,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// [`Transcription`] in full.
    VerboseJson,
}

impl std::str::FromStr for ResponseFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "json" => ResponseFormat::Json,
            "text" => ResponseFormat::Text,
            "srt" => ResponseFormat::Srt,
            "vtt" => ResponseFormat::Vtt,
            "verbose_json" => ResponseFormat::VerboseJson,
            other => {
                return Err(Error::bad_request(format!(
                    "response_format {other} is not one of json, text, srt, vtt, verbose_json"
                )))
            }
        })
    }
}

/// Decoding options of one request (everything but the audio).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TranscriptionOptions {
    /// Transcribe or translate.
    #[serde(default)]
    pub task: AudioTask,
    /// ISO-639-1 code of the spoken language; detected when absent (multilingual models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Text that precedes the audio (the initial context of the decoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Sampling temperature of the first try; 0 (default) is greedy with fallback to
    /// 0.2, 0.4, ... 1.0 when the compression-ratio or log-prob thresholds fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Condition each 30 s window on the text of the previous ones (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_on_previous_text: Option<bool>,
    /// `timestamp_granularities[]`: `segment` and/or `word`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamp_granularities: Vec<String>,
    /// Beams of the search at temperature 0 (default 5, as faster-whisper; 1 is greedy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam_size: Option<usize>,
    /// Candidates sampled at a temperature above 0, the best kept (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<usize>,
    /// Beam search patience: it stops after `beam_size * patience` finished hypotheses
    /// (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<f32>,
    /// Exponent of the length normalisation of beam scores (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_penalty: Option<f32>,
    /// Word timestamps (also asked by `timestamp_granularities[]=word`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_timestamps: Option<bool>,
}

impl TranscriptionOptions {
    /// Whether word timestamps are asked for.
    pub fn wants_words(&self) -> bool {
        self.word_timestamps.unwrap_or(false)
            || self.timestamp_granularities.iter().any(|g| g == "word")
    }
}

/// One decoded segment, as OpenAI's `verbose_json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptionSegment {
    /// Index in the transcription.
    pub id: usize,
    /// Feature frame (10 ms) at which the window that produced it starts.
    pub seek: usize,
    /// Start, seconds from the beginning of the audio.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The segment's text.
    pub text: String,
    /// Its token ids (text and timestamp tokens).
    pub tokens: Vec<u32>,
    /// Temperature the window was decoded at.
    pub temperature: f32,
    /// Mean log-probability of the window's tokens.
    pub avg_logprob: f64,
    /// zlib compression ratio of the window's text.
    pub compression_ratio: f64,
    /// Probability of the no-speech token at the start of the window.
    pub no_speech_prob: f64,
}

/// A whole transcription: OpenAI's `verbose_json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcription {
    /// `transcribe` or `translate`.
    pub task: String,
    /// Language of the audio (ISO-639-1 code).
    pub language: String,
    /// Length of the audio, seconds.
    pub duration: f64,
    /// The whole text.
    pub text: String,
    /// The segments with their timestamps.
    pub segments: Vec<TranscriptionSegment>,
    /// The words with their timestamps, when asked (`timestamp_granularities[]=word`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<TranscriptionWord>>,
}

/// One word of `verbose_json`'s `words` (OpenAI's shape, with faster-whisper's probability).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptionWord {
    /// The word, punctuation attached.
    pub word: String,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Mean probability of its tokens.
    pub probability: f64,
}

impl Transcription {
    /// The body and content type of `format`.
    pub fn render(&self, format: ResponseFormat) -> (String, &'static str) {
        match format {
            ResponseFormat::Json => (
                serde_json::json!({ "text": self.text }).to_string(),
                "application/json",
            ),
            ResponseFormat::VerboseJson => (
                serde_json::to_string(self).unwrap_or_default(),
                "application/json",
            ),
            ResponseFormat::Text => (format!("{}\n", self.text), "text/plain; charset=utf-8"),
            ResponseFormat::Srt => (self.srt(), "text/plain; charset=utf-8"),
            ResponseFormat::Vtt => (self.vtt(), "text/vtt; charset=utf-8"),
        }
    }

    /// SubRip subtitles, one cue per segment.
    pub fn srt(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.segments.iter().enumerate() {
            out.push_str(&format!(
                "{}\n{} --> {}\n{}\n\n",
                i + 1,
                timestamp(s.start, ','),
                timestamp(s.end, ','),
                s.text.trim()
            ));
        }
        out
    }

    /// WebVTT subtitles, one cue per segment.
    pub fn vtt(&self) -> String {
        let mut out = String::from("WEBVTT\n\n");
        for s in &self.segments {
            out.push_str(&format!(
                "{} --> {}\n{}\n\n",
                timestamp(s.start, '.'),
                timestamp(s.end, '.'),
                s.text.trim()
            ));
        }
        out
    }
}

/// `HH:MM:SS<sep>mmm`.
fn timestamp(seconds: f64, sep: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtitles() {
        let t = Transcription {
            task: "transcribe".into(),
            language: "en".into(),
            duration: 3723.5,
            text: " Hi.".into(),
            segments: vec![TranscriptionSegment {
                id: 0,
                seek: 0,
                start: 3723.0,
                end: 3723.456,
                text: " Hi.".into(),
                tokens: vec![],
                temperature: 0.0,
                avg_logprob: 0.0,
                compression_ratio: 1.0,
                no_speech_prob: 0.0,
            }],
            words: None,
        };
        assert_eq!(t.srt(), "1\n01:02:03,000 --> 01:02:03,456\nHi.\n\n");
        assert_eq!(t.vtt(), "WEBVTT\n\n01:02:03.000 --> 01:02:03.456\nHi.\n\n");
        assert_eq!(t.render(ResponseFormat::Json).0, r#"{"text":" Hi."}"#);
    }
}
