//! Activation rows rounded to 8-bit blocks before the dot products, exactly as llama.cpp's
//! x86 CPU backend rounds them (`ggml-cpu/arch/x86/quants.c`).
//! Plain scalar code on every CPU, so the rounding never depends on the tier.

use super::format::{ActFormat, QK, QK_K};
use half::f16;

/// Rows of activations rounded to one [`ActFormat`], stored as arrays per field.
#[derive(Debug, Clone)]
pub struct Acts {
    /// The format.
    pub format: ActFormat,
    /// Values per row.
    pub k: usize,
    /// The rounded values, `rows × k`.
    pub qs: Vec<i8>,
    /// The scale of each block (f16-rounded for Q8_0 / Q8_1), `rows × k / block`.
    pub d: Vec<f32>,
    /// Q8_1: `f16(d * Σ q)` per block; empty otherwise.
    pub s: Vec<f32>,
    /// Q8K: `Σ q` per 16 values, `rows × k / 16`; empty otherwise.
    pub bsums: Vec<i16>,
}

/// One row of [`Acts`].
#[derive(Debug, Clone, Copy)]
pub struct ActRow<'a> {
    /// The rounded values.
    pub qs: &'a [i8],
    /// Block scales.
    pub d: &'a [f32],
    /// Q8_1 block sums times scale.
    pub s: &'a [f32],
    /// Q8K sums per 16 values.
    pub bsums: &'a [i16],
}

impl Acts {
    /// Rounds `rows` rows of `k` values (`x` is `rows × k`); `k` must be a multiple of the
    /// format's block.
    pub fn quantize(format: ActFormat, x: &[f32], k: usize) -> Self {
        let rows = x.len().checked_div(k).unwrap_or(0);
        let block = match format {
            ActFormat::Q8K => QK_K,
            _ => QK,
        };
        assert!(
            k.is_multiple_of(block) && rows * k == x.len(),
            "{k} values do not fill blocks"
        );
        let blocks = rows * k / block;
        let mut acts = Acts {
            format,
            k,
            qs: vec![0; rows * k],
            d: vec![0.0; blocks],
            s: if format == ActFormat::Q8_1 {
                vec![0.0; blocks]
            } else {
                Vec::new()
            },
            bsums: if format == ActFormat::Q8K {
                vec![0; rows * k / 16]
            } else {
                Vec::new()
            },
        };
        for (b, (xs, qs)) in x
            .chunks_exact(block)
            .zip(acts.qs.chunks_exact_mut(block))
            .enumerate()
        {
            match format {
                ActFormat::Q8_0 | ActFormat::Q8_1 => {
                    let (d, sum) = round_q8_0(xs, qs);
                    acts.d[b] = f16::from_f32(d).to_f32();
                    if format == ActFormat::Q8_1 {
                        // llama.cpp's `f16(d · Σ q)`, with the unrounded `d`.
                        acts.s[b] = f16::from_f32(d * sum as f32).to_f32();
                    }
                }
                ActFormat::Q8K => {
                    acts.d[b] = round_q8k(xs, qs);
                    for (g, group) in qs.chunks_exact(16).enumerate() {
                        acts.bsums[b * 16 + g] = group.iter().map(|&q| q as i16).sum();
                    }
                }
            }
        }
        acts
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.qs.len().checked_div(self.k).unwrap_or(0)
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> ActRow<'_> {
        let k = self.k;
        let per_block = match self.format {
            ActFormat::Q8K => QK_K,
            _ => QK,
        };
        let nb = k / per_block;
        ActRow {
            qs: &self.qs[r * k..(r + 1) * k],
            d: &self.d[r * nb..(r + 1) * nb],
            s: if self.s.is_empty() {
                &[]
            } else {
                &self.s[r * nb..(r + 1) * nb]
            },
            bsums: if self.bsums.is_empty() {
                &[]
            } else {
                &self.bsums[r * k / 16..(r + 1) * k / 16]
            },
        }
    }
}

/// llama.cpp's x86 `quantize_row_q8_0` / `quantize_row_q8_1` for one block:
/// `d = max|x| / 127`, `q = round(x · (127 / max|x|))`, ties to even. Returns the unrounded
/// `d` and `Σ q`.
fn round_q8_0(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, x) in qs.iter_mut().zip(xs) {
        *q = (x * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    (d, sum)
}

/// llama.cpp's `quantize_row_q8_K_ref` for one block of 256 (`nearest_int`: ties to even).
/// Returns the scale.
fn round_q8k(xs: &[f32], qs: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &x in xs {
        if amax < x.abs() {
            amax = x.abs();
            max = x;
        }
    }
    if amax == 0.0 {
        qs.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, x) in qs.iter_mut().zip(xs) {
        *q = (iscale * x).round_ties_even().min(127.0) as i8;
    }
    1.0 / iscale
}
