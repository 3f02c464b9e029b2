//! The UNet's down and up blocks (`DownBlock2D`, `CrossAttnDownBlock2D`, `UpBlock2D`,
//! `CrossAttnUpBlock2D`), wired as diffusers builds them, over candle's resnet and
//! spatial-transformer layers. candle's own blocks build their resnets with 32 normalisation
//! groups whatever the config says; these take every size from the config (`norm_num_groups`,
//! `norm_eps`, heads, transformer depth per block).

use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};
use candle_transformers::models::stable_diffusion::attention::{
    SpatialTransformer, SpatialTransformerConfig,
};
use candle_transformers::models::stable_diffusion::resnet::{ResnetBlock2D, ResnetBlock2DConfig};

/// What one block is built from.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    /// Resnets in the block (`layers_per_block`, one more on the up path).
    pub layers: usize,
    /// Channels out.
    pub out_channels: usize,
    /// Time-embedding width.
    pub temb_channels: usize,
    /// `norm_num_groups`.
    pub groups: usize,
    /// `norm_eps`.
    pub eps: f64,
    /// Cross attention: (heads, transformer depth); `None` for a plain block.
    pub attention: Option<(usize, usize)>,
    /// Width of the text hidden states.
    pub cross_attention_dim: usize,
    /// Linear (not 1x1 conv) projections in and out of the transformers.
    pub use_linear_projection: bool,
}

impl BlockShape {
    fn resnet(&self, vb: VarBuilder, in_channels: usize) -> Result<ResnetBlock2D> {
        let config = ResnetBlock2DConfig {
            out_channels: Some(self.out_channels),
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            groups_out: None,
            eps: self.eps,
            use_in_shortcut: None,
            output_scale_factor: 1.0,
        };
        Ok(ResnetBlock2D::new(vb, in_channels, config)?)
    }

    fn transformers(&self, vb: VarBuilder) -> Result<Vec<SpatialTransformer>> {
        let Some((heads, depth)) = self.attention else {
            return Ok(Vec::new());
        };
        let config = SpatialTransformerConfig {
            depth,
            num_groups: self.groups,
            context_dim: Some(self.cross_attention_dim),
            sliced_attention_size: None,
            use_linear_projection: self.use_linear_projection,
        };
        let c = self.out_channels;
        (0..self.layers)
            .map(|i| {
                Ok(SpatialTransformer::new(
                    vb.pp(i.to_string()),
                    c,
                    heads,
                    c / heads,
                    false,
                    config,
                )?)
            })
            .collect()
    }
}

/// One block of the down path.
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialTransformer>,
    downsample: Option<(Conv2d, usize)>,
}

impl DownBlock {
    /// Builds the block (`padding`: the downsampler's, `None` for the last block).
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        shape: BlockShape,
        downsample_padding: Option<usize>,
    ) -> Result<Self> {
        let resnets = (0..shape.layers)
            .map(|i| {
                let cin = if i == 0 {
                    in_channels
                } else {
                    shape.out_channels
                };
                shape.resnet(vb.pp("resnets").pp(i.to_string()), cin)
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = shape.transformers(vb.pp("attentions"))?;
        let downsample = match downsample_padding {
            None => None,
            Some(padding) => {
                let config = Conv2dConfig {
                    stride: 2,
                    padding,
                    ..Default::default()
                };
                let c = shape.out_channels;
                let conv = conv2d(c, c, 3, config, vb.pp("downsamplers.0.conv"))?;
                Some((conv, padding))
            }
        };
        Ok(DownBlock {
            resnets,
            attentions,
            downsample,
        })
    }

    /// The block's output and the states it leaves for the up path's skip connections.
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attention) = self.attentions.get(i) {
                xs = attention.forward(&xs, Some(context))?;
            }
            states.push(xs.clone());
        }
        if let Some((conv, padding)) = &self.downsample {
            // diffusers pads right and bottom by one when the padding is 0.
            let input = if *padding == 0 {
                xs.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?
            } else {
                xs
            };
            xs = conv.forward(&input)?;
            states.push(xs.clone());
        }
        Ok((xs, states))
    }
}

/// One block of the up path.
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialTransformer>,
    upsample: Option<Conv2d>,
}

impl UpBlock {
    /// Builds the block: `prev_channels` come from the block below, `skip_channels` are those
    /// of the down block this one mirrors' input (its last resnet's skip connection).
    pub fn new(
        vb: VarBuilder,
        prev_channels: usize,
        skip_channels: usize,
        shape: BlockShape,
        upsample: bool,
    ) -> Result<Self> {
        let c = shape.out_channels;
        let resnets = (0..shape.layers)
            .map(|i| {
                let skip = if i + 1 == shape.layers {
                    skip_channels
                } else {
                    c
                };
                let cin = if i == 0 { prev_channels } else { c };
                shape.resnet(vb.pp("resnets").pp(i.to_string()), cin + skip)
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = shape.transformers(vb.pp("attentions"))?;
        let upsample = if upsample {
            let config = Conv2dConfig {
                padding: 1,
                ..Default::default()
            };
            Some(conv2d(c, c, 3, config, vb.pp("upsamplers.0.conv"))?)
        } else {
            None
        };
        Ok(UpBlock {
            resnets,
            attentions,
            upsample,
        })
    }

    /// Skip connections this block consumes.
    pub fn skips(&self) -> usize {
        self.resnets.len()
    }

    /// The block's output from `xs` and its skip connections (in down-path order; the last
    /// is used first), upsampled to `size` when given, else doubled.
    pub fn forward(
        &self,
        xs: &Tensor,
        skips: &[Tensor],
        temb: &Tensor,
        context: &Tensor,
        size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = &skips[skips.len() - 1 - i];
            xs = Tensor::cat(&[&xs, skip], 1)?;
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attention) = self.attentions.get(i) {
                xs = attention.forward(&xs, Some(context))?;
            }
        }
        match &self.upsample {
            None => Ok(xs),
            Some(conv) => {
                let (_, _, h, w) = xs.dims4()?;
                let (h, w) = size.unwrap_or((2 * h, 2 * w));
                Ok(conv.forward(&xs.upsample_nearest2d(h, w)?)?)
            }
        }
    }
}
