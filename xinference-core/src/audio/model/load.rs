//! Loading the Whisper network's weights under the Hugging Face names.

use super::layers::{Block, DecoderBlock, Norm, Stored};
use super::{Dims, WhisperNet};
use crate::Result;
use candle_core::{Device, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};

/// Sinusoidal positions of the encoder (as openai-whisper computes them).
fn sinusoids(length: usize, channels: usize) -> Result<Tensor> {
    let half = channels / 2;
    let step = (10_000f64).ln() / (half - 1) as f64;
    let mut v = vec![0f32; length * channels];
    for t in 0..length {
        for i in 0..half {
            let x = t as f64 * (-(i as f64) * step).exp();
            v[t * channels + i] = x.sin() as f32;
            v[t * channels + half + i] = x.cos() as f32;
        }
    }
    Ok(Tensor::from_vec(v, (length, channels), &Device::Cpu)?)
}

impl WhisperNet {
    /// Loads the weights under the Hugging Face names (`model.encoder...`, `model.decoder...`).
    pub fn load(vb: &VarBuilder, dims: Dims) -> Result<Self> {
        let d = dims.d_model;
        let conv = |name: &str, c_in: usize, stride: usize| -> Result<Conv1d> {
            let vb = vb.pp(name);
            Ok(Conv1d::new(
                vb.get((d, c_in, 3), "weight")?,
                Some(vb.get(d, "bias")?),
                Conv1dConfig {
                    padding: 1,
                    stride,
                    dilation: 1,
                    groups: 1,
                    cudnn_fwd_algo: None,
                },
            ))
        };
        let enc = vb.pp("model.encoder");
        let dec = vb.pp("model.decoder");
        let audio_pos = match enc.get((dims.audio_ctx, d), "embed_positions.weight") {
            Ok(t) => t,
            Err(_) => sinusoids(dims.audio_ctx, d)?,
        }
        .flatten_all()?
        .to_vec1::<f32>()?;
        Ok(WhisperNet {
            conv1: conv("model.encoder.conv1", dims.n_mels, 1)?,
            conv2: conv("model.encoder.conv2", d, 2)?,
            audio_pos,
            encoder: (0..dims.encoder_layers)
                .map(|i| Block::load(&enc.pp(format!("layers.{i}")), d, dims.encoder_heads))
                .collect::<Result<_>>()?,
            encoder_ln: Norm::load(&enc.pp("layer_norm"), d)?,
            embed: Stored::of(&dec.get((dims.vocab, d), "embed_tokens.weight")?)?,
            text_pos: dec
                .get((dims.text_ctx, d), "embed_positions.weight")?
                .flatten_all()?
                .to_vec1::<f32>()?,
            decoder: (0..dims.decoder_layers)
                .map(|i| DecoderBlock::load(&dec.pp(format!("layers.{i}")), d))
                .collect::<Result<_>>()?,
            decoder_ln: Norm::load(&dec.pp("layer_norm"), d)?,
            dims,
        })
    }
}
