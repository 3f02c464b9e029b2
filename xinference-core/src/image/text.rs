//! The prompt side of a pipeline: one CLIP text encoder (SD 1.x / 2.x: the last hidden state),
//! SDXL's two (`text_encoder` + `text_encoder_2`: their penultimate hidden states
//! concatenated, and the second one's pooled projection) or the SDXL refiner's
//! `text_encoder_2` alone (its penultimate hidden states and pooled projection), with SDXL's
//! `force_zeros_for_empty_prompt` for the unconditional side, as diffusers' `encode_prompt`.

use super::clip::{ids_tensor, ClipTextConfig, ClipTextModel, ClipTokenizer};
use super::config::read_json;
use super::pipeline::weight_files;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::path::Path;

struct Encoder {
    tokenizer: ClipTokenizer,
    model: ClipTextModel,
}

impl Encoder {
    fn load(root: &Path, tokenizer: &str, model: &str, device: &Device) -> Result<Self> {
        let dir = root.join(model);
        let config: ClipTextConfig = serde_json::from_value(read_json(&dir.join("config.json"))?)
            .map_err(|e| {
            Error::bad_request(format!("{model}/config.json is not a CLIP config: {e}"))
        })?;
        let vb = super::weights::ReadSafetensors::var_builder(
            &weight_files(&dir, "model")?,
            DType::F32,
            device,
        )?;
        Ok(Encoder {
            tokenizer: ClipTokenizer::load(&root.join(tokenizer))?,
            model: ClipTextModel::new(vb, &config)?,
        })
    }
}

/// What the UNet is conditioned on, one row per UNet batch row: the unconditional rows first
/// (`n` of them, when guided), then the `n` prompt rows.
pub struct Conditioning {
    /// (rows, 77, width) text hidden states.
    pub context: Tensor,
    /// SDXL: (rows, pooled width) `text_embeds` of the second encoder.
    pub pooled: Option<Tensor>,
}

/// The text encoders of a pipeline folder.
pub struct TextEncoders {
    /// `text_encoder/` (absent in an SDXL refiner).
    first: Option<Encoder>,
    second: Option<Encoder>,
    force_zeros_for_empty_prompt: bool,
}

impl TextEncoders {
    /// Loads `tokenizer/` + `text_encoder/` (unless `model_index.json` says the pipeline has
    /// none, as an SDXL refiner), and `tokenizer_2/` + `text_encoder_2/` when the folder has
    /// them (SDXL). `index` is the parsed `model_index.json`.
    pub fn load(root: &Path, index: &Value, device: &Device) -> Result<Self> {
        // `"text_encoder": [null, null]` in a refiner's model_index.json.
        let listed = index
            .get("text_encoder")
            .and_then(Value::as_array)
            .is_none_or(|a| a.iter().any(|v| !v.is_null()));
        let first = if listed || !root.join("text_encoder_2").exists() {
            Some(Encoder::load(root, "tokenizer", "text_encoder", device)?)
        } else {
            None
        };
        let second = if root.join("text_encoder_2").exists() {
            let e = Encoder::load(root, "tokenizer_2", "text_encoder_2", device)?;
            if e.model.projection_width().is_none() {
                return Err(Error::bad_request(
                    "text_encoder_2 has no text_projection (SDXL's second encoder is a \
                     CLIPTextModelWithProjection)",
                ));
            }
            Some(e)
        } else {
            None
        };
        Ok(TextEncoders {
            first,
            second,
            force_zeros_for_empty_prompt: index
                .get("force_zeros_for_empty_prompt")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    }

    /// Width of the pooled text embedding (SDXL), `None` with a single encoder.
    pub fn pooled_width(&self) -> Option<usize> {
        self.second
            .as_ref()
            .and_then(|e| e.model.projection_width())
    }

    /// One prompt: (hidden states (1, 77, width), pooled (1, width) for SDXL).
    fn encode_one(&self, text: &str, device: &Device) -> Result<(Tensor, Option<Tensor>)> {
        let (first, second) = match (&self.first, &self.second) {
            (Some(first), None) => {
                let ids = vec![first.tokenizer.encode(text)?];
                let hidden = first.model.forward(&ids_tensor(&ids, device)?)?;
                return Ok((hidden, None));
            }
            (first, Some(second)) => (first, second),
            (None, None) => return Err(Error::internal("a pipeline without text encoders")),
        };
        let ids2 = vec![second.tokenizer.encode(text)?];
        let h2 = second.model.forward_hidden(&ids_tensor(&ids2, device)?)?;
        let pooled = second.model.pooled(&h2, &ids2)?;
        let Some(first) = first else {
            return Ok((h2.penultimate, Some(pooled)));
        };
        let ids = vec![first.tokenizer.encode(text)?];
        let h1 = first.model.forward_hidden(&ids_tensor(&ids, device)?)?;
        let context = Tensor::cat(&[&h1.penultimate, &h2.penultimate], 2)?;
        Ok((context, Some(pooled)))
    }

    /// The conditioning of `n` images of `prompt`; with guidance, the unconditional side from
    /// `negative` (or "" — or zeros, for SDXL folders that ask for them when no negative prompt
    /// is given).
    pub fn encode(
        &self,
        prompt: &str,
        negative: Option<&str>,
        n: usize,
        guided: bool,
        device: &Device,
    ) -> Result<Conditioning> {
        let (cond, cond_pooled) = self.encode_one(prompt, device)?;
        let mut contexts = Vec::new();
        let mut pooled = Vec::new();
        if guided {
            let zeros =
                negative.is_none() && self.second.is_some() && self.force_zeros_for_empty_prompt;
            let (u, up) = if zeros {
                (
                    cond.zeros_like()?,
                    cond_pooled.as_ref().map(Tensor::zeros_like).transpose()?,
                )
            } else {
                self.encode_one(negative.unwrap_or(""), device)?
            };
            contexts.push(repeat(&u, n)?);
            pooled.extend(up.map(|p| repeat(&p, n)).transpose()?);
        }
        contexts.push(repeat(&cond, n)?);
        pooled.extend(cond_pooled.map(|p| repeat(&p, n)).transpose()?);
        Ok(Conditioning {
            context: Tensor::cat(&contexts, 0)?,
            pooled: if pooled.is_empty() {
                None
            } else {
                Some(Tensor::cat(&pooled, 0)?)
            },
        })
    }
}

/// `x` (1, ...) repeated `n` times along the batch.
fn repeat(x: &Tensor, n: usize) -> Result<Tensor> {
    let mut shape = x.dims().to_vec();
    shape[0] = n;
    Ok(x.broadcast_as(shape)?.contiguous()?)
}
