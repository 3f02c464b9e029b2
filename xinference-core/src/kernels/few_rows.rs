//! Products of a few rows (decoder steps: one row per sequence) by a weight matrix stored
//! `[n, k]` as f32, or as f16 converted to f32 on the fly (exactly: every f16 is an f32), with
//! the output columns split over the compute pool.
//!
//! A few rows are bound by reading the weights, so f16 storage halves the time of a product
//! whose weights came as f16 (CTranslate2's Whisper files) without changing a bit of its
//! result. Every output is one dot product of an input row with a weight row, accumulated as
//! [`super::linear_streamed`] does (eight running sums over `k`, then the tail), so a row comes
//! out the same whatever the other rows, the weights' storage, and the split.

use super::{threads, SharedMut};
use half::f16;
use rayon::prelude::*;

/// A weight matrix `[n, k]`, row-major.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values, converted to f32 as they are read.
    F16(&'a [f16]),
}

impl Weights<'_> {
    fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::F16(w) => w.len(),
        }
    }
}

/// Weight values from which a product's columns are split over the pool.
const PARALLEL_VALUES: usize = 1 << 15;

/// `out[m×n] += x[m×k] · wᵀ`. Columns are spread over the pool when the matrix is large enough:
/// call it from a pool thread ([`super::on_pool`]) so that the split costs no sleep and wake of
/// the caller.
pub fn few_rows_product(
    out: &mut [f32],
    x: &[f32],
    w: Weights<'_>,
    (m, k, n): (usize, usize, usize),
) {
    assert!(out.len() >= m * n && x.len() >= m * k && w.len() >= n * k);
    if m == 0 || n == 0 {
        return;
    }
    let shared = SharedMut::new(out);
    let threads = threads();
    // A few parts per thread, so that a thread slowed by another process does not hold up the
    // product; whole groups of four columns each.
    let parts = if threads > 1 && n * k >= PARALLEL_VALUES {
        (threads * 4).min(n.div_ceil(16)).max(1)
    } else {
        1
    };
    let per_part = n.div_ceil(parts).next_multiple_of(4);
    let run = |part: usize| {
        let first = (part * per_part).min(n);
        let last = (first + per_part).min(n);
        // SAFETY: each part writes only its own columns of `out` (m × n values, checked).
        unsafe { columns(shared, x, w, (m, k, n), first, last) };
    };
    if parts > 1 {
        (0..parts).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// Columns `first..last` of [`few_rows_product`].
///
/// # Safety
/// `out` must hold `m × n` values, `x` `m × k`, `w` `n × k`, and no other thread may touch
/// these columns of `out` meanwhile.
unsafe fn columns(
    out: SharedMut,
    x: &[f32],
    w: Weights<'_>,
    (m, k, n): (usize, usize, usize),
    first: usize,
    last: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU has the features; the caller vouches for the bounds.
        match w {
            Weights::F32(w) => {
                avx2::columns_f32(out.0, x.as_ptr(), w.as_ptr(), (m, k, n), first, last)
            }
            Weights::F16(w) => {
                avx2::columns_f16(out.0, x.as_ptr(), w.as_ptr(), (m, k, n), first, last)
            }
        }
        return;
    }
    for c in first..last {
        for r in 0..m {
            let xrow = &x[r * k..(r + 1) * k];
            let dot: f32 = match w {
                Weights::F32(w) => xrow
                    .iter()
                    .zip(&w[c * k..(c + 1) * k])
                    .map(|(a, b)| a * b)
                    .sum(),
                Weights::F16(w) => xrow
                    .iter()
                    .zip(&w[c * k..(c + 1) * k])
                    .map(|(a, b)| a * b.to_f32())
                    .sum(),
            };
            *out.0.add(r * n + c) += dot;
        }
    }
}

/// AVX2 + FMA (+ F16C for f16 weights) tiles: `R` rows by `C` columns of running sums.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use half::f16;
    use std::arch::x86_64::*;

    /// Sum of the eight lanes (in the order of `kernels::avx2::hsum`).
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    /// Defines `$columns`, the column loop over weights of type `$t` read eight at a time by
    /// `$load`, and its tile `$tile`.
    macro_rules! kernel {
        ($tile:ident, $columns:ident, $t:ty, |$p:ident| $load:expr, |$v:ident| $one:expr) => {
            /// `out[r0 + r, c + j] += x[r0 + r] · w[c + j]` for `R` rows and `C` columns.
            #[target_feature(enable = "avx2,fma,f16c")]
            #[inline]
            unsafe fn $tile<const R: usize, const C: usize>(
                out: *mut f32,
                x: *const f32,
                w: *const $t,
                (k, n): (usize, usize),
                (r0, c): (usize, usize),
            ) {
                let body = k / 8 * 8;
                let xs: [*const f32; R] = std::array::from_fn(|r| x.add((r0 + r) * k));
                let ws: [*const $t; C] = std::array::from_fn(|j| w.add((c + j) * k));
                let mut acc = [[_mm256_setzero_ps(); C]; R];
                let mut i = 0;
                while i < body {
                    if (i * std::mem::size_of::<$t>()) % 64 == 0 {
                        // The next tile's weight rows, on their way from memory.
                        for p in ws {
                            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(C * k + i) as *const i8);
                        }
                    }
                    let mut wv = [_mm256_setzero_ps(); C];
                    for j in 0..C {
                        let $p = ws[j].add(i);
                        wv[j] = $load;
                    }
                    for r in 0..R {
                        let xv = _mm256_loadu_ps(xs[r].add(i));
                        for j in 0..C {
                            acc[r][j] = _mm256_fmadd_ps(xv, wv[j], acc[r][j]);
                        }
                    }
                    i += 8;
                }
                for r in 0..R {
                    for j in 0..C {
                        let tail: f32 = (body..k)
                            .map(|t| {
                                let $v = *ws[j].add(t);
                                *xs[r].add(t) * $one
                            })
                            .sum();
                        *out.add((r0 + r) * n + c + j) += hsum(acc[r][j]) + tail;
                    }
                }
            }

            /// Columns `first..last`: four at a time for one or two rows, two at a time for
            /// more (rows by fours), the last ones one at a time.
            ///
            /// # Safety
            /// The CPU must have AVX2, FMA and F16C; `out` holds `m × n`, `x` `m × k`, `w`
            /// `n × k` values; no other thread touches these columns of `out` meanwhile.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub unsafe fn $columns(
                out: *mut f32,
                x: *const f32,
                w: *const $t,
                (m, k, n): (usize, usize, usize),
                first: usize,
                last: usize,
            ) {
                let kn = (k, n);
                let width = if m <= 2 { 4 } else { 2 };
                let mut c = first;
                while c < last {
                    let cols = if c + width <= last { width } else { 1 };
                    let mut r0 = 0;
                    while r0 < m {
                        let rows = (m - r0).min(4);
                        let at = (r0, c);
                        match (rows, cols) {
                            (1, 4) => $tile::<1, 4>(out, x, w, kn, at),
                            (2, 4) => $tile::<2, 4>(out, x, w, kn, at),
                            (1, 2) => $tile::<1, 2>(out, x, w, kn, at),
                            (2, 2) => $tile::<2, 2>(out, x, w, kn, at),
                            (3, 2) => $tile::<3, 2>(out, x, w, kn, at),
                            (4, 2) => $tile::<4, 2>(out, x, w, kn, at),
                            (1, _) => $tile::<1, 1>(out, x, w, kn, at),
                            (2, _) => $tile::<2, 1>(out, x, w, kn, at),
                            (3, _) => $tile::<3, 1>(out, x, w, kn, at),
                            _ => $tile::<4, 1>(out, x, w, kn, at),
                        }
                        r0 += rows;
                    }
                    c += cols;
                }
            }
        };
    }

    kernel!(tile_f32, columns_f32, f32, |p| _mm256_loadu_ps(p), |v| v);
    kernel!(
        tile_f16,
        columns_f16,
        f16,
        |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
        |v| v.to_f32()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn f16_and_f32_weights_give_the_bits_of_linear_streamed_whatever_the_rows() {
        // k with a tail, n with odd columns, rows 1..=9 (every tile shape), a matrix big
        // enough to be split.
        let (k, n) = (203, 331);
        let w16: Vec<f16> = values(n * k, 7).into_iter().map(f16::from_f32).collect();
        let w32: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
        let x = values(9 * k, 3);
        for m in 1..=9 {
            let mut want = Vec::new();
            super::super::linear_streamed(&x[..m * k], &w32, None, &mut want, (m, k, n));
            for w in [Weights::F32(&w32), Weights::F16(&w16)] {
                let mut got = vec![0f32; m * n];
                super::super::on_pool(|| few_rows_product(&mut got, &x, w, (m, k, n)));
                assert_eq!(got, want, "{m} rows");
            }
            // Each row as alone.
            let mut alone = vec![0f32; n];
            few_rows_product(&mut alone, &x[(m - 1) * k..], Weights::F16(&w16), (1, k, n));
            assert_eq!(alone, want[(m - 1) * n..]);
        }
    }
}
