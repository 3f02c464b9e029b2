//! The UNet's resnet and spatial-transformer layers (diffusers' `ResnetBlock2D` and
//! `Transformer2DModel` with `BasicTransformerBlock`s), on [`super::ops`] and the shared
//! [`crate::kernels`]: group norm and SiLU in one pass, the time embedding and the residual
//! added inside the convolutions' products, and attention computed a block of queries at a
//! time, so a 4096-token self-attention never holds a whole 4096 x 4096 score matrix per head.

use super::attention::{attend, Rows};
use super::norm_linear::{GroupNorm, Linear};
use super::ops::{tensor, weight, with_values, Conv};
use super::pool;
use crate::kernels;
use crate::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// diffusers' `ResnetBlock2D` (the time embedding, when the block has one, added after the
/// first convolution; the VAE's blocks have none).
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv,
    shortcut: Option<Conv>,
    output_scale_factor: f64,
}

impl ResnetBlock {
    /// Builds the block: `groups` normalisation groups (both norms), `eps`.
    pub fn new(
        vb: VarBuilder,
        (cin, cout, temb): (usize, usize, usize),
        groups: usize,
        eps: f64,
        output_scale_factor: f64,
    ) -> Result<Self> {
        Self::build(
            vb,
            (cin, cout, Some(temb)),
            groups,
            eps,
            output_scale_factor,
        )
    }

    /// A block without time embedding (the VAE's), output scale 1.
    pub fn without_time(
        vb: VarBuilder,
        (cin, cout): (usize, usize),
        groups: usize,
        eps: f64,
    ) -> Result<Self> {
        Self::build(vb, (cin, cout, None), groups, eps, 1.0)
    }

    fn build(
        vb: VarBuilder,
        (cin, cout, temb): (usize, usize, Option<usize>),
        groups: usize,
        eps: f64,
        output_scale_factor: f64,
    ) -> Result<Self> {
        Ok(ResnetBlock {
            norm1: GroupNorm::new(vb.pp("norm1"), groups, cin, eps)?,
            conv1: Conv::new(vb.pp("conv1"), cin, cout, 3, 1, 1)?,
            time_emb_proj: temb
                .map(|temb| Linear::new(vb.pp("time_emb_proj"), temb, cout, true))
                .transpose()?,
            norm2: GroupNorm::new(vb.pp("norm2"), groups, cout, eps)?,
            conv2: Conv::new(vb.pp("conv2"), cout, cout, 3, 1, 1)?,
            shortcut: if cin != cout {
                Some(Conv::new(vb.pp("conv_shortcut"), cin, cout, 1, 1, 0)?)
            } else {
                None
            },
            output_scale_factor,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.conv1.out_channels()
    }

    /// The block on `x` (NCHW) with the time embedding `temb` (batch x width).
    pub fn forward(&self, x: &Tensor, temb: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let temb = with_values(temb, |v| v.to_vec())?;
        let out = with_values(x, |xv| self.forward_values(xv, (n, h, w), Some(&temb)))?;
        tensor(out, &[n, self.out_channels(), h, w])
    }

    /// The block on `x` (`n` x channels x `h` x `w`), with the time embedding `temb` (`n` rows
    /// of its width) when the block has one.
    pub fn forward_values(
        &self,
        xv: &[f32],
        (n, h, w): (usize, usize, usize),
        temb: Option<&[f32]>,
    ) -> Vec<f32> {
        let plane = h * w;
        let t = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(temb)) => {
                let mut t = temb.to_vec();
                kernels::silu(&mut t);
                Some(proj.forward_values(&t, None))
            }
            _ => None,
        };
        let a = self.norm1.forward_values(xv, n, plane, true);
        let h1 = self.conv1.forward_values(&a, (n, h, w), t.as_deref(), None);
        pool::give(a);
        let a2 = self.norm2.forward_values(&h1, n, plane, true);
        pool::give(h1);
        let residual = self
            .shortcut
            .as_ref()
            .map(|s| s.forward_values(xv, (n, h, w), None, None));
        let mut out = self.conv2.forward_values(
            &a2,
            (n, h, w),
            None,
            Some(residual.as_deref().unwrap_or(xv)),
        );
        pool::give(a2);
        if let Some(r) = residual {
            pool::give(r);
        }
        if self.output_scale_factor != 1.0 {
            let inv = (1.0 / self.output_scale_factor) as f32;
            out.iter_mut().for_each(|v| *v *= inv);
        }
        out
    }
}

/// Multi-head attention (`to_q`, `to_k`, `to_v` without bias, `to_out.0` with).
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    fn new(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        Ok(Attention {
            to_q: Linear::new(vb.pp("to_q"), dim, dim, false)?,
            to_k: Linear::new(vb.pp("to_k"), context_dim, dim, false)?,
            to_v: Linear::new(vb.pp("to_v"), context_dim, dim, false)?,
            to_out: Linear::new(vb.pp("to_out.0"), dim, dim, true)?,
            heads,
        })
    }

    /// `residual + attention(x over context)`, for `n` batch rows of `x` (rows of `t` tokens
    /// of `dim`) and of `context` (rows of `tk` tokens).
    fn forward(&self, x: &[f32], context: &[f32], n: usize, residual: &[f32]) -> Vec<f32> {
        let dim = self.to_q.out_features();
        let t = x.len() / n / dim;
        let tk = context.len() / n / self.to_k.in_features();
        let q = self.to_q.forward_values(x, None);
        let k = self.to_k.forward_values(context, None);
        let v = self.to_v.forward_values(context, None);
        let d = dim / self.heads;
        let rows = |data| Rows {
            data,
            stride: dim,
            offset: 0,
        };
        let ctx = attend(
            n,
            (t, tk),
            (self.heads, d),
            (rows(&q), rows(&k), rows(&v)),
            1.0 / (d as f32).sqrt(),
        );
        drop((q, k, v));
        self.to_out.forward_values(&ctx, Some(residual))
    }
}

/// One `BasicTransformerBlock`: self-attention, cross-attention, GEGLU feed-forward, each
/// after a layer norm and with a residual.
struct TransformerBlock {
    norms: [(Vec<f32>, Vec<f32>); 3],
    attn1: Attention,
    attn2: Attention,
    ff_in: Linear,
    ff_out: Linear,
}

fn layer_norm(vb: VarBuilder, dim: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok((weight(&vb, &[dim], "weight")?, weight(&vb, &[dim], "bias")?))
}

impl TransformerBlock {
    fn new(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(TransformerBlock {
            norms: [
                layer_norm(vb.pp("norm1"), dim)?,
                layer_norm(vb.pp("norm2"), dim)?,
                layer_norm(vb.pp("norm3"), dim)?,
            ],
            attn1: Attention::new(vb.pp("attn1"), dim, dim, heads)?,
            attn2: Attention::new(vb.pp("attn2"), dim, context_dim, heads)?,
            ff_in: Linear::new(vb.pp("ff.net.0.proj"), dim, 2 * inner, true)?,
            ff_out: Linear::new(vb.pp("ff.net.2"), inner, dim, true)?,
        })
    }

    fn normed(&self, x: &[f32], i: usize) -> Vec<f32> {
        let mut h = x.to_vec();
        kernels::layer_norm(&mut h, &self.norms[i].0, &self.norms[i].1, 1e-5);
        h
    }

    fn forward(&self, x: Vec<f32>, context: &[f32], n: usize) -> Vec<f32> {
        let h = self.normed(&x, 0);
        let x = self.attn1.forward(&h, &h, n, &x);
        let h = self.normed(&x, 1);
        let x = self.attn2.forward(&h, context, n, &x);
        let h = self.normed(&x, 2);
        let projected = self.ff_in.forward_values(&h, None);
        drop(h);
        let inner = self.ff_out_in();
        let mut gated = vec![0f32; projected.len() / 2];
        kernels::geglu(&projected, &mut gated, inner);
        drop(projected);
        self.ff_out.forward_values(&gated, Some(&x))
    }

    fn ff_out_in(&self) -> usize {
        self.ff_in.out_features() / 2
    }
}

/// diffusers' `Transformer2DModel` for Stable Diffusion: group norm, projection in (1x1
/// convolution or linear: the same product), transformer blocks over the pixels as tokens,
/// projection out plus the input.
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Conv,
    blocks: Vec<TransformerBlock>,
    proj_out: Conv,
}

impl SpatialTransformer {
    /// Builds it for `channels` channels, `heads` heads of `channels / heads`, `depth` blocks.
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        (heads, depth): (usize, usize),
        context_dim: usize,
        groups: usize,
        use_linear_projection: bool,
    ) -> Result<Self> {
        let projection = |name: &str| -> Result<Conv> {
            if use_linear_projection {
                // A linear layer's [out, in] weight is a 1x1 convolution's [out, in, 1, 1].
                Conv::from_linear(vb.pp(name), channels, channels)
            } else {
                Conv::new(vb.pp(name), channels, channels, 1, 1, 0)
            }
        };
        Ok(SpatialTransformer {
            norm: GroupNorm::new(vb.pp("norm"), groups, channels, 1e-6)?,
            proj_in: projection("proj_in")?,
            blocks: (0..depth)
                .map(|i| {
                    TransformerBlock::new(
                        vb.pp(format!("transformer_blocks.{i}")),
                        channels,
                        context_dim,
                        heads,
                    )
                })
                .collect::<Result<_>>()?,
            proj_out: projection("proj_out")?,
        })
    }

    /// The transformer on `x` (NCHW) attending to `context` (batch x tokens x width).
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let t = h * w;
        let context = with_values(context, |v| v.to_vec())?;
        let out = with_values(x, |xv| {
            let normed = self.norm.forward_values(xv, n, t, false);
            // Tokens (pixel-major) straight from the channel-major planes.
            let mut tokens = self.proj_in.tokens_from_planes(&normed, n, t);
            pool::give(normed);
            for block in &self.blocks {
                tokens = block.forward(tokens, &context, n);
            }
            self.proj_out.planes_from_tokens(&tokens, n, t, xv)
        })?;
        tensor(out, &[n, c, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::attention::QUERY_BLOCK;
    use crate::image::ops::tests::{builder, values};

    /// Attention over more queries than one block holds matches softmax(q kᵀ / √d) v per
    /// head, computed directly.
    #[test]
    fn blocked_attention_matches_the_direct_formula() {
        let (n, t, tk, dim, cdim, heads) = (2, QUERY_BLOCK + 45, 7, 8, 6, 2);
        let vb = builder(&[
            ("to_q.weight", vec![dim, dim], 1),
            ("to_k.weight", vec![dim, cdim], 2),
            ("to_v.weight", vec![dim, cdim], 3),
            ("to_out.0.weight", vec![dim, dim], 4),
            ("to_out.0.bias", vec![dim], 5),
        ]);
        let attention = Attention::new(vb, dim, cdim, heads).unwrap();
        let x = values(n * t * dim, 6);
        let context = values(n * tk * cdim, 7);
        let residual = values(n * t * dim, 8);
        let got = attention.forward(&x, &context, n, &residual);
        let project = |w: &[f32], rows: &[f32], k: usize| -> Vec<f32> {
            rows.chunks(k)
                .flat_map(|r| {
                    w.chunks(k)
                        .map(|wr| wr.iter().zip(r).map(|(a, b)| a * b).sum::<f32>())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let q = project(&values(dim * dim, 1), &x, dim);
        let k = project(&values(dim * cdim, 2), &context, cdim);
        let v = project(&values(dim * cdim, 3), &context, cdim);
        let d = dim / heads;
        let mut ctx = vec![0f32; n * t * dim];
        for b in 0..n {
            for h in 0..heads {
                for i in 0..t {
                    let qi = &q[(b * t + i) * dim + h * d..][..d];
                    let scores: Vec<f32> = (0..tk)
                        .map(|j| {
                            let kj = &k[(b * tk + j) * dim + h * d..][..d];
                            qi.iter().zip(kj).map(|(a, c)| a * c).sum::<f32>() / (d as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f32 = e.iter().sum();
                    for (j, p) in e.iter().enumerate() {
                        for c in 0..d {
                            ctx[(b * t + i) * dim + h * d + c] +=
                                p / total * v[(b * tk + j) * dim + h * d + c];
                        }
                    }
                }
            }
        }
        let out_w = values(dim * dim, 4);
        let out_b = values(dim, 5);
        for (row, (c, r)) in ctx.chunks(dim).zip(residual.chunks(dim)).enumerate() {
            for o in 0..dim {
                let want = out_b[o]
                    + r[o]
                    + out_w[o * dim..][..dim]
                        .iter()
                        .zip(c)
                        .map(|(a, b)| a * b)
                        .sum::<f32>();
                let got = got[row * dim + o];
                assert!((got - want).abs() < 1e-4, "row {row}: {got} vs {want}");
            }
        }
    }
}
