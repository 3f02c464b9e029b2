//! The VAE encoder for image to image. candle's `AutoEncoderKL::encode` hides the latent
//! distribution's mean and deviation and samples it with its own random numbers; diffusers
//! samples it with the request's generator, so we build the same encoder from candle's public
//! blocks and sample it ourselves.

use super::config::VaeSettings;
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{conv2d, group_norm, Conv2d, Conv2dConfig, GroupNorm, VarBuilder};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    DownEncoderBlock2D, DownEncoderBlock2DConfig, UNetMidBlock2D, UNetMidBlock2DConfig,
};

/// `vae.encoder` + `vae.quant_conv`.
pub struct VaeEncoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: UNetMidBlock2D,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl VaeEncoder {
    /// Builds the encoder from the VAE's weights.
    pub fn new(vb: VarBuilder, settings: &VaeSettings) -> Result<Self> {
        let c = &settings.config;
        let groups = c.norm_num_groups;
        let enc = vb.pp("encoder");
        let pad1 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv_in = conv2d(
            settings.in_channels,
            c.block_out_channels[0],
            3,
            pad1,
            enc.pp("conv_in"),
        )?;
        let mut down_blocks = Vec::new();
        for (i, &out) in c.block_out_channels.iter().enumerate() {
            let input = if i > 0 {
                c.block_out_channels[i - 1]
            } else {
                c.block_out_channels[0]
            };
            let cfg = DownEncoderBlock2DConfig {
                num_layers: c.layers_per_block,
                resnet_eps: 1e-6,
                resnet_groups: groups,
                add_downsample: i + 1 < c.block_out_channels.len(),
                downsample_padding: 0,
                ..Default::default()
            };
            down_blocks.push(DownEncoderBlock2D::new(
                enc.pp(format!("down_blocks.{i}")),
                input,
                out,
                cfg,
            )?);
        }
        let last = *c.block_out_channels.last().unwrap_or(&0);
        let mid_cfg = UNetMidBlock2DConfig {
            resnet_eps: 1e-6,
            output_scale_factor: 1.,
            attn_num_head_channels: None,
            resnet_groups: Some(groups),
            ..Default::default()
        };
        let mid_block = UNetMidBlock2D::new(enc.pp("mid_block"), last, None, mid_cfg)?;
        let norm_out = group_norm(groups, last, 1e-6, enc.pp("conv_norm_out"))?;
        let conv_out = conv2d(last, 2 * c.latent_channels, 3, pad1, enc.pp("conv_out"))?;
        let quant_conv = if c.use_quant_conv {
            Some(conv2d(
                2 * c.latent_channels,
                2 * c.latent_channels,
                1,
                Default::default(),
                vb.pp("quant_conv"),
            )?)
        } else {
            None
        };
        Ok(VaeEncoder {
            conv_in,
            down_blocks,
            mid_block,
            norm_out,
            conv_out,
            quant_conv,
        })
    }

    /// The latent distribution of `image` (N x 3 x H x W in [-1, 1]): (mean, standard deviation).
    pub fn encode(&self, image: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut x = self.conv_in.forward(image)?;
        for block in &self.down_blocks {
            x = block.forward(&x)?;
        }
        x = self.mid_block.forward(&x, None)?;
        x = candle_nn::ops::silu(&self.norm_out.forward(&x)?)?;
        x = self.conv_out.forward(&x)?;
        if let Some(q) = &self.quant_conv {
            x = q.forward(&x)?;
        }
        let half = x.dim(1)? / 2;
        let mean = x.narrow(1, 0, half)?.contiguous()?;
        // diffusers clamps the log-variance to [-30, 20].
        let logvar = x.narrow(1, half, half)?.clamp(-30f32, 20f32)?;
        let std = (logvar * 0.5)?.exp()?;
        Ok((mean, std))
    }
}
