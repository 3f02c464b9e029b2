//! Activation rows rounded to 8-bit blocks before the dot products, exactly as llama.cpp's
//! x86 CPU backend rounds them (`ggml-cpu/arch/x86/quants.c`).
//! The portable code defines the numbers; on the AVX2 tiers the same operations run eight
//! values at a time (a maximum, a product and a round-to-even are exact whatever the order,
//! so the bits never depend on the tier). A prompt's rows are rounded over the compute
//! threads: its feed-forward input alone is `rows × 4864` values for Qwen2.5-0.5B.

use super::format::{ActFormat, QK, QK_K};
use super::Tier;
use half::f16;
use rayon::prelude::*;

/// From this many values a rounding is split over the compute threads.
const PARALLEL_VALUES: usize = 1 << 15;

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
        let tier = Tier::current();
        let round = |x: &[f32], out: Blocks<'_>| round_blocks(tier, format, x, out);
        let rows_per_part = if rows * k >= PARALLEL_VALUES && super::super::threads() > 1 {
            // A few parts per thread (a thread slowed by another process holds up less).
            rows.div_ceil(4 * super::super::threads()).max(1)
        } else {
            rows.max(1)
        };
        let values = rows_per_part * k;
        let blocks_per_part = values / block;
        let parts = Blocks::split(&mut acts, values, blocks_per_part);
        if rows_per_part < rows {
            x.par_chunks(values)
                .zip(parts)
                .for_each(|(x, out)| round(x, out));
        } else {
            x.chunks(values.max(1))
                .zip(parts)
                .for_each(|(x, out)| round(x, out));
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

/// The output of a run of whole blocks: values, scales, and the sums their format keeps.
struct Blocks<'a> {
    qs: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    bsums: &'a mut [i16],
}

impl<'a> Blocks<'a> {
    /// `acts`' storage in runs of `values` values (`blocks` blocks) each.
    fn split(acts: &'a mut Acts, values: usize, blocks: usize) -> Vec<Blocks<'a>> {
        let values = values.max(1);
        let blocks = blocks.max(1);
        let n = acts.qs.len().div_ceil(values);
        let mut d = acts.d.chunks_mut(blocks);
        let mut s = acts.s.chunks_mut(blocks);
        let mut bsums = acts.bsums.chunks_mut(values / 16);
        acts.qs
            .chunks_mut(values)
            .take(n)
            .map(|qs| Blocks {
                qs,
                d: d.next().unwrap_or_default(),
                s: s.next().unwrap_or_default(),
                bsums: bsums.next().unwrap_or_default(),
            })
            .collect()
    }
}

/// Rounds the whole blocks of `x` into `out` (the tier's code; the same bits on every tier).
fn round_blocks(tier: Tier, format: ActFormat, x: &[f32], out: Blocks<'_>) {
    #[cfg(target_arch = "x86_64")]
    if tier >= Tier::Avx2 {
        // SAFETY: the tier's features include AVX2 (`Tier::current` never exceeds what the
        // CPU has).
        unsafe { x86::round_blocks(format, x, out) };
        return;
    }
    let _ = tier;
    round_blocks_portable(format, x, out)
}

/// [`round_blocks`] in plain Rust: the definition of the numbers.
fn round_blocks_portable(format: ActFormat, x: &[f32], out: Blocks<'_>) {
    let block = match format {
        ActFormat::Q8K => QK_K,
        _ => QK,
    };
    for (b, (xs, qs)) in x
        .chunks_exact(block)
        .zip(out.qs.chunks_exact_mut(block))
        .enumerate()
    {
        match format {
            ActFormat::Q8_0 | ActFormat::Q8_1 => {
                let (d, sum) = round_q8_0(xs, qs);
                out.d[b] = f16::from_f32(d).to_f32();
                if format == ActFormat::Q8_1 {
                    // llama.cpp's `f16(d · Σ q)`, with the unrounded `d`.
                    out.s[b] = f16::from_f32(d * sum as f32).to_f32();
                }
            }
            ActFormat::Q8K => {
                out.d[b] = round_q8k(xs, qs);
                sums_of_16(qs, &mut out.bsums[b * 16..b * 16 + 16]);
            }
        }
    }
}

/// `Σ q` of each 16 values.
#[inline(always)]
fn sums_of_16(qs: &[i8], sums: &mut [i16]) {
    for (group, sum) in qs.chunks_exact(16).zip(sums) {
        *sum = group.iter().map(|&q| q as i16).sum();
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

/// The rounding eight values at a time (AVX2).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{f16, sums_of_16, ActFormat, Blocks, QK, QK_K};
    use std::arch::x86_64::*;

    /// `max(m, |x|)` over eight values at `p`, NaNs skipped (as `f32::max` skips them:
    /// `maxps` returns its second operand when either is NaN).
    #[inline(always)]
    unsafe fn abs_max(p: *const f32, m: __m256) -> __m256 {
        let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), _mm256_loadu_ps(p));
        _mm256_max_ps(abs, m)
    }

    /// The largest lane (exact in any order).
    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)))
    }

    /// `round(x · scale)` of eight values at `p`, ties to even, as `i32`; with `cap`, at most
    /// 127 (a NaN becomes 127, as `f32::min` makes it), else NaN becomes 0 (as `as i8` does).
    #[inline(always)]
    unsafe fn rounded<const CAP: bool>(p: *const f32, scale: __m256) -> __m256i {
        let v = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(_mm256_loadu_ps(p), scale),
        );
        let v = if CAP {
            _mm256_min_ps(v, _mm256_set1_ps(127.0))
        } else {
            _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_ORD_Q>(v, v))
        };
        _mm256_cvtps_epi32(v)
    }

    /// Thirty-two `i32` values (within `i8`'s range) stored as bytes at `q`, in order.
    #[inline(always)]
    unsafe fn store_32(q: *mut i8, v: [__m256i; 4]) {
        let ab = _mm256_packs_epi32(v[0], v[1]);
        let cd = _mm256_packs_epi32(v[2], v[3]);
        let bytes = _mm256_packs_epi16(ab, cd);
        let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.cast(), ordered);
    }

    /// The sum of eight `i32` lanes.
    #[inline(always)]
    unsafe fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01)))
    }

    /// [`super::round_blocks_portable`], eight values at a time.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn round_blocks(format: ActFormat, x: &[f32], out: Blocks<'_>) {
        match format {
            ActFormat::Q8_0 | ActFormat::Q8_1 => {
                let blocks = x.len() / QK;
                assert!(out.qs.len() >= blocks * QK && out.d.len() >= blocks);
                let with_sum = format == ActFormat::Q8_1;
                assert!(!with_sum || out.s.len() >= blocks);
                for b in 0..blocks {
                    let p = x.as_ptr().add(b * QK);
                    let mut m = _mm256_setzero_ps();
                    for i in 0..4 {
                        m = abs_max(p.add(8 * i), m);
                    }
                    let amax = hmax(m);
                    let d = amax / 127.0;
                    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
                    let v: [__m256i; 4] =
                        std::array::from_fn(|i| rounded::<false>(p.add(8 * i), id));
                    store_32(out.qs.as_mut_ptr().add(b * QK), v);
                    out.d[b] = f16::from_f32(d).to_f32();
                    if with_sum {
                        let sum = hsum_i32(_mm256_add_epi32(
                            _mm256_add_epi32(v[0], v[1]),
                            _mm256_add_epi32(v[2], v[3]),
                        ));
                        out.s[b] = f16::from_f32(d * sum as f32).to_f32();
                    }
                }
            }
            ActFormat::Q8K => {
                let blocks = x.len() / QK_K;
                assert!(
                    out.qs.len() >= blocks * QK_K
                        && out.d.len() >= blocks
                        && out.bsums.len() >= blocks * 16
                );
                for b in 0..blocks {
                    let xs = &x[b * QK_K..(b + 1) * QK_K];
                    let p = xs.as_ptr();
                    let mut m = _mm256_setzero_ps();
                    for i in 0..QK_K / 8 {
                        m = abs_max(p.add(8 * i), m);
                    }
                    let amax = hmax(m);
                    let qs = &mut out.qs[b * QK_K..(b + 1) * QK_K];
                    if amax == 0.0 {
                        qs.fill(0);
                        out.d[b] = 0.0;
                        out.bsums[b * 16..b * 16 + 16].fill(0);
                        continue;
                    }
                    // The first value of that magnitude, with its sign (the portable scan's).
                    let max = *xs.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
                    let iscale = -127.0 / max;
                    let scale = _mm256_set1_ps(iscale);
                    for c in 0..QK_K / QK {
                        let v: [__m256i; 4] =
                            std::array::from_fn(|i| rounded::<true>(p.add(QK * c + 8 * i), scale));
                        store_32(qs.as_mut_ptr().add(QK * c), v);
                    }
                    out.d[b] = 1.0 / iscale;
                    sums_of_16(qs, &mut out.bsums[b * 16..b * 16 + 16]);
                }
            }
        }
    }
}
