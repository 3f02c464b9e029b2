//! Our AutoencoderKL (diffusers' `Encoder`, `Decoder`, `quant_conv`, `post_quant_conv`) over
//! the UNet's layers ([`super::layers`], [`super::ops`], [`super::attention`]): banded 3x3
//! convolutions without im2col, group norm and SiLU fused, upsampling read straight into the
//! next convolution's padded input, and the mid-block's attention a block of queries at a time
//! (4096 pixels at 512 px: never a whole 4096 x 4096 score matrix).
//!
//! The encoder returns the latent distribution's mean and deviation: diffusers samples it
//! with the request's generator, which the pipeline does.

use super::attention::VaeAttention;
use super::config::VaeSettings;
use super::layers::ResnetBlock;
use super::norm_linear::GroupNorm;
use super::ops::Conv;
use super::pool;
use crate::{Error, Result};
use candle_nn::VarBuilder;

/// The VAE's resnets and group norms: diffusers fixes their epsilon.
const EPS: f64 = 1e-6;

/// `UNetMidBlock2D` as the VAE builds it: resnet, attention (unless the config leaves it
/// out), resnet.
struct MidBlock {
    first: ResnetBlock,
    attention: Option<VaeAttention>,
    second: ResnetBlock,
}

impl MidBlock {
    fn new(vb: VarBuilder, channels: usize, groups: usize, attention: bool) -> Result<Self> {
        let resnet = |i: usize| {
            ResnetBlock::without_time(
                vb.pp("resnets").pp(i.to_string()),
                (channels, channels),
                groups,
                EPS,
            )
        };
        Ok(MidBlock {
            first: resnet(0)?,
            attention: if attention {
                Some(VaeAttention::new(
                    vb.pp("attentions.0"),
                    channels,
                    groups,
                    EPS,
                )?)
            } else {
                None
            },
            second: resnet(1)?,
        })
    }

    fn forward(&self, x: &[f32], (n, h, w): (usize, usize, usize)) -> Vec<f32> {
        let mut x = self.first.forward_values(x, (n, h, w), None);
        if let Some(attention) = &self.attention {
            let next = attention.forward_values(&x, n, h * w);
            pool::give(std::mem::replace(&mut x, next));
        }
        let out = self.second.forward_values(&x, (n, h, w), None);
        pool::give(x);
        out
    }
}

/// How a level ends.
#[derive(Clone, Copy, PartialEq)]
enum Resample {
    /// The encoder's stride-2 convolution.
    Down,
    /// The decoder's nearest-2x upsampling and convolution.
    Up,
}

/// A level of the encoder or decoder: resnets, then a resampling convolution (the encoder's
/// stride-2 downsampler, or the decoder's nearest-2x upsampler) unless it is the last.
struct Level {
    resnets: Vec<ResnetBlock>,
    resample: Option<(Resample, Conv)>,
}

impl Level {
    fn new(
        vb: VarBuilder,
        (cin, cout): (usize, usize),
        (layers, groups): (usize, usize),
        resample: Option<Resample>,
    ) -> Result<Self> {
        let resnets = (0..layers)
            .map(|i| {
                let c = if i == 0 { cin } else { cout };
                ResnetBlock::without_time(
                    vb.pp("resnets").pp(i.to_string()),
                    (c, cout),
                    groups,
                    EPS,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let conv = match resample {
            None => None,
            // diffusers' Downsample2D with padding 0: padded by one at the bottom and right.
            Some(Resample::Down) => Some(Conv::downsampler(vb.pp("downsamplers.0.conv"), cout, 0)?),
            Some(Resample::Up) => Some(Conv::new(vb.pp("upsamplers.0.conv"), cout, cout, 3, 1, 1)?),
        };
        Ok(Level {
            resnets,
            resample: resample.zip(conv),
        })
    }

    /// The level on `x`; returns the output and its size.
    fn forward(
        &self,
        mut x: Vec<f32>,
        (n, h, w): (usize, usize, usize),
    ) -> (Vec<f32>, (usize, usize)) {
        for resnet in &self.resnets {
            let next = resnet.forward_values(&x, (n, h, w), None);
            pool::give(std::mem::replace(&mut x, next));
        }
        let (out, size) = match &self.resample {
            None => return (x, (h, w)),
            Some((Resample::Up, conv)) => {
                let size = (2 * h, 2 * w);
                (conv.forward_resized(&x, (n, h, w), size, None, None), size)
            }
            Some((Resample::Down, conv)) => (
                conv.forward_values(&x, (n, h, w), None, None),
                conv.out_size(h, w),
            ),
        };
        pool::give(x);
        (out, size)
    }
}

/// The image side of the autoencoder: to the latent distribution and back.
pub struct Vae {
    enc_conv_in: Conv,
    enc_levels: Vec<Level>,
    enc_mid: MidBlock,
    enc_norm_out: GroupNorm,
    enc_conv_out: Conv,
    quant_conv: Option<Conv>,
    post_quant_conv: Option<Conv>,
    dec_conv_in: Conv,
    dec_mid: MidBlock,
    dec_levels: Vec<Level>,
    dec_norm_out: GroupNorm,
    dec_conv_out: Conv,
    latent_channels: usize,
    out_channels: usize,
}

impl Vae {
    /// Builds the VAE of `settings` from its weights under `vb` (`encoder.*`, `decoder.*`,
    /// `quant_conv`, `post_quant_conv`).
    pub fn new(vb: VarBuilder, settings: &VaeSettings) -> Result<Self> {
        let c = &settings.config;
        let channels = &c.block_out_channels;
        let (groups, latent) = (c.norm_num_groups, c.latent_channels);
        let levels = channels.len();
        let last = *channels
            .last()
            .ok_or_else(|| Error::bad_request("the VAE config has no block_out_channels"))?;
        let enc = vb.pp("encoder");
        let dec = vb.pp("decoder");
        let enc_levels = (0..levels)
            .map(|i| {
                let cin = channels[i.saturating_sub(1)];
                Level::new(
                    enc.pp(format!("down_blocks.{i}")),
                    (cin, channels[i]),
                    (c.layers_per_block, groups),
                    (i + 1 < levels).then_some(Resample::Down),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let dec_levels = (0..levels)
            .map(|i| {
                let cin = reversed[i.saturating_sub(1)];
                Level::new(
                    dec.pp(format!("up_blocks.{i}")),
                    (cin, reversed[i]),
                    (c.layers_per_block + 1, groups),
                    (i + 1 < levels).then_some(Resample::Up),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let pointwise = |name: &str, cin: usize, cout: usize, present: bool| {
            present
                .then(|| Conv::new(vb.pp(name), cin, cout, 1, 1, 0))
                .transpose()
        };
        Ok(Vae {
            enc_conv_in: Conv::new(
                enc.pp("conv_in"),
                settings.in_channels,
                channels[0],
                3,
                1,
                1,
            )?,
            enc_levels,
            enc_mid: MidBlock::new(enc.pp("mid_block"), last, groups, settings.mid_attention)?,
            enc_norm_out: GroupNorm::new(enc.pp("conv_norm_out"), groups, last, EPS)?,
            enc_conv_out: Conv::new(enc.pp("conv_out"), last, 2 * latent, 3, 1, 1)?,
            quant_conv: pointwise("quant_conv", 2 * latent, 2 * latent, c.use_quant_conv)?,
            post_quant_conv: pointwise("post_quant_conv", latent, latent, c.use_post_quant_conv)?,
            dec_conv_in: Conv::new(dec.pp("conv_in"), latent, last, 3, 1, 1)?,
            dec_mid: MidBlock::new(dec.pp("mid_block"), last, groups, settings.mid_attention)?,
            dec_levels,
            dec_norm_out: GroupNorm::new(dec.pp("conv_norm_out"), groups, channels[0], EPS)?,
            dec_conv_out: Conv::new(
                dec.pp("conv_out"),
                channels[0],
                settings.out_channels,
                3,
                1,
                1,
            )?,
            latent_channels: latent,
            out_channels: settings.out_channels,
        })
    }

    /// The image of `latents` (`n` x latent channels x `h` x `w`, already unscaled): `n` x
    /// image channels x `h · 2^(levels - 1)` x `w · …`, values around [-1, 1]. Returns the
    /// pixels and the image size.
    pub fn decode(
        &self,
        latents: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> (Vec<f32>, (usize, usize)) {
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward_values(latents, (n, h, w), None, None),
            None => latents.to_vec(),
        };
        let x = self.dec_conv_in.forward_values(&z, (n, h, w), None, None);
        pool::give(z);
        let mut x = self.dec_mid.forward(&x, (n, h, w));
        let mut size = (h, w);
        for level in &self.dec_levels {
            (x, size) = level.forward(x, (n, size.0, size.1));
        }
        let plane = size.0 * size.1;
        let normed = self.dec_norm_out.forward_values(&x, n, plane, true);
        pool::give(x);
        let image = self
            .dec_conv_out
            .forward_values(&normed, (n, size.0, size.1), None, None);
        pool::give(normed);
        pool::clear();
        debug_assert_eq!(image.len(), n * self.out_channels * plane);
        (image, size)
    }

    /// The latent distribution of `image` (`n` x image channels x `h` x `w`, in [-1, 1]):
    /// mean and standard deviation (the log-variance clamped to [-30, 20] as diffusers does),
    /// each `n` x latent channels x the latent size, and that size.
    pub fn encode(
        &self,
        image: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> (Vec<f32>, Vec<f32>, (usize, usize)) {
        let mut x = self
            .enc_conv_in
            .forward_values(image, (n, h, w), None, None);
        let mut size = (h, w);
        for level in &self.enc_levels {
            (x, size) = level.forward(x, (n, size.0, size.1));
        }
        let x = self.enc_mid.forward(&x, (n, size.0, size.1));
        let x = self
            .enc_norm_out
            .forward_values(&x, n, size.0 * size.1, true);
        let mut moments = self
            .enc_conv_out
            .forward_values(&x, (n, size.0, size.1), None, None);
        pool::give(x);
        pool::clear();
        if let Some(conv) = &self.quant_conv {
            moments = conv.forward_values(&moments, (n, size.0, size.1), None, None);
        }
        let per = self.latent_channels * size.0 * size.1;
        let (mut mean, mut std) = (Vec::with_capacity(n * per), Vec::with_capacity(n * per));
        for row in moments.chunks_exact(2 * per) {
            mean.extend_from_slice(&row[..per]);
            std.extend(
                row[per..]
                    .iter()
                    .map(|logvar| (0.5 * logvar.clamp(-30.0, 20.0)).exp()),
            );
        }
        (mean, std, size)
    }
}
