//! The CLIP text encoder and tokenizer of a diffusers folder (`text_encoder/`, `tokenizer/`),
//! every size read from `config.json`. candle's CLIP keeps its config private and offers only
//! presets, so this is our own small transformer (pre-norm, causal, quick_gelu or gelu), which
//! reads both the `text_model.`-prefixed names of real checkpoints and transformers 5's bare ones.

use crate::{Error, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::Path;
use tokenizers::Tokenizer;

/// `text_encoder/config.json` (the keys we use).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the model.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Positions (77).
    pub max_position_embeddings: usize,
    /// `quick_gelu` (SD 1.5) or `gelu` (SD 2.x).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The end-of-text id the pooled output is read at (2: transformers' legacy rule, the
    /// position of the largest id).
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_act() -> String {
    "quick_gelu".into()
}

fn default_eps() -> f64 {
    1e-5
}

struct Layer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The CLIP text transformer (`CLIPTextModel`, or `CLIPTextModelWithProjection` when the
/// weights hold `text_projection`): token ids -> hidden states (and the pooled projection).
pub struct ClipTextModel {
    token: Embedding,
    position: Embedding,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    heads: usize,
    quick_gelu: bool,
    projection: Option<Linear>,
    eos_token_id: Option<u32>,
}

/// The hidden states of one pass.
pub struct ClipHidden {
    /// The last hidden state, after the final layer norm (`last_hidden_state`).
    pub last: Tensor,
    /// The input of the last layer (`hidden_states[-2]`, what SDXL conditions on).
    pub penultimate: Tensor,
}

impl ClipTextModel {
    /// Builds the model from `config` and weights under `vb`.
    pub fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let projection = if vb.contains_tensor("text_projection.weight") {
            let width = vb
                .get_unchecked("text_projection.weight")?
                .dim(0)
                .map_err(Error::from)?;
            Some(candle_nn::linear_no_bias(
                config.hidden_size,
                width,
                vb.pp("text_projection"),
            )?)
        } else {
            None
        };
        let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb
        };
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let emb = vb.pp("embeddings");
        let token = embedding(config.vocab_size, h, emb.pp("token_embedding"))?;
        let position = embedding(
            config.max_position_embeddings,
            h,
            emb.pp("position_embedding"),
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layers.{i}"));
                let a = l.pp("self_attn");
                Ok(Layer {
                    ln1: layer_norm(h, eps, l.pp("layer_norm1"))?,
                    q: linear(h, h, a.pp("q_proj"))?,
                    k: linear(h, h, a.pp("k_proj"))?,
                    v: linear(h, h, a.pp("v_proj"))?,
                    out: linear(h, h, a.pp("out_proj"))?,
                    ln2: layer_norm(h, eps, l.pp("layer_norm2"))?,
                    fc1: linear(h, config.intermediate_size, l.pp("mlp.fc1"))?,
                    fc2: linear(config.intermediate_size, h, l.pp("mlp.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_norm = layer_norm(h, eps, vb.pp("final_layer_norm"))?;
        let quick_gelu = match config.hidden_act.as_str() {
            "quick_gelu" => true,
            "gelu" => false,
            other => {
                return Err(Error::bad_request(format!(
                    "CLIP activation {other} is not supported (quick_gelu and gelu are)"
                )))
            }
        };
        Ok(ClipTextModel {
            token,
            position,
            layers,
            final_norm,
            heads: config.num_attention_heads,
            quick_gelu,
            projection,
            eos_token_id: config.eos_token_id,
        })
    }

    /// Width of the pooled projection (`text_embeds`), when the model has one.
    pub fn projection_width(&self) -> Option<usize> {
        self.projection.as_ref().map(|p| p.weight().dims()[0])
    }

    /// The last hidden state (after the final layer norm) for `ids` (batch x seq).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.forward_hidden(ids)?.last)
    }

    /// `CLIPTextModelWithProjection`'s `text_embeds`: the last hidden state at each row's
    /// end-of-text token, through `text_projection` (rows of `ids` as given to the pass).
    pub fn pooled(&self, hidden: &ClipHidden, ids: &[Vec<u32>]) -> Result<Tensor> {
        let projection = self.projection.as_ref().ok_or_else(|| {
            Error::bad_request("this text encoder has no text_projection (a pooled embedding)")
        })?;
        let rows = ids
            .iter()
            .enumerate()
            .map(|(b, row)| {
                let at = self.eos_position(row);
                hidden.last.get(b)?.narrow(0, at, 1)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(projection.forward(&Tensor::cat(&rows, 0)?)?)
    }

    /// Where transformers reads the pooled output: the largest id when the config's
    /// `eos_token_id` is the legacy 2, else the first `eos_token_id` (0 when absent).
    fn eos_position(&self, row: &[u32]) -> usize {
        match self.eos_token_id {
            Some(eos) if eos != 2 => row.iter().position(|&t| t == eos).unwrap_or(0),
            _ => {
                let max = row.iter().copied().max().unwrap_or(0);
                row.iter().position(|&t| t == max).unwrap_or(0)
            }
        }
    }

    /// The last and penultimate hidden states for `ids` (batch x seq).
    pub fn forward_hidden(&self, ids: &Tensor) -> Result<ClipHidden> {
        let (b, t) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, t as u32, device)?;
        let mut x = self
            .token
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, t, t), device)?;
        let h = x.dim(2)?;
        let hd = h / self.heads;
        let scale = (hd as f64).powf(-0.5);
        let mut penultimate = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if i + 1 == self.layers.len() {
                penultimate = x.clone();
            }
            let residual = x.clone();
            let n = layer.ln1.forward(&x)?;
            let split = |t_: Tensor| -> candle_core::Result<Tensor> {
                t_.reshape((b, t, self.heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = split((layer.q.forward(&n)? * scale)?)?;
            let k = split(layer.k.forward(&n)?)?;
            let v = split(layer.v.forward(&n)?)?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let attn = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, h))?;
            x = (residual + layer.out.forward(&attn)?)?;
            let residual = x.clone();
            let n = layer.ln2.forward(&x)?;
            let m = layer.fc1.forward(&n)?;
            let m = if self.quick_gelu {
                (&m * candle_nn::ops::sigmoid(&(&m * 1.702)?)?)?
            } else {
                m.gelu_erf()?
            };
            x = (residual + layer.fc2.forward(&m)?)?;
        }
        Ok(ClipHidden {
            last: self.final_norm.forward(&x)?,
            penultimate,
        })
    }
}

/// The CLIP tokenizer: `tokenizer.json`, or the slow tokenizer's `vocab.json` + `merges.txt`
/// turned into the same fast tokenizer transformers builds from them.
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
}

fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

use crate::files::read_json;

impl ClipTokenizer {
    /// Loads the tokenizer folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = if dir.join("tokenizer_config.json").exists() {
            read_json(&dir.join("tokenizer_config.json"))?
        } else {
            json!({})
        };
        let special = if dir.join("special_tokens_map.json").exists() {
            read_json(&dir.join("special_tokens_map.json"))?
        } else {
            json!({})
        };
        let tokenizer = if dir.join("tokenizer.json").exists() {
            crate::tokenizer_file::load(dir.join("tokenizer.json")).map_err(|e| {
                Error::bad_request(format!("cannot load {}/tokenizer.json: {e}", dir.display()))
            })?
        } else {
            Self::from_slow_files(dir)?
        };
        let lookup = |key: &str, default: &str| -> Result<u32> {
            let text = token_text(config.get(key))
                .or_else(|| token_text(special.get(key)))
                .unwrap_or_else(|| default.to_owned());
            tokenizer.token_to_id(&text).ok_or_else(|| {
                Error::bad_request(format!("the tokenizer has no {key} token {text:?}"))
            })
        };
        let bos = lookup("bos_token", "<|startoftext|>")?;
        let eos = lookup("eos_token", "<|endoftext|>")?;
        let pad = lookup("pad_token", "<|endoftext|>")?;
        let max_length = config
            .get("model_max_length")
            .and_then(Value::as_u64)
            .filter(|m| *m <= 4096)
            .unwrap_or(77) as usize;
        Ok(ClipTokenizer {
            tokenizer,
            bos,
            eos,
            pad,
            max_length,
        })
    }

    fn from_slow_files(dir: &Path) -> Result<Tokenizer> {
        let vocab = read_json(&dir.join("vocab.json"))?;
        let merges_text = std::fs::read_to_string(dir.join("merges.txt")).map_err(|e| {
            Error::bad_request(format!("cannot read {}/merges.txt: {e}", dir.display()))
        })?;
        let merges: Vec<&str> = merges_text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .collect();
        let spec = json!({
            "version": "1.0",
            "added_tokens": [],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex":
                    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
                 "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
                      "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        });
        let mut tokenizer: Tokenizer = serde_json::from_value(spec)
            .map_err(|e| Error::bad_request(format!("cannot build the CLIP tokenizer: {e}")))?;
        let specials: Vec<tokenizers::AddedToken> = ["<|startoftext|>", "<|endoftext|>"]
            .iter()
            .map(|t| tokenizers::AddedToken::from(*t, true))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| Error::bad_request(format!("cannot add CLIP's special tokens: {e}")))?;
        Ok(tokenizer)
    }

    /// `tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::bad_request(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = vec![self.bos];
        ids.extend(
            encoding
                .get_ids()
                .iter()
                .take(self.max_length.saturating_sub(2)),
        );
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        Ok(ids)
    }

    /// Tokens per prompt (77).
    pub fn max_length(&self) -> usize {
        self.max_length
    }
}

/// Token ids of several prompts as a (batch x 77) tensor.
pub fn ids_tensor(rows: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let t = rows.first().map_or(0, Vec::len);
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), t), device)?.to_dtype(DType::U32)?)
}
