//! The UNet's down, mid and up blocks (`DownBlock2D`, `CrossAttnDownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `UpBlock2D`, `CrossAttnUpBlock2D`), wired as diffusers builds
//! them, over our resnet and spatial-transformer layers ([`super::layers`]). Every size comes
//! from the config (`norm_num_groups`, `norm_eps`, heads, transformer depth per block).

use super::layers::{ResnetBlock, SpatialTransformer};
use super::ops::{tensor, with_values, Conv};
use crate::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

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
    fn resnet(&self, vb: VarBuilder, in_channels: usize) -> Result<ResnetBlock> {
        self.resnet_scaled(vb, in_channels, 1.0)
    }

    fn resnet_scaled(&self, vb: VarBuilder, cin: usize, scale: f64) -> Result<ResnetBlock> {
        ResnetBlock::new(
            vb,
            (cin, self.out_channels, self.temb_channels),
            self.groups,
            self.eps,
            scale,
        )
    }

    fn transformer(
        &self,
        vb: VarBuilder,
        (heads, depth): (usize, usize),
    ) -> Result<SpatialTransformer> {
        SpatialTransformer::new(
            vb,
            self.out_channels,
            (heads, depth),
            self.cross_attention_dim,
            self.groups,
            self.use_linear_projection,
        )
    }

    fn transformers(&self, vb: VarBuilder) -> Result<Vec<SpatialTransformer>> {
        let Some(attention) = self.attention else {
            return Ok(Vec::new());
        };
        (0..self.layers)
            .map(|i| self.transformer(vb.pp(i.to_string()), attention))
            .collect()
    }
}

/// One block of the down path.
pub struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    downsample: Option<Conv>,
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
            Some(padding) => Some(Conv::downsampler(
                vb.pp("downsamplers.0.conv"),
                shape.out_channels,
                padding,
            )?),
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
            xs = resnet.forward(&xs, temb)?;
            if let Some(attention) = self.attentions.get(i) {
                xs = attention.forward(&xs, context)?;
            }
            states.push(xs.clone());
        }
        if let Some(conv) = &self.downsample {
            xs = conv.forward(&xs)?;
            states.push(xs.clone());
        }
        Ok((xs, states))
    }
}

/// One block of the up path.
pub struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    upsample: Option<Conv>,
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
            Some(Conv::new(vb.pp("upsamplers.0.conv"), c, c, 3, 1, 1)?)
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
            xs = resnet.forward(&xs, temb)?;
            if let Some(attention) = self.attentions.get(i) {
                xs = attention.forward(&xs, context)?;
            }
        }
        match &self.upsample {
            None => Ok(xs),
            Some(conv) => {
                let (n, c, h, w) = xs.dims4()?;
                let size = size.unwrap_or((2 * h, 2 * w));
                let out = with_values(&xs, |v| {
                    conv.forward_resized(v, (n, h, w), size, None, None)
                })?;
                tensor(out, &[n, c, size.0, size.1])
            }
        }
    }
}

/// diffusers' `UNetMidBlock2DCrossAttn`: a resnet, then (transformer, resnet) pairs.
pub struct MidBlock {
    first: ResnetBlock,
    rest: Vec<(SpatialTransformer, ResnetBlock)>,
}

impl MidBlock {
    /// Builds the block: `shape.out_channels` in and out, `shape.attention` (heads, depth)
    /// for its one transformer, resnets scaled by `output_scale_factor`.
    pub fn new(vb: VarBuilder, shape: BlockShape, output_scale_factor: f64) -> Result<Self> {
        let c = shape.out_channels;
        let resnets = vb.pp("resnets");
        let first = shape.resnet_scaled(resnets.pp("0"), c, output_scale_factor)?;
        let attention = shape.attention.unwrap_or((1, 1));
        let rest = vec![(
            shape.transformer(vb.pp("attentions").pp("0"), attention)?,
            shape.resnet_scaled(resnets.pp("1"), c, output_scale_factor)?,
        )];
        Ok(MidBlock { first, rest })
    }

    /// The block's output.
    pub fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let mut xs = self.first.forward(xs, temb)?;
        for (attention, resnet) in &self.rest {
            xs = attention.forward(&xs, context)?;
            xs = resnet.forward(&xs, temb)?;
        }
        Ok(xs)
    }
}
