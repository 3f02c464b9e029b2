//! The two products of attention over an f16 KV cache, as llama.cpp's CPU backend computes them
//! (without flash attention): query · key over f16 values (the query rounded to f16, as ggml
//! rounds the `kq` product's f32 operand to its f16 `vec_dot_type`), and the f16-rounded
//! attention weights times the f16 values. Both multiply two f16 numbers, whose product is
//! exact in f32, and add in f32 in a fixed order: the AVX2/F16C kernels (chosen at run time, the
//! tier of [`Tier::current`]) and the portable ones give the same bits.
//!
//! Rows are read in place from a cache laid out `[position][kv_head][head_dim]`: no copies for
//! grouped-query attention, each key and value row converted once for every query head of its
//! group.

use super::quant::scalar::hsum8;
use super::quant::Tier;
use half::f16;

/// Lanes of the fixed summation order of a dot product.
const LANES: usize = 8;

/// `out[j * n + t] = queries[j] · keys[t]` for the `queries.len() / dim` query rows and `n`
/// key rows, key row `t` being `keys[t * stride..][..dim]`. Each product sums the lanes of
/// eight-value chunks (the last one zero-padded), then the lanes ([`hsum8`]'s order). The
/// queries must hold f16 values (for the products to be exact, and the tiers to agree).
pub fn scores(queries: &[f32], dim: usize, keys: &[f16], stride: usize, out: &mut [f32]) {
    let rows = queries.len() / dim;
    let n = out.len() / rows.max(1);
    assert!(rows * dim == queries.len() && rows * n == out.len());
    if n == 0 {
        return;
    }
    assert!((n - 1) * stride + dim <= keys.len(), "keys out of bounds");
    #[cfg(target_arch = "x86_64")]
    if Tier::current() >= Tier::Avx2 {
        // SAFETY: the tier's features (AVX2, FMA, F16C) are on this CPU (`Tier::current` never
        // exceeds `Tier::best`); the bounds were checked above.
        unsafe { x86::scores(queries, dim, keys, stride, n, out) };
        return;
    }
    scores_portable(queries, dim, keys, stride, n, out);
}

/// `out[j][d] += Σ_t weights[j * n + t] · values[t][d]` (summed over `t` in order) for the
/// `out.len() / dim` weight rows of `n` values each, value row `t` being
/// `values[t * stride..][..dim]`. The weights must hold f16 values.
pub fn weighted_sum(weights: &[f32], values: &[f16], stride: usize, dim: usize, out: &mut [f32]) {
    let rows = out.len() / dim;
    let n = weights.len() / rows.max(1);
    assert!(rows * dim == out.len() && rows * n == weights.len());
    if n == 0 {
        return;
    }
    assert!(
        (n - 1) * stride + dim <= values.len(),
        "values out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    if Tier::current() >= Tier::Avx2 {
        // SAFETY: as in `scores`.
        unsafe { x86::weighted_sum(weights, values, stride, dim, n, out) };
        return;
    }
    weighted_sum_portable(weights, values, stride, dim, n, out);
}

/// The attention weights of one query row from its `scores`, in place, as llama.cpp's
/// `soft_max` computes them beside our products: each score times `scale`, `exp(x - max)`
/// (the maximum also over the head's `sink` logit, whose own `exp` joins the sum without a
/// value), the sum in f64 over eight running sums, each weight times `1 / sum`, rounded to f16
/// (`half` is scratch for that rounding). Plain loops that vectorise, compiled for AVX2 and for
/// the baseline: the same operations, so the same bits on every CPU.
pub fn softmax_f16(scores: &mut [f32], scale: f32, sink: Option<f32>, half: &mut Vec<f16>) {
    let sum = softmax_sum(scores, scale, sink.unwrap_or(f32::NEG_INFINITY));
    let inv = (1.0 / sum) as f32;
    scale_by(scores, inv);
    half.clear();
    half.resize(scores.len(), f16::ZERO);
    // `half`'s slice conversions use F16C when the CPU has it: the same rounding (to nearest,
    // ties to even) as one value at a time.
    half::slice::HalfFloatSliceExt::convert_from_f32_slice(&mut half[..], scores);
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(&half[..], scores);
}

multiversioned! {
    /// Scales `xs` by `scale` and replaces each by `exp(x - max)` (`max` over `xs` and
    /// `sink`); returns their sum plus `exp(sink - max)`, in f64.
    fn softmax_sum(xs: &mut [f32], scale: f32, sink: f32) -> f64 {
        let mut top = [f32::NEG_INFINITY; LANES];
        for chunk in xs.chunks_mut(LANES) {
            for (t, x) in top.iter_mut().zip(chunk.iter_mut()) {
                *x *= scale;
                *t = t.max(*x);
            }
        }
        let max = top.iter().copied().fold(sink, f32::max);
        let mut acc = [0f64; LANES];
        for chunk in xs.chunks_mut(LANES) {
            for (a, x) in acc.iter_mut().zip(chunk.iter_mut()) {
                *x = super::exp(*x - max);
                *a += *x as f64;
            }
        }
        let lanes = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        if sink == f32::NEG_INFINITY {
            lanes
        } else {
            lanes + super::exp(sink - max) as f64
        }
    }
}

multiversioned! {
    /// `xs *= factor`.
    fn scale_by(xs: &mut [f32], factor: f32) {
        xs.iter_mut().for_each(|x| *x *= factor);
    }
}

/// [`scores`] in plain Rust (the definition of the numbers).
fn scores_portable(
    queries: &[f32],
    dim: usize,
    keys: &[f16],
    stride: usize,
    n: usize,
    out: &mut [f32],
) {
    let mut key = vec![0f32; dim.div_ceil(LANES) * LANES];
    for t in 0..n {
        for (k, v) in key.iter_mut().zip(&keys[t * stride..t * stride + dim]) {
            *k = v.to_f32();
        }
        for (j, q) in queries.chunks_exact(dim).enumerate() {
            let mut acc = [0f32; LANES];
            for (c, k) in key.chunks_exact(LANES).enumerate() {
                for (l, (a, k)) in acc.iter_mut().zip(k).enumerate() {
                    let qv = q.get(c * LANES + l).copied().unwrap_or(0.0);
                    *a += qv * k;
                }
            }
            out[j * n + t] = hsum8(acc);
        }
    }
}

/// [`weighted_sum`] in plain Rust (the definition of the numbers).
fn weighted_sum_portable(
    weights: &[f32],
    values: &[f16],
    stride: usize,
    dim: usize,
    n: usize,
    out: &mut [f32],
) {
    let mut row = vec![0f32; dim];
    for t in 0..n {
        for (r, v) in row.iter_mut().zip(&values[t * stride..t * stride + dim]) {
            *r = v.to_f32();
        }
        for (j, o) in out.chunks_exact_mut(dim).enumerate() {
            let w = weights[j * n + t];
            for (o, r) in o.iter_mut().zip(&row) {
                *o += w * r;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{f16, LANES};
    use std::arch::x86_64::*;

    /// Eight f16 values at `p` as f32.
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }

    /// The lanes' sum in [`super::hsum8`]'s order.
    #[inline(always)]
    unsafe fn hsum(a: __m256) -> f32 {
        let t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let u = _mm_add_ps(t, _mm_movehl_ps(t, t));
        _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)))
    }

    /// [`super::scores`] with AVX2, FMA and F16C (bounds checked by the caller). Head sizes
    /// of whole chunks run up to four query rows against two keys at a time (eight
    /// independent sums in flight, each key converted once for them); others go through
    /// zero-padded copies, one key at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scores(
        queries: &[f32],
        dim: usize,
        keys: &[f16],
        stride: usize,
        n: usize,
        out: &mut [f32],
    ) {
        let rows = queries.len() / dim;
        if dim.is_multiple_of(LANES) {
            let mut j = 0;
            while j < rows {
                let take = (rows - j).min(4);
                let q = queries.as_ptr().add(j * dim);
                let o = out.as_mut_ptr().add(j * n);
                match take {
                    4 => scores_rows::<4>(q, dim, keys.as_ptr(), stride, n, o),
                    3 => scores_rows::<3>(q, dim, keys.as_ptr(), stride, n, o),
                    2 => scores_rows::<2>(q, dim, keys.as_ptr(), stride, n, o),
                    _ => scores_rows::<1>(q, dim, keys.as_ptr(), stride, n, o),
                }
                j += take;
            }
            return;
        }
        let chunks = dim.div_ceil(LANES);
        let padded = chunks * LANES;
        // Zero-padded copies: the query rows, then each key row as f32.
        let mut q = vec![0f32; rows * padded];
        for (j, src) in queries.chunks_exact(dim).enumerate() {
            q[j * padded..j * padded + dim].copy_from_slice(src);
        }
        let mut key = vec![0f32; padded];
        let full = dim / LANES;
        for t in 0..n {
            let src = keys.as_ptr().add(t * stride);
            for c in 0..full {
                _mm256_storeu_ps(key.as_mut_ptr().add(c * LANES), load8(src.add(c * LANES)));
            }
            for (d, k) in key.iter_mut().enumerate().take(dim).skip(full * LANES) {
                *k = (*src.add(d)).to_f32();
            }
            for j in 0..rows {
                let qj = q.as_ptr().add(j * padded);
                let mut acc = _mm256_setzero_ps();
                for c in 0..chunks {
                    acc = _mm256_fmadd_ps(
                        _mm256_loadu_ps(qj.add(c * LANES)),
                        _mm256_loadu_ps(key.as_ptr().add(c * LANES)),
                        acc,
                    );
                }
                *out.get_unchecked_mut(j * n + t) = hsum(acc);
            }
        }
    }

    /// `R` query rows at `q` (`dim` values each, a multiple of eight) against the `n` keys
    /// at `keys`, into `out[j * n + t]`: each key's chunks converted once for the `R` rows,
    /// two keys at a time; every sum in the chunk order of the one-at-a-time loop.
    #[inline(always)]
    unsafe fn scores_rows<const R: usize>(
        q: *const f32,
        dim: usize,
        keys: *const f16,
        stride: usize,
        n: usize,
        out: *mut f32,
    ) {
        let chunks = dim / LANES;
        let mut t = 0;
        while t + 2 <= n {
            let (k0, k1) = (keys.add(t * stride), keys.add((t + 1) * stride));
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for c in 0..chunks {
                let (a, b) = (load8(k0.add(c * LANES)), load8(k1.add(c * LANES)));
                for (j, acc) in acc.iter_mut().enumerate() {
                    let qv = _mm256_loadu_ps(q.add(j * dim + c * LANES));
                    acc[0] = _mm256_fmadd_ps(qv, a, acc[0]);
                    acc[1] = _mm256_fmadd_ps(qv, b, acc[1]);
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                *out.add(j * n + t) = hsum(acc[0]);
                *out.add(j * n + t + 1) = hsum(acc[1]);
            }
            t += 2;
        }
        if t < n {
            let k0 = keys.add(t * stride);
            let mut acc = [_mm256_setzero_ps(); R];
            for c in 0..chunks {
                let a = load8(k0.add(c * LANES));
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(j * dim + c * LANES)), a, *acc);
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                *out.add(j * n + t) = hsum(*acc);
            }
        }
    }

    /// [`super::weighted_sum`] with AVX2, FMA and F16C (bounds checked by the caller): two
    /// weight rows at a time, 32 output values of each in registers (each value row converted
    /// once for both); a last odd row alone, up to 64 output values at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn weighted_sum(
        weights: &[f32],
        values: &[f16],
        stride: usize,
        dim: usize,
        n: usize,
        out: &mut [f32],
    ) {
        let full = dim / LANES;
        let rows = out.len() / dim;
        let mut j = 0;
        while j + 2 <= rows {
            let (w0, w1) = (
                &weights[j * n..(j + 1) * n],
                &weights[(j + 1) * n..(j + 2) * n],
            );
            let o = out.as_mut_ptr().add(j * dim);
            let mut c = 0;
            while c < full {
                let take = (full - c).min(4);
                match take {
                    4 => pair::<4>([w0, w1], values, stride, c, o, dim),
                    3 => pair::<3>([w0, w1], values, stride, c, o, dim),
                    2 => pair::<2>([w0, w1], values, stride, c, o, dim),
                    _ => pair::<1>([w0, w1], values, stride, c, o, dim),
                }
                c += take;
            }
            for (r, w) in [w0, w1].into_iter().enumerate() {
                let o = &mut out[(j + r) * dim..(j + r + 1) * dim];
                tail(w, values, stride, full, o);
            }
            j += 2;
        }
        for (j, o) in out.chunks_exact_mut(dim).enumerate().skip(j) {
            let w = &weights[j * n..(j + 1) * n];
            let mut c = 0;
            while c < full {
                let take = (full - c).min(8);
                match take {
                    8 => block::<8>(w, values, stride, c, o),
                    7 => block::<7>(w, values, stride, c, o),
                    6 => block::<6>(w, values, stride, c, o),
                    5 => block::<5>(w, values, stride, c, o),
                    4 => block::<4>(w, values, stride, c, o),
                    3 => block::<3>(w, values, stride, c, o),
                    2 => block::<2>(w, values, stride, c, o),
                    _ => block::<1>(w, values, stride, c, o),
                }
                c += take;
            }
            tail(w, values, stride, full, o);
        }
    }

    /// The values past the last full chunk, one at a time (the same sums).
    #[inline(always)]
    unsafe fn tail(w: &[f32], values: &[f16], stride: usize, full: usize, o: &mut [f32]) {
        for (d, o) in o.iter_mut().enumerate().skip(full * LANES) {
            let mut acc = *o;
            for (t, &wt) in w.iter().enumerate() {
                acc += wt * (*values.as_ptr().add(t * stride + d)).to_f32();
            }
            *o = acc;
        }
    }

    /// `C` chunks of eight output values from chunk `first` on of two weight rows `w` (their
    /// outputs at `o` and `o + dim`), accumulated in registers.
    #[inline(always)]
    unsafe fn pair<const C: usize>(
        w: [&[f32]; 2],
        values: &[f16],
        stride: usize,
        first: usize,
        o: *mut f32,
        dim: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; 2];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (c, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(o.add(r * dim + (first + c) * LANES));
            }
        }
        let base = values.as_ptr().add(first * LANES);
        for (t, (&w0, &w1)) in w[0].iter().zip(w[1]).enumerate() {
            let (w0, w1) = (_mm256_set1_ps(w0), _mm256_set1_ps(w1));
            let row = base.add(t * stride);
            let [acc0, acc1] = &mut acc;
            for (c, (a0, a1)) in acc0.iter_mut().zip(acc1.iter_mut()).enumerate() {
                let v = load8(row.add(c * LANES));
                *a0 = _mm256_fmadd_ps(w0, v, *a0);
                *a1 = _mm256_fmadd_ps(w1, v, *a1);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(r * dim + (first + c) * LANES), *a);
            }
        }
    }

    /// `C` chunks of eight output values from chunk `first` on, accumulated in registers.
    #[inline(always)]
    unsafe fn block<const C: usize>(
        w: &[f32],
        values: &[f16],
        stride: usize,
        first: usize,
        o: &mut [f32],
    ) {
        let mut acc = [_mm256_setzero_ps(); C];
        for (c, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(o.as_ptr().add((first + c) * LANES));
        }
        let base = values.as_ptr().add(first * LANES);
        for (t, &wt) in w.iter().enumerate() {
            let wt = _mm256_set1_ps(wt);
            let row = base.add(t * stride);
            for (c, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(wt, load8(row.add(c * LANES)), *a);
            }
        }
        for (c, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.as_mut_ptr().add((first + c) * LANES), *a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random f16 values in about ±2.
    fn values(n: usize, seed: u32) -> Vec<f16> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                f16::from_f32((s % 4001) as f32 / 1000.0 - 2.0)
            })
            .collect()
    }

    /// The attention weights are the softmax of the scaled scores (with and without a sink
    /// logit), to f16 precision, each an f16 value.
    #[test]
    fn softmax_rounds_the_exact_weights_to_f16() {
        for n in [1, 7, 8, 37, 300] {
            for sink in [None, Some(0.7f32)] {
                let scores: Vec<f32> = values(n, n as u32)
                    .iter()
                    .map(|v| v.to_f32() * 4.0)
                    .collect();
                let mut w = scores.clone();
                softmax_f16(&mut w, 0.125, sink, &mut Vec::new());
                let max = scores
                    .iter()
                    .map(|s| (s * 0.125) as f64)
                    .chain(sink.map(|s| s as f64))
                    .fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores
                    .iter()
                    .map(|s| ((s * 0.125) as f64 - max).exp())
                    .sum::<f64>()
                    + sink.map_or(0.0, |s| (s as f64 - max).exp());
                for (got, s) in w.iter().zip(&scores) {
                    let want = ((s * 0.125) as f64 - max).exp() / total;
                    assert!(
                        (*got as f64 - want).abs() <= 1e-3 * want + 1e-7,
                        "{got} vs {want}"
                    );
                    assert_eq!(f16::from_f32(*got).to_f32(), *got);
                }
            }
        }
    }

    /// Every tier gives the bits of the portable kernels, for head sizes with and without a
    /// partial chunk and query groups of 1, 3, 4 and 7 rows (the blocks of four and the pairs
    /// of the AVX2 kernels, and what is left over), and the products are the exact sums up to
    /// f32 rounding.
    #[test]
    fn tiers_agree_with_the_portable_kernels() {
        for dim in [4, 8, 20, 64, 72, 128, 256] {
            for rows in [1, 3, 4, 7] {
                let (n, stride) = (37, dim * 2 + 8);
                let keys = values(n * stride, dim as u32);
                let queries: Vec<f32> = values(rows * dim, 7).iter().map(|v| v.to_f32()).collect();
                let mut fast = vec![0f32; rows * n];
                scores(&queries, dim, &keys[dim..], stride, &mut fast);
                let mut slow = vec![0f32; rows * n];
                scores_portable(&queries, dim, &keys[dim..], stride, n, &mut slow);
                assert_eq!(fast, slow, "scores, dim {dim}, {rows} rows");
                for j in 0..rows {
                    for t in 0..n {
                        let exact: f64 = (0..dim)
                            .map(|d| {
                                queries[j * dim + d] as f64
                                    * keys[dim + t * stride + d].to_f32() as f64
                            })
                            .sum();
                        assert!(
                            (fast[j * n + t] as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs())
                        );
                    }
                }
                let weights: Vec<f32> = values(rows * n, 3).iter().map(|v| v.to_f32()).collect();
                let start: Vec<f32> = values(rows * dim, 5).iter().map(|v| v.to_f32()).collect();
                let (mut fast, mut slow) = (start.clone(), start.clone());
                weighted_sum(&weights, &keys[dim..], stride, dim, &mut fast);
                weighted_sum_portable(&weights, &keys[dim..], stride, dim, n, &mut slow);
                assert_eq!(fast, slow, "weighted sums, dim {dim}, {rows} rows");
                for j in 0..rows {
                    for d in 0..dim {
                        let exact: f64 = start[j * dim + d] as f64
                            + (0..n)
                                .map(|t| {
                                    weights[j * n + t] as f64
                                        * keys[dim + t * stride + d].to_f32() as f64
                                })
                                .sum::<f64>();
                        assert!(
                            (fast[j * dim + d] as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs())
                        );
                    }
                }
            }
        }
    }
}
