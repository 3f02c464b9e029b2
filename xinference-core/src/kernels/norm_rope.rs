//! The decoder's RMS norm and rotary rotation over row-major `f32` slices, in place: rows
//! spread over the pool when there are many, AVX2/FMA code chosen at run time (see [`super`]).
//! Each comes in two roundings: llama.cpp's CPU backend's (the GGUF path, compared with
//! llama.cpp) and candle's (the f32 path of safetensors checkpoints, compared with
//! transformers; these were the ops it ran before, so its bits are unchanged).

use super::{threads, PARALLEL_CHUNK};
use rayon::prelude::*;

/// Whose rounding an RMS norm or a rotation follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// llama.cpp's CPU backend. RMS norm (`ggml_rms_norm`, then `ggml_mul`): the f32 squares
    /// summed in order in f64, their mean rounded to f32, `scale = 1 / sqrtf(mean + eps)`, then
    /// `x · scale · w`. Rotation (`rotate_pairs`, as GCC contracts it): `fma(x0, cos, -(x1 ·
    /// sin))` and `fma(x0, sin, x1 · cos)`.
    Ggml,
    /// candle's `rms_norm` (an f32 sum in order, `x / sqrt(mean + eps) · w`) and `rope` /
    /// `rope_i` (`x0 · cos - x1 · sin`, `x0 · sin + x1 · cos`, unfused).
    Candle,
}

impl Rounding {
    /// candle's for the exact f32 path (safetensors, compared with transformers), llama.cpp's
    /// otherwise (GGUF).
    pub fn exact_or_ggml(exact: bool) -> Self {
        if exact {
            Rounding::Candle
        } else {
            Rounding::Ggml
        }
    }
}

/// RMS norm of each row of `xs` (rows of `weight.len()` values) times `weight`, in place.
pub fn rms_norm(xs: &mut [f32], weight: &[f32], eps: f32, rounding: Rounding) {
    let width = weight.len().max(1);
    let run = |piece: &mut [f32]| match rounding {
        Rounding::Ggml => rms_norm_ggml(piece, weight, eps),
        Rounding::Candle => rms_norm_candle(piece, weight, eps),
    };
    let rows_per_piece = (PARALLEL_CHUNK / width).max(1);
    if xs.len() <= PARALLEL_CHUNK || threads() == 1 {
        run(xs);
    } else {
        xs.par_chunks_mut(rows_per_piece * width).for_each(run);
    }
}

multiversioned! {
    fn rms_norm_ggml(xs: &mut [f32], weight: &[f32], eps: f32) {
        let width = weight.len();
        for row in xs.chunks_exact_mut(width) {
            // In order, as ggml's loop (no reassociation): the squares vectorise, the sum not.
            let sum: f64 = row.iter().map(|&v| f64::from(v * v)).sum();
            let mean = (sum / width as f64) as f32;
            let scale = 1.0 / (mean + eps).sqrt();
            for (x, w) in row.iter_mut().zip(weight) {
                *x = *x * scale * w;
            }
        }
    }
}

multiversioned! {
    fn rms_norm_candle(xs: &mut [f32], weight: &[f32], eps: f32) {
        let width = weight.len();
        for row in xs.chunks_exact_mut(width) {
            let sum: f32 = row.iter().map(|&v| v * v).sum();
            let m = (sum / width as f32 + eps).sqrt();
            for (x, w) in row.iter_mut().zip(weight) {
                *x = *x / m * w;
            }
        }
    }
}

/// Rotates, in place, every head of `xs` (positions × `heads` × `head_dim` values) by its
/// position's angles: `cos` and `sin` hold one row of `half` values per position (`half`
/// pairs of each head turn). Pairs are `(i, i + half)` when `neox`, else `(2i, 2i + 1)`; a
/// head's values past `2 · half` pass unchanged (partial rotary).
pub fn rotate_pairs(
    xs: &mut [f32],
    (heads, head_dim): (usize, usize),
    (cos, sin, half): (&[f32], &[f32], usize),
    neox: bool,
    rounding: Rounding,
) {
    let width = heads * head_dim;
    if width == 0 || half == 0 {
        return;
    }
    assert!(
        2 * half <= head_dim
            && xs.len().is_multiple_of(width)
            && cos.len() >= xs.len() / width * half
            && sin.len() >= xs.len() / width * half,
        "rotary of {} values ({heads} x {head_dim} a position) by {} angles of {half}",
        xs.len(),
        cos.len()
    );
    let fused = rounding == Rounding::Ggml;
    let angles = xs.len() / width * half;
    let (cos, sin) = (&cos[..angles], &sin[..angles]);
    let run = |(x, (c, s)): (&mut [f32], (&[f32], &[f32]))| {
        rotate_positions(x, (heads, head_dim), c, s, half, neox, fused)
    };
    let per_piece = (PARALLEL_CHUNK / width).max(1);
    if xs.len() <= PARALLEL_CHUNK || threads() == 1 {
        run((xs, (cos, sin)));
    } else {
        xs.par_chunks_mut(per_piece * width)
            .zip(
                cos.par_chunks(per_piece * half)
                    .zip(sin.par_chunks(per_piece * half)),
            )
            .for_each(run);
    }
}

multiversioned! {
    fn rotate_positions(
        xs: &mut [f32],
        shape: (usize, usize),
        cos: &[f32],
        sin: &[f32],
        half: usize,
        neox: bool,
        fused: bool
    ) {
        match (neox, fused) {
            (true, true) => rotate::<true, true>(xs, shape, cos, sin, half),
            (true, false) => rotate::<true, false>(xs, shape, cos, sin, half),
            (false, true) => rotate::<false, true>(xs, shape, cos, sin, half),
            (false, false) => rotate::<false, false>(xs, shape, cos, sin, half),
        }
    }
}

/// [`rotate_positions`] for one pairing and rounding, so that the inner loops carry no branch.
#[inline(always)]
fn rotate<const NEOX: bool, const FUSED: bool>(
    xs: &mut [f32],
    (heads, head_dim): (usize, usize),
    cos: &[f32],
    sin: &[f32],
    half: usize,
) {
    let turn = |x0: f32, x1: f32, c: f32, s: f32| {
        if FUSED {
            (x0.mul_add(c, -(x1 * s)), x0.mul_add(s, x1 * c))
        } else {
            (x0 * c - x1 * s, x0 * s + x1 * c)
        }
    };
    for (p, position) in xs.chunks_exact_mut(heads * head_dim).enumerate() {
        let (c, s) = (&cos[p * half..][..half], &sin[p * half..][..half]);
        for head in position.chunks_exact_mut(head_dim) {
            if NEOX {
                let (a, b) = head[..2 * half].split_at_mut(half);
                for (((x0, x1), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(c).zip(s) {
                    (*x0, *x1) = turn(*x0, *x1, c, s);
                }
            } else {
                for ((pair, &c), &s) in head[..2 * half].chunks_exact_mut(2).zip(c).zip(s) {
                    (pair[0], pair[1]) = turn(pair[0], pair[1], c, s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Values with Gemma-like spread (1e-3 beside 1e4), deterministic.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = ((i * 7919 + seed * 104_729) % 1009) as f32 / 504.5 - 1.0;
                if i % 97 == 3 {
                    v * 1e4
                } else {
                    v * (1.0 + (i % 5) as f32)
                }
            })
            .collect()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Both roundings, on few rows and on enough rows to run on the pool: candle's are the bits
    /// of candle's `rms_norm`, llama.cpp's the bits of ggml's loop written out plainly.
    #[test]
    fn rms_norm_gives_candles_and_ggmls_bits() {
        let width = 576;
        let weight = values(width, 1);
        for rows in [1, 7, 300] {
            let xs = values(rows * width, 2);
            let mut ours = xs.clone();
            rms_norm(&mut ours, &weight, 1e-5, Rounding::Candle);
            let device = Device::Cpu;
            let x = Tensor::from_vec(xs.clone(), (rows, width), &device).unwrap();
            let w = Tensor::from_vec(weight.clone(), width, &device).unwrap();
            let want = flat(&candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap());
            assert_eq!(ours, want, "candle's rounding, {rows} rows");

            let mut ours = xs.clone();
            rms_norm(&mut ours, &weight, 1e-6, Rounding::Ggml);
            let mut want = xs.clone();
            for row in want.chunks_exact_mut(width) {
                let mut sum = 0f64;
                for &v in row.iter() {
                    sum += (v * v) as f64;
                }
                let mean = (sum / width as f64) as f32;
                let scale = 1.0f32 / (mean + 1e-6).sqrt();
                for (y, w) in row.iter_mut().zip(&weight) {
                    *y = (*y * scale) * w;
                }
            }
            assert_eq!(ours, want, "ggml's rounding, {rows} rows");
        }
    }

    /// candle's rounding is the bits of candle's `rope` (NEOX) and `rope_i` (interleaved) on
    /// `[1, heads, positions, head_dim]`; llama.cpp's the fused formula; a partial rotary
    /// keeps the values past the rotated ones; few and many positions alike.
    #[test]
    fn rotation_gives_candles_and_ggmls_bits() {
        let device = Device::Cpu;
        let (heads, head_dim) = (3, 16);
        for (positions, half) in [(1, 8), (5, 8), (400, 8), (6, 4)] {
            let xs = values(positions * heads * head_dim, 3);
            let angles: Vec<f32> = (0..positions * half)
                .map(|i| (i / half) as f32 * 0.37 / (1.0 + (i % half) as f32))
                .collect();
            let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
            let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
            for neox in [true, false] {
                let rotated = |rounding| {
                    let mut ours = xs.clone();
                    rotate_pairs(
                        &mut ours,
                        (heads, head_dim),
                        (&cos, &sin, half),
                        neox,
                        rounding,
                    );
                    ours
                };
                let ours = rotated(Rounding::Candle);
                // candle's layout: [1, heads, positions, head_dim], rotated part only.
                let x = Tensor::from_vec(xs.clone(), (1, positions, heads, head_dim), &device)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap();
                let turned = x.narrow(3, 0, 2 * half).unwrap().contiguous().unwrap();
                let c = Tensor::from_vec(cos.clone(), (positions, half), &device).unwrap();
                let s = Tensor::from_vec(sin.clone(), (positions, half), &device).unwrap();
                let turned = if neox {
                    candle_nn::rotary_emb::rope(&turned, &c, &s).unwrap()
                } else {
                    candle_nn::rotary_emb::rope_i(&turned, &c, &s).unwrap()
                };
                let kept = x.narrow(3, 2 * half, head_dim - 2 * half).unwrap();
                let want = Tensor::cat(&[&turned, &kept], 3).unwrap();
                let want = flat(&want.transpose(1, 2).unwrap());
                assert_eq!(ours, want, "candle's, {positions}x{half}, neox {neox}");

                let ours = rotated(Rounding::Ggml);
                let mut want = xs.clone();
                for (r, head) in want.chunks_exact_mut(head_dim).enumerate() {
                    let p = r / heads;
                    for i in 0..half {
                        let (a, b) = if neox {
                            (i, i + half)
                        } else {
                            (2 * i, 2 * i + 1)
                        };
                        let (x0, x1) = (head[a], head[b]);
                        let (c, s) = (cos[p * half + i], sin[p * half + i]);
                        head[a] = x0.mul_add(c, -(x1 * s));
                        head[b] = x0.mul_add(s, x1 * c);
                    }
                }
                assert_eq!(ours, want, "ggml's, {positions}x{half}, neox {neox}");
            }
        }
    }
}
