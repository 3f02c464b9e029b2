//! Our UNet2DConditionModel: the input convolution, the time embedding (plus SDXL's `text_time`
//! added conditioning, which candle's UNet lacks), the down / mid / up blocks, and the output
//! head, wired as diffusers' `UNet2DConditionModel.forward`. The blocks are ours
//! ([`super::blocks`], every size from the config), over our layers ([`super::layers`]).

use super::blocks::{BlockShape, DownBlock, MidBlock, UpBlock};
use super::config::{TextTimeSettings, UNetSettings};
use super::norm_linear::GroupNorm;
use super::ops::{tensor, with_values, Conv};
use crate::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};
use candle_transformers::models::stable_diffusion::unet_2d::BlockConfig;

/// SDXL's added conditioning: `add_time_proj` (sinusoidal, per time id) and `add_embedding`.
struct TextTime {
    settings: TextTimeSettings,
    time_proj: Timesteps,
    embedding: TimestepEmbedding,
}

/// What SDXL's UNet is conditioned on besides the text: per batch row, the pooled text
/// embedding of the second text encoder (`text_embeds`) and the six time ids (original size,
/// crop top-left, target size).
pub struct AddedConditions<'a> {
    /// (batch, pooled width).
    pub text_embeds: &'a Tensor,
    /// (batch, 6), or (batch, 5) for an SDXL refiner.
    pub time_ids: &'a Tensor,
}

/// The UNet of a diffusers folder.
pub struct UNet {
    conv_in: Conv,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    text_time: Option<TextTime>,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv,
    center_input_sample: bool,
}

impl UNet {
    /// Builds the UNet from its settings and the weights under `vb`.
    pub fn new(vb: VarBuilder, s: &UNetSettings) -> Result<Self> {
        let c = &s.config;
        let blocks = &c.blocks;
        let n = blocks.len();
        let first = blocks[0].out_channels;
        let last = blocks[n - 1];
        let time_dim = first * 4;
        let conv_in = Conv::new(vb.pp("conv_in"), s.in_channels, first, 3, 1, 1)?;
        let time_proj = Timesteps::new(first, c.flip_sin_to_cos, c.freq_shift);
        let time_embedding = TimestepEmbedding::new(vb.pp("time_embedding"), first, time_dim)?;
        let text_time = match s.text_time {
            None => None,
            Some(settings) => Some(TextTime {
                settings,
                time_proj: Timesteps::new(settings.time_embed_dim, c.flip_sin_to_cos, c.freq_shift),
                embedding: TimestepEmbedding::new(
                    vb.pp("add_embedding"),
                    settings.input_dim,
                    time_dim,
                )?,
            }),
        };
        let shape = |block: &BlockConfig, layers: usize| BlockShape {
            layers,
            out_channels: block.out_channels,
            temb_channels: time_dim,
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            attention: block
                .use_cross_attn
                .map(|depth| (block.attention_head_dim, depth)),
            cross_attention_dim: c.cross_attention_dim,
            use_linear_projection: c.use_linear_projection,
        };
        let down = blocks
            .iter()
            .enumerate()
            .map(|(i, block)| {
                let in_channels = if i == 0 {
                    first
                } else {
                    blocks[i - 1].out_channels
                };
                DownBlock::new(
                    vb.pp(format!("down_blocks.{i}")),
                    in_channels,
                    shape(block, c.layers_per_block),
                    (i + 1 < n).then_some(c.downsample_padding),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // diffusers: the mid block takes the last block's heads and transformer depth.
        let mid_shape = BlockShape {
            attention: Some((last.attention_head_dim, last.use_cross_attn.unwrap_or(1))),
            ..shape(&last, 1)
        };
        let mid = MidBlock::new(vb.pp("mid_block"), mid_shape, c.mid_block_scale_factor)?;
        // Up block i mirrors down block n-1-i.
        let up = (0..n)
            .map(|i| {
                let mirrored = &blocks[n - 1 - i];
                let prev = if i == 0 {
                    last.out_channels
                } else {
                    blocks[n - i].out_channels
                };
                let skip = blocks[(n - 1 - i).saturating_sub(1)].out_channels;
                UpBlock::new(
                    vb.pp(format!("up_blocks.{i}")),
                    prev,
                    skip,
                    shape(mirrored, c.layers_per_block + 1),
                    i + 1 < n,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let conv_norm_out =
            GroupNorm::new(vb.pp("conv_norm_out"), c.norm_num_groups, first, c.norm_eps)?;
        let conv_out = Conv::new(vb.pp("conv_out"), first, s.out_channels, 3, 1, 1)?;
        Ok(UNet {
            conv_in,
            time_proj,
            time_embedding,
            text_time,
            down,
            mid,
            up,
            conv_norm_out,
            conv_out,
            center_input_sample: c.center_input_sample,
        })
    }

    /// Whether the UNet needs [`AddedConditions`] (SDXL), and their pooled text width given
    /// `time_ids` ids per row (6: SDXL base; 5: the refiner's, with an aesthetic score).
    pub fn pooled_width(&self, time_ids: usize) -> Option<usize> {
        self.text_time.as_ref().map(|t| {
            t.settings
                .input_dim
                .saturating_sub(time_ids * t.settings.time_embed_dim)
        })
    }

    /// The time embedding (batch, 4 x first channels), with the added conditioning summed in.
    fn embedding(
        &self,
        batch: usize,
        timestep: f64,
        added: Option<&AddedConditions>,
        like: &Tensor,
    ) -> Result<Tensor> {
        let t = (Tensor::ones(batch, like.dtype(), like.device())? * timestep)?;
        let emb = self.time_embedding.forward(&self.time_proj.forward(&t)?)?;
        match (&self.text_time, added) {
            (None, _) => Ok(emb),
            (Some(tt), Some(a)) => {
                let ids = a.time_ids.flatten_all()?;
                let time_embeds = tt.time_proj.forward(&ids)?.reshape((batch, ()))?;
                let input = Tensor::cat(&[a.text_embeds, &time_embeds], 1)?;
                if input.dim(1)? != tt.settings.input_dim {
                    return Err(Error::bad_request(format!(
                        "the UNet's add_embedding takes {} values, but the pooled text embedding \
                         and time ids give {}",
                        tt.settings.input_dim,
                        input.dim(1)?
                    )));
                }
                Ok((emb + tt.embedding.forward(&input)?)?)
            }
            (Some(_), None) => Err(Error::internal(
                "this UNet needs the text_time added conditioning (pooled text, time ids)",
            )),
        }
    }

    /// The model output (noise, or v) for latents `xs` at `timestep`, conditioned on the text
    /// hidden states `context` (and, for SDXL, `added`).
    pub fn forward(
        &self,
        xs: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<&AddedConditions>,
    ) -> Result<Tensor> {
        let (batch, _, height, width) = xs.dims4()?;
        let factor = 1usize << (self.down.len() - 1);
        let odd_size = !height.is_multiple_of(factor) || !width.is_multiple_of(factor);
        let xs = if self.center_input_sample {
            ((xs * 2.0)? - 1.0)?
        } else {
            xs.clone()
        };
        let emb = self.embedding(batch, timestep, added, &xs)?;
        let mut xs = self.conv_in.forward(&xs)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down {
            let (out, states) = block.forward(&xs, &emb, context)?;
            skips.extend(states);
            xs = out;
        }
        xs = self.mid.forward(&xs, &emb, context)?;
        let n = self.up.len();
        for (i, block) in self.up.iter().enumerate() {
            let res = skips.split_off(skips.len() - block.skips());
            // Odd latent sizes: upsample to the size of the skip connection that follows.
            let upsample_size = match skips.last() {
                Some(next) if i + 1 < n && odd_size => {
                    let (_, _, h, w) = next.dims4()?;
                    Some((h, w))
                }
                _ => None,
            };
            xs = block.forward(&xs, &res, &emb, context, upsample_size)?;
        }
        let (n, c, h, w) = xs.dims4()?;
        let xs = with_values(&xs, |v| {
            self.conv_norm_out.forward_values(v, n, h * w, true)
        })?;
        self.conv_out.forward(&tensor(xs, &[n, c, h, w])?)
    }
}
