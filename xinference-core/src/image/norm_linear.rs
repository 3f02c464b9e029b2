//! The UNet's and VAE's layers that are not convolutions: group normalisation (optionally with
//! SiLU) and linear layers, over plain `f32` buffers, beside the convolutions of `ops.rs`.

use super::ops::weight;
use super::packed::{rhs_product, Packed, Rows};
use super::pool;
use crate::kernels;
use crate::{Error, Result};
use candle_nn::VarBuilder;

/// Group normalisation with a per-channel affine transform, optionally followed by SiLU.
pub struct GroupNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    groups: usize,
    eps: f32,
}

impl GroupNorm {
    /// Reads `weight` and `bias` (`channels` each) under `vb`.
    pub fn new(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::bad_request(format!(
                "{channels} channels do not split into {groups} normalisation groups"
            )));
        }
        Ok(GroupNorm {
            gamma: weight(&vb, &[channels], "weight")?,
            beta: weight(&vb, &[channels], "bias")?,
            groups,
            eps: eps as f32,
        })
    }

    /// The normalised `x` (`n` batch rows of channels x `plane` values), SiLU'd if `silu`.
    pub fn forward_values(&self, x: &[f32], n: usize, plane: usize, silu: bool) -> Vec<f32> {
        let c = self.gamma.len();
        // Every value is written.
        let mut out = pool::take(n * c * plane);
        for (xb, ob) in x
            .chunks_exact(c * plane)
            .zip(out.chunks_exact_mut(c * plane))
        {
            kernels::group_norm(
                xb,
                ob,
                (&self.gamma, &self.beta),
                self.groups,
                plane,
                self.eps,
                silu,
            );
        }
        out
    }
}

/// A linear layer, weight `[out, in]` as PyTorch stores it.
pub struct Linear {
    /// Packed once at load for [`rhs_product`].
    weight: Packed,
    bias: Option<Vec<f32>>,
    cin: usize,
    cout: usize,
}

impl Linear {
    /// Reads `weight` (and `bias` when `bias`) under `vb`.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, bias: bool) -> Result<Self> {
        Ok(Linear {
            weight: Packed::rhs(&weight(&vb, &[cout, cin], "weight")?, cout, cin),
            bias: if bias {
                Some(weight(&vb, &[cout], "bias")?)
            } else {
                None
            },
            cin,
            cout,
        })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.cout
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.cin
    }

    /// `x` (rows of `cin`) times the transposed weight, plus the bias and `residual`.
    pub fn forward_values(&self, x: &[f32], residual: Option<&[f32]>) -> Vec<f32> {
        let (rows, n) = (x.len() / self.cin, self.cout);
        let mut out = match residual {
            Some(r) => r[..rows * n].to_vec(),
            None => vec![0f32; rows * n],
        };
        if let Some(bias) = &self.bias {
            for row in out.chunks_exact_mut(n) {
                row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
            }
        }
        rhs_product(
            x,
            Rows::new(0, self.cin),
            rows,
            &self.weight,
            &mut out,
            Rows::new(0, n),
            true,
            true,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ops::tests::{builder, values};

    #[test]
    fn group_norm_with_silu_matches_the_definition() {
        let (n, c, groups, plane) = (2, 6, 3, 5);
        let vb = builder(&[("weight", vec![c], 1), ("bias", vec![c], 2)]);
        let norm = GroupNorm::new(vb, groups, c, 1e-5).unwrap();
        let (gamma, beta) = (values(c, 1), values(c, 2));
        let x = values(n * c * plane, 3);
        let got = norm.forward_values(&x, n, plane, true);
        let per = c / groups * plane;
        for (g, xs) in x.chunks(per).enumerate() {
            let mean = xs.iter().sum::<f32>() / per as f32;
            let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / per as f32;
            for (i, v) in xs.iter().enumerate() {
                let ch = (g % groups) * (c / groups) + i / plane;
                let y = (v - mean) / (var + 1e-5).sqrt() * gamma[ch] + beta[ch];
                let want = y / (1.0 + (-y).exp());
                let got = got[g * per + i];
                assert!((got - want).abs() < 1e-5, "{got} vs {want}");
            }
        }
    }
}
