//! The two products of attention over an f16 KV cache, as llama.cpp's CPU backend computes them
//! (without flash attention): query · key over f16 values (the query rounded to f16, as ggml
//! rounds the `kq` product's f32 operand to its f16 `vec_dot_type`), and the f16-rounded
//! attention weights times the f16 values. Both multiply two f16 numbers, whose product is
//! exact in f32, and add in f32 in the order of llama.cpp's f16 matrix product for a batch of
//! rows (llamafile's `tinyBLAS` on AVX2, which ggml's `mul_mat` takes for two rows or more: eight
//! running sums, value `i` into sum `i mod 8`, then the sums' [`hsum8`]): the AVX2/F16C kernels
//! (chosen at run time, the tier of [`Tier::current`]) and the portable ones give the same bits.
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

/// `out[j][d] += Σ_t weights[j * n + t] · values[t][d]` for the `out.len() / dim` weight rows
/// of `n` values each, value row `t` being `values[t * stride..][..dim]`: the products summed
/// as llama.cpp's `tinyBLAS` sums the `kqv` product of a prompt, eight running sums (position
/// `t` into sum `t mod 8`, in order), then their [`hsum8`]. The weights must hold f16 values.
/// (The order of a sum of positions in order moved the last bit of about half of SmolLM2's
/// attention outputs from llama.cpp's, enough to flip one Q8_1 activation block's rounding by
/// the second layer and, by the tenth generated token, a greedy choice 0.42 from the next.)
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
/// `soft_max` computes them beside our products: each score times `scale`, `exp(x - max)` as
/// ggml's vector loop ([`super::exp_ggml`]; the maximum also over the head's `sink` logit,
/// whose own `expf` joins the sum without a value), the sum of each chunk of eight in f32
/// ([`hsum8`]'s order) added to an f64 sum chunk after chunk (`ggml_vec_soft_max_f32` on
/// AVX2), each weight times `1 / sum`, rounded to f16 (`half` is scratch for that rounding).
/// Plain loops compiled for AVX2 and for the baseline: the same operations, so the same bits on
/// every CPU.
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
    /// `sink`); returns their sum plus `expf(sink - max)`, in f64 (see [`softmax_f16`]).
    fn softmax_sum(xs: &mut [f32], scale: f32, sink: f32) -> f64 {
        let mut top = [f32::NEG_INFINITY; LANES];
        for chunk in xs.chunks_mut(LANES) {
            for (t, x) in top.iter_mut().zip(chunk.iter_mut()) {
                *x *= scale;
                *t = t.max(*x);
            }
        }
        let max = top.iter().copied().fold(sink, f32::max);
        let mut sum = 0f64;
        for chunk in xs.chunks_mut(LANES) {
            // A last partial chunk as zero-padded: llama.cpp's rows are padded with masked
            // positions, whose weights are zero.
            let mut lanes = [0f32; LANES];
            for (l, x) in lanes.iter_mut().zip(chunk.iter_mut()) {
                *x = super::exp_ggml(*x - max);
                *l = *x;
            }
            sum += f64::from(hsum8(lanes));
        }
        if sink == f32::NEG_INFINITY {
            sum
        } else {
            sum + f64::from((sink - max).exp())
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
    let mut lanes = vec![[0f32; LANES]; dim];
    for (j, o) in out.chunks_exact_mut(dim).enumerate() {
        lanes.iter_mut().for_each(|l| *l = [0.0; LANES]);
        for t in 0..n {
            let w = weights[j * n + t];
            let row = &values[t * stride..t * stride + dim];
            for (l, v) in lanes.iter_mut().zip(row) {
                l[t % LANES] += w * v.to_f32();
            }
        }
        for (o, l) in o.iter_mut().zip(&lanes) {
            *o += hsum8(*l);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{f16, LANES};
    use std::arch::x86_64::*;

    /// Positions of the value cache [`weighted_sum`] takes in one block: all 8-value chunks of
    /// all query rows pass over a block while it sits in L1 (64 rows of a 256-wide head are
    /// 32 KB), instead of each chunk walking the whole cache (a row's cache line then came
    /// from L2 once per chunk and query row). A multiple of [`LANES`].
    const BLOCK: usize = 64;

    std::thread_local! {
        /// [`weighted_sum`]'s partial sums, kept between calls.
        static PARTIALS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

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

    /// [`super::weighted_sum`] with AVX2, FMA and F16C (bounds checked by the caller): per
    /// weight row, eight output values at a time, their eight running sums in registers (each
    /// position's value row into the sum of its position mod 8); the outputs past the last
    /// whole chunk one at a time, in the same order.
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
        // Per query row and 8-value chunk, the eight partial sums (by position mod 8) carried
        // from block to block of positions.
        PARTIALS.with_borrow_mut(|partials| {
            partials.clear();
            partials.resize(rows * full * LANES * LANES, 0.0);
            for t0 in (0..n).step_by(BLOCK) {
                let t1 = (t0 + BLOCK).min(n);
                for j in 0..rows {
                    let w = &weights[j * n..(j + 1) * n];
                    for c in 0..full {
                        let at = partials.as_mut_ptr().add((j * full + c) * LANES * LANES);
                        let mut acc: [__m256; LANES] =
                            std::array::from_fn(|l| _mm256_loadu_ps(at.add(l * LANES)));
                        let base = values.as_ptr().add(c * LANES);
                        let mut t = t0;
                        while t + LANES <= t1 {
                            for (l, a) in acc.iter_mut().enumerate() {
                                let v = load8(base.add((t + l) * stride));
                                *a =
                                    _mm256_fmadd_ps(_mm256_set1_ps(*w.get_unchecked(t + l)), v, *a);
                            }
                            t += LANES;
                        }
                        // The last positions (the last block only: blocks are whole octets).
                        for (l, a) in acc.iter_mut().enumerate().take(t1 - t) {
                            let v = load8(base.add((t + l) * stride));
                            *a = _mm256_fmadd_ps(_mm256_set1_ps(*w.get_unchecked(t + l)), v, *a);
                        }
                        for (l, a) in acc.iter().enumerate() {
                            _mm256_storeu_ps(at.add(l * LANES), *a);
                        }
                    }
                }
            }
            for (j, o) in out.chunks_exact_mut(dim).enumerate() {
                for c in 0..full {
                    let at = partials.as_ptr().add((j * full + c) * LANES * LANES);
                    let acc: [__m256; LANES] =
                        std::array::from_fn(|l| _mm256_loadu_ps(at.add(l * LANES)));
                    // `hsum8`'s order, eight outputs at a time.
                    let t0 = _mm256_add_ps(acc[0], acc[4]);
                    let t1 = _mm256_add_ps(acc[1], acc[5]);
                    let t2 = _mm256_add_ps(acc[2], acc[6]);
                    let t3 = _mm256_add_ps(acc[3], acc[7]);
                    let sum = _mm256_add_ps(_mm256_add_ps(t0, t2), _mm256_add_ps(t1, t3));
                    let at = o.as_mut_ptr().add(c * LANES);
                    _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), sum));
                }
            }
        });
        for (j, o) in out.chunks_exact_mut(dim).enumerate() {
            let w = &weights[j * n..(j + 1) * n];
            for (d, o) in o.iter_mut().enumerate().skip(full * LANES) {
                let mut lanes = [0f32; LANES];
                for (t, &wt) in w.iter().enumerate() {
                    lanes[t % LANES] += wt * (*values.as_ptr().add(t * stride + d)).to_f32();
                }
                *o += super::hsum8(lanes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weights before their f16 rounding are the bits of llama.cpp's `soft_max`
    /// (`ggml_soft_max_ext`, scale 0.125, on its CPU backend, AVX2/FMA build, recorded once):
    /// 29 scores, padded as llama.cpp pads its KV rows with three masked (`-inf`) positions,
    /// whose weights are zero; ours sees the 29 only.
    #[test]
    fn softmax_gives_llama_cpps_bits() {
        let mut xs: Vec<f32> = [
            0xc1a4_6666,
            0x4119_999a,
            0xc02e_147b,
            0xc170_a3d7,
            0x4171_c28f,
            0x4032_8f5c,
            0xc118_7ae1,
            0x41a4_f5c2,
            0x4104_cccd,
            0xc080_a3d7,
            0xc182_b852,
            0x415c_f5c2,
            0x3fbe_b852,
            0xc12d_47ae,
            0x419a_8f5c,
            0x40e0_0000,
            0xc0aa_3d71,
            0xc18d_1eb8,
            0x4148_28f6,
            0x3e42_8f5c,
            0xc142_147b,
            0x4190_28f5,
            0x40b6_6666,
            0xc0d3_d70a,
            0xc197_851f,
            0x4133_5c29,
            0xbf8e_147b,
            0xc156_e148,
            0x4185_c290,
        ]
        .iter()
        .map(|&b| f32::from_bits(b))
        .collect();
        let want: &[u32] = &[
            0x3a75_3cee,
            0x3d26_0498,
            0x3c0e_5d4c,
            0x3af4_2975,
            0x3da5_4a1e,
            0x3c8d_bd65,
            0x3b73_173b,
            0x3e24_9076,
            0x3d0d_1e30,
            0x3bf2_062e,
            0x3acf_8aa5,
            0x3d8c_7fae,
            0x3c70_f655,
            0x3b4e_a189,
            0x3e0b_e1df,
            0x3cef_e7af,
            0x3bcd_b973,
            0x3ab0_69e8,
            0x3d6e_da39,
            0x3c4c_d260,
            0x3b2f_a3c0,
            0x3ded_cdef,
            0x3ccb_ec51,
            0x3bae_de7b,
            0x3a95_f45a,
            0x3d4b_0745,
            0x3c2e_1a0f,
            0x3b15_4bea,
            0x3dca_233b,
        ];
        let sum = softmax_sum(&mut xs, 0.125, f32::NEG_INFINITY);
        scale_by(&mut xs, (1.0 / sum) as f32);
        let got: Vec<u32> = xs.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
    }

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
        // 133 positions: two blocks of `weighted_sum` and part of an octet.
        for (dim, n) in [4, 8, 20, 64, 72, 128, 256]
            .into_iter()
            .flat_map(|d| [(d, 37), (d, 133)])
        {
            for rows in [1, 3, 4, 7] {
                let stride = dim * 2 + 8;
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
