//! Scaled dot-product attention over `f32` rows, a block of queries at a time: the scores of
//! [`QUERY_BLOCK`] queries by all keys are one product into a reused per-thread buffer, a row
//! softmax, and one product with the values written straight into the output's head columns.
//! A 4096-token self-attention (the UNet's first level, the VAE's mid-block at 512 px) thus
//! never holds a whole 4096 x 4096 score matrix, and heads and blocks run in parallel.
//!
//! Also the VAE's mid-block attention ([`VaeAttention`], diffusers' `Attention` with a group
//! norm, one head over all channels, biased projections), with q, k and v as one product.

use super::norm_linear::GroupNorm;
use super::ops::{weight, Conv};
use crate::kernels::{self, matmul_to, SharedMut, View};
use crate::Result;
use candle_nn::VarBuilder;
use rayon::prelude::*;
use std::cell::RefCell;

/// Queries per block of rows: scores of this many rows by all keys at a time.
pub const QUERY_BLOCK: usize = 256;

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Where queries, keys or values lie in a buffer of rows: row `r` of batch `b` is at
/// `offset + (b · rows + r) · stride`, head `h`'s columns `h · d ..` after it.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    /// The buffer.
    pub data: &'a [f32],
    /// Distance between rows.
    pub stride: usize,
    /// Column of head 0's first value.
    pub offset: usize,
}

impl Rows<'_> {
    fn view(&self, b: usize, rows: usize, r0: usize, head: usize, d: usize) -> View {
        View {
            offset: self.offset + (b * rows + r0) * self.stride + head * d,
            row_stride: self.stride,
            col_stride: 1,
        }
    }
}

/// `softmax(q kᵀ · scale) v` per batch row and head: `n` batch rows of `t` queries and `tk`
/// keys, `heads` heads of `d` values. Returns `n · t` rows of `heads · d` (heads side by side).
pub fn attend(
    n: usize,
    (t, tk): (usize, usize),
    (heads, d): (usize, usize),
    (q, k, v): (Rows, Rows, Rows),
    scale: f32,
) -> Vec<f32> {
    let dim = heads * d;
    let mut ctx = vec![0f32; n * t * dim];
    let out = SharedMut::new(&mut ctx);
    let blocks = t.div_ceil(QUERY_BLOCK);
    let job = |index: usize| {
        let (b, rest) = (index / (heads * blocks), index % (heads * blocks));
        let (head, block) = (rest / blocks, rest % blocks);
        let r0 = block * QUERY_BLOCK;
        let rows = QUERY_BLOCK.min(t - r0);
        SCORES.with(|s| {
            let mut scores = s.borrow_mut();
            if scores.len() < rows * tk {
                scores.resize(rows * tk, 0.0);
            }
            let scores = &mut scores[..rows * tk];
            let kv = k.view(b, tk, 0, head, d);
            kernels::matmul(
                (rows, d, tk),
                scores,
                View::rows(0, tk),
                q.data,
                q.view(b, t, r0, head, d),
                k.data,
                View {
                    offset: kv.offset,
                    row_stride: 1,
                    col_stride: kv.row_stride,
                },
                scale,
                false,
                false,
            );
            kernels::softmax_rows(scores, tk);
            // SAFETY: each job writes only its head's columns of its block of rows: jobs
            // never overlap, and `ctx` is not otherwise used meanwhile.
            unsafe {
                matmul_to(
                    (rows, tk, d),
                    out,
                    View {
                        offset: (b * t + r0) * dim + head * d,
                        row_stride: dim,
                        col_stride: 1,
                    },
                    scores,
                    View::rows(0, tk),
                    v.data,
                    v.view(b, tk, 0, head, d),
                    1.0,
                    false,
                    false,
                );
            }
        });
    };
    let jobs = n * heads * blocks;
    if kernels::threads() == 1 || jobs == 1 {
        (0..jobs).for_each(job);
    } else {
        (0..jobs).into_par_iter().for_each(job);
    }
    ctx
}

/// The VAE mid-block's attention: group norm, q / k / v (one product: their weights are
/// stacked), one head over all channels, the output projection plus the input. Weights named
/// `to_q` / `to_k` / `to_v` / `to_out.0` (diffusers today) or `query` / `key` / `value` /
/// `proj_attn` (older files), each `[c, c]` or `[c, c, 1, 1]`.
pub struct VaeAttention {
    norm: GroupNorm,
    qkv: Conv,
    out: Conv,
    channels: usize,
}

impl VaeAttention {
    /// Builds it for `channels` channels, `groups` normalisation groups, `eps`.
    pub fn new(vb: VarBuilder, channels: usize, groups: usize, eps: f64) -> Result<Self> {
        let names = if vb.contains_tensor("to_q.weight") {
            ["to_q", "to_k", "to_v", "to_out.0"]
        } else {
            ["query", "key", "value", "proj_attn"]
        };
        let read = |name: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            let vb = vb.pp(name);
            let w = if vb.get((channels, channels), "weight").is_ok() {
                weight(&vb, &[channels, channels], "weight")?
            } else {
                weight(&vb, &[channels, channels, 1, 1], "weight")?
            };
            Ok((w, weight(&vb, &[channels], "bias")?))
        };
        let (mut w, mut b) = (Vec::new(), Vec::new());
        for name in &names[..3] {
            let (wi, bi) = read(name)?;
            w.extend(wi);
            b.extend(bi);
        }
        let (wo, bo) = read(names[3])?;
        Ok(VaeAttention {
            norm: GroupNorm::new(vb.pp("group_norm"), groups, channels, eps)?,
            qkv: Conv::pointwise(w, b, channels, 3 * channels),
            out: Conv::pointwise(wo, bo, channels, channels),
            channels,
        })
    }

    /// The block on `x` (`n` x channels x `t` pixels, NCHW), residual included.
    pub fn forward_values(&self, x: &[f32], n: usize, t: usize) -> Vec<f32> {
        let c = self.channels;
        let normed = self.norm.forward_values(x, n, t, false);
        let qkv = self.qkv.tokens_from_planes(&normed, n, t);
        drop(normed);
        let rows = |offset| Rows {
            data: &qkv,
            stride: 3 * c,
            offset,
        };
        let ctx = attend(
            n,
            (t, t),
            (1, c),
            (rows(0), rows(c), rows(2 * c)),
            1.0 / (c as f32).sqrt(),
        );
        drop(qkv);
        self.out.planes_from_tokens(&ctx, n, t, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ops::tests::{builder, values};

    /// The VAE attention matches group norm, then softmax(q kᵀ / √c) v with one head, then
    /// the output projection plus the input, computed directly, over more pixels than one
    /// block of queries.
    #[test]
    fn vae_attention_matches_the_direct_formula() {
        let (n, c, groups, t) = (2, 8, 2, QUERY_BLOCK + 13);
        let mut tensors: Vec<(String, Vec<usize>, u64)> = vec![
            ("group_norm.weight".into(), vec![c], 1),
            ("group_norm.bias".into(), vec![c], 2),
        ];
        for (i, name) in ["to_q", "to_k", "to_v", "to_out.0"].iter().enumerate() {
            let seed = 10 + 2 * i as u64;
            tensors.push((format!("{name}.weight"), vec![c, c], seed));
            tensors.push((format!("{name}.bias"), vec![c], seed + 1));
        }
        let tensors: Vec<(&str, Vec<usize>, u64)> = tensors
            .iter()
            .map(|(name, shape, seed)| (name.as_str(), shape.clone(), *seed))
            .collect();
        let block = VaeAttention::new(builder(&tensors), c, groups, 1e-6).unwrap();
        let x = values(n * c * t, 3);
        let got = block.forward_values(&x, n, t);
        let (gamma, beta) = (values(c, 1), values(c, 2));
        let per = c / groups;
        for b in 0..n {
            let xb = &x[b * c * t..][..c * t];
            // Group norm, then pixel-major tokens.
            let mut normed = vec![0f32; c * t];
            for g in 0..groups {
                let xs = &xb[g * per * t..][..per * t];
                let mean = xs.iter().sum::<f32>() / xs.len() as f32;
                let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / xs.len() as f32;
                for (i, v) in xs.iter().enumerate() {
                    let ch = g * per + i / t;
                    normed[(g * per) * t + i] =
                        (v - mean) / (var + 1e-6).sqrt() * gamma[ch] + beta[ch];
                }
            }
            let token = |p: usize| (0..c).map(|ch| normed[ch * t + p]).collect::<Vec<_>>();
            let project = |seed: u64, x: &[f32]| -> Vec<f32> {
                let (w, bias) = (values(c * c, seed), values(c, seed + 1));
                (0..c)
                    .map(|o| bias[o] + (0..c).map(|i| w[o * c + i] * x[i]).sum::<f32>())
                    .collect()
            };
            let q: Vec<Vec<f32>> = (0..t).map(|p| project(10, &token(p))).collect();
            let k: Vec<Vec<f32>> = (0..t).map(|p| project(12, &token(p))).collect();
            let v: Vec<Vec<f32>> = (0..t).map(|p| project(14, &token(p))).collect();
            for p in 0..t {
                let scores: Vec<f32> = k
                    .iter()
                    .map(|kj| {
                        q[p].iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() / (c as f32).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f32 = e.iter().sum();
                let ctx: Vec<f32> = (0..c)
                    .map(|ch| e.iter().zip(&v).map(|(w, vj)| w * vj[ch]).sum::<f32>() / total)
                    .collect();
                let out = project(16, &ctx);
                for ch in 0..c {
                    let want = out[ch] + xb[ch * t + p];
                    let got = got[b * c * t + ch * t + p];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "b{b} p{p} c{ch}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
