//! A loaded Whisper model: weights from a CTranslate2 folder or Hugging Face safetensors, the
//! tokenizer and its special tokens, and the suppression lists and language tokens of its
//! config. The forward pass is ours (`model.rs`) over the weights under Hugging Face names.

use super::ct2::Ct2Model;
use super::model::{DecoderState, Dims, WhisperNet};
use super::passes::{Answer, Call, PassBatcher};
use crate::{Error, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::Config;
use serde_json::Value;
use std::path::Path;
use tokenizers::Tokenizer;

/// Ids of Whisper's special tokens in this model's vocabulary.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    /// `<|endoftext|>`.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|translate|>`.
    pub translate: u32,
    /// `<|transcribe|>`.
    pub transcribe: u32,
    /// `<|startoflm|>`.
    pub sot_lm: u32,
    /// `<|startofprev|>`.
    pub sot_prev: u32,
    /// `<|nospeech|>` or `<|nocaptions|>`.
    pub no_speech: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|0.00|>`: the first timestamp token (`no_timestamps + 1`).
    pub timestamp_begin: u32,
}

/// A Whisper model ready to decode.
pub struct WhisperModel {
    pub(crate) net: WhisperNet,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) special: SpecialTokens,
    /// Mel bins of the input features (80, or 128 for large-v3).
    pub n_mels: usize,
    /// Whether the model knows languages other than English (and translation).
    pub multilingual: bool,
    /// Tokens never sampled.
    pub(crate) suppress: Vec<u32>,
    /// Tokens not sampled first.
    pub(crate) suppress_begin: Vec<u32>,
    /// Language tokens, `<|en|>` first.
    pub(crate) lang_ids: Vec<u32>,
    /// Largest decoder context (448).
    pub(crate) max_length: usize,
    /// The `(layer, head)` cross-attention heads that follow the speech in time (word
    /// timestamps).
    pub(crate) alignment_heads: Vec<(usize, usize)>,
    /// Where the model calls of concurrent requests meet to share passes.
    pub(crate) passes: PassBatcher,
}

/// `[[layer, head], ...]` of a config's `alignment_heads`.
fn heads_of(v: Option<&Value>) -> Vec<(usize, usize)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let p = p.as_array()?;
                    Some((p.first()?.as_u64()? as usize, p.get(1)?.as_u64()? as usize))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `dir` holds a Whisper model this build reads (a CTranslate2 `model.bin` or
/// safetensors weights), whatever format a registry spec names.
pub fn is_whisper_folder(dir: &Path) -> bool {
    dir.join("model.bin").is_file() || dir.join("model.safetensors").is_file()
}

/// The `u32` ids of a JSON array (empty when absent).
fn ids_of(v: Option<&Value>) -> Vec<u32> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|x| x as u32))
                .collect()
        })
        .unwrap_or_default()
}

/// The weights and token lists of a Whisper folder, as its format stores them (lists may be
/// empty: [`WhisperModel::load`] fills in the defaults).
struct Weights {
    /// Model dimensions.
    config: Config,
    /// The weights under Hugging Face names.
    vb: VarBuilder<'static>,
    /// Tokens never sampled.
    suppress: Vec<u32>,
    /// Tokens not sampled first.
    suppress_begin: Vec<u32>,
    /// Language tokens.
    lang_ids: Vec<u32>,
    /// `(layer, head)` alignment heads.
    heads: Vec<(usize, usize)>,
}

impl Weights {
    /// A CTranslate2 folder: `model.bin` (dimensions read from the tensor shapes) and the
    /// token lists of its `config.json`.
    fn ct2(dir: &Path) -> Result<Self> {
        let ct2 = Ct2Model::read(&dir.join("model.bin"))?;
        let tensors = ct2.whisper_tensors()?;
        let dim = |name: &str, i: usize| -> Result<usize> {
            ct2.variables
                .get(name)
                .and_then(|t| t.dims().get(i).copied())
                .ok_or_else(|| Error::bad_request(format!("model.bin has no {name}")))
        };
        let config = Config {
            num_mel_bins: dim("encoder/conv1/weight", 1)?,
            max_source_positions: dim("encoder/position_encodings/encodings", 0)?,
            d_model: dim("encoder/conv1/weight", 0)?,
            encoder_attention_heads: ct2.scalar("encoder/num_heads").unwrap_or(6),
            encoder_layers: ct2.layers("encoder"),
            vocab_size: dim("decoder/embeddings/weight", 0)?,
            max_target_positions: dim("decoder/position_encodings/encodings", 0)?,
            decoder_attention_heads: ct2.scalar("decoder/num_heads").unwrap_or(6),
            decoder_layers: ct2.layers("decoder"),
            suppress_tokens: vec![],
        };
        let cfg = crate::files::read_json(&dir.join("config.json")).unwrap_or(Value::Null);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Ok(Weights {
            config,
            vb,
            suppress: ids_of(cfg.get("suppress_ids")),
            suppress_begin: ids_of(cfg.get("suppress_ids_begin")),
            lang_ids: ids_of(cfg.get("lang_ids")),
            heads: heads_of(cfg.get("alignment_heads")),
        })
    }

    /// A Hugging Face folder: `model.safetensors` (memory-mapped), `config.json` and the token
    /// lists of `generation_config.json`.
    fn safetensors(dir: &Path) -> Result<Self> {
        let read_json = |name: &str| crate::files::read_json(&dir.join(name));
        let config: Config = serde_json::from_value(read_json("config.json")?)
            .map_err(|e| Error::bad_request(format!("Whisper config.json: {e}")))?;
        let generation = read_json("generation_config.json").unwrap_or(Value::Null);
        // SAFETY: the weights file is not modified while it is mapped.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[dir.join("model.safetensors")],
                DType::F32,
                &Device::Cpu,
            )?
        };
        let mut lang_ids: Vec<u32> = generation
            .get("lang_to_id")
            .and_then(Value::as_object)
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_u64().map(|v| v as u32))
                    .collect()
            })
            .unwrap_or_default();
        lang_ids.sort_unstable();
        let suppress = if config.suppress_tokens.is_empty() {
            ids_of(generation.get("suppress_tokens"))
        } else {
            config.suppress_tokens.clone()
        };
        Ok(Weights {
            config,
            vb,
            suppress,
            suppress_begin: ids_of(generation.get("begin_suppress_tokens")),
            lang_ids,
            heads: heads_of(generation.get("alignment_heads")),
        })
    }
}

impl WhisperModel {
    /// Loads the model in `dir`, recognised by its content: CTranslate2 (`model.bin`,
    /// `config.json`, `tokenizer.json`) or Hugging Face (`model.safetensors`, `config.json`,
    /// `generation_config.json`, `tokenizer.json`).
    pub fn load(dir: &Path) -> Result<Self> {
        let tokenizer = crate::tokenizer_file::load(dir.join("tokenizer.json")).map_err(|e| {
            Error::bad_request(format!(
                "cannot read the Whisper tokenizer {}: {e}",
                dir.join("tokenizer.json").display()
            ))
        })?;
        let special = special_tokens(&tokenizer)?;
        let Weights {
            config,
            vb,
            suppress,
            suppress_begin,
            lang_ids,
            heads,
        } = if dir.join("model.bin").is_file() {
            Weights::ct2(dir)?
        } else if dir.join("model.safetensors").is_file() {
            Weights::safetensors(dir)?
        } else {
            return Err(Error::bad_request(format!(
                "{} holds no Whisper weights (model.bin of CTranslate2 or model.safetensors)",
                dir.display()
            )));
        };
        let n_mels = config.num_mel_bins;
        let multilingual = config.vocab_size >= 51865;
        let max_length = config.max_target_positions;
        let net = WhisperNet::load(
            &vb,
            Dims {
                n_mels: config.num_mel_bins,
                d_model: config.d_model,
                encoder_layers: config.encoder_layers,
                encoder_heads: config.encoder_attention_heads,
                decoder_layers: config.decoder_layers,
                decoder_heads: config.decoder_attention_heads,
                vocab: config.vocab_size,
                audio_ctx: config.max_source_positions,
                text_ctx: config.max_target_positions,
            },
        )?;
        let mut suppress = suppress;
        suppress.extend([
            special.transcribe,
            special.translate,
            special.sot,
            special.sot_prev,
            special.sot_lm,
        ]);
        suppress.sort_unstable();
        suppress.dedup();
        let suppress_begin = if suppress_begin.is_empty() {
            vec![220, special.eot]
        } else {
            suppress_begin
        };
        let lang_ids = if lang_ids.is_empty() {
            (special.sot + 1..special.translate).collect()
        } else {
            lang_ids
        };
        // openai-whisper's default: every head of the second half of the decoder.
        let (layers, n_heads) = (config.decoder_layers, config.decoder_attention_heads);
        let mut alignment_heads: Vec<(usize, usize)> = heads
            .into_iter()
            .filter(|&(l, h)| l < layers && h < n_heads)
            .collect();
        if alignment_heads.is_empty() {
            alignment_heads = (layers / 2..layers)
                .flat_map(|l| (0..n_heads).map(move |h| (l, h)))
                .collect();
        }
        Ok(WhisperModel {
            alignment_heads,
            net,
            tokenizer,
            special,
            n_mels,
            multilingual,
            suppress,
            suppress_begin,
            lang_ids,
            max_length,
            passes: PassBatcher::default(),
        })
    }

    /// The token of language `code` (`en`, `fr`, ...), or a 400 naming the choices.
    pub(crate) fn language_token(&self, code: &str) -> Result<u32> {
        let code = code.trim().to_ascii_lowercase();
        let code = language_code(&code).unwrap_or(&code);
        self.tokenizer
            .token_to_id(&format!("<|{code}|>"))
            .filter(|id| self.lang_ids.contains(id))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "language {code} is not one this model knows; use an ISO-639-1 code such as en, fr, de"
                ))
            })
    }

    /// The code of a language token (`<|fr|>` -> `fr`).
    pub(crate) fn language_code_of(&self, token: u32) -> String {
        self.tokenizer
            .id_to_token(token)
            .map(|t| t.trim_start_matches("<|").trim_end_matches("|>").to_owned())
            .unwrap_or_else(|| "en".to_owned())
    }

    /// Text of text tokens (ids below `<|endoftext|>`).
    pub(crate) fn decode_text(&self, tokens: &[u32]) -> String {
        let text: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| t < self.special.eot)
            .collect();
        self.tokenizer.decode(&text, false).unwrap_or_default()
    }

    /// Token ids of `text` (no special tokens).
    pub(crate) fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::bad_request(format!("cannot tokenize the prompt: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// Encodes one window of features `[n_mels][3000]` (in a pass shared with concurrent
    /// requests) and returns a fresh decoder state over it: clone it for each decode of the
    /// window.
    pub(crate) fn encode(&self, mel: Vec<f32>) -> Result<DecoderState> {
        match self.passes.call(&self.net, Call::Encode(mel))? {
            Answer::Encoded(state) => Ok(state),
            Answer::Stepped(..) => Err(Error::internal("an encode got a decoder answer")),
        }
    }

    /// Feeds `tokens` to a decoder state (every sequence of it, in a pass shared with
    /// concurrent requests) and returns the logits of the rows `at`, or of all rows.
    fn call_step(
        &self,
        tokens: &[u32],
        state: &mut DecoderState,
        at: Option<Vec<usize>>,
    ) -> Result<Vec<Vec<f32>>> {
        let call = Call::Step {
            tokens: tokens.to_vec(),
            state: std::mem::replace(state, DecoderState::placeholder()),
            at,
        };
        match self.passes.call(&self.net, call)? {
            Answer::Stepped(back, logits) => {
                *state = back;
                Ok(logits)
            }
            Answer::Encoded(_) => Err(Error::internal("a decoder step got an encoder answer")),
        }
    }

    /// Feeds `tokens` to a decoder state and returns the logits at the positions `at` of them.
    pub(crate) fn step(
        &self,
        tokens: &[u32],
        state: &mut DecoderState,
        at: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        self.call_step(tokens, state, Some(at.to_vec()))
    }

    /// Feeds one token to each sequence of a batched decoder state (`tokens[i]` to row `i`)
    /// and returns each row's logits.
    pub(crate) fn step_rows(
        &self,
        tokens: &[u32],
        state: &mut DecoderState,
    ) -> Result<Vec<Vec<f32>>> {
        self.call_step(tokens, state, None)
    }
}

/// Full language names Whisper users type, to codes.
fn language_code(name: &str) -> Option<&'static str> {
    Some(match name {
        "english" => "en",
        "french" => "fr",
        "german" => "de",
        "spanish" => "es",
        "italian" => "it",
        "portuguese" => "pt",
        "dutch" => "nl",
        "russian" => "ru",
        "chinese" => "zh",
        "japanese" => "ja",
        "korean" => "ko",
        _ => return None,
    })
}

fn special_tokens(tokenizer: &Tokenizer) -> Result<SpecialTokens> {
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| Error::bad_request(format!("the Whisper tokenizer has no {t} token")))
    };
    let no_timestamps = id("<|notimestamps|>")?;
    Ok(SpecialTokens {
        eot: id("<|endoftext|>")?,
        sot: id("<|startoftranscript|>")?,
        translate: id("<|translate|>")?,
        transcribe: id("<|transcribe|>")?,
        sot_lm: id("<|startoflm|>")?,
        sot_prev: id("<|startofprev|>")?,
        no_speech: id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?,
        no_timestamps,
        timestamp_begin: no_timestamps + 1,
    })
}
