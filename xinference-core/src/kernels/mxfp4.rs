//! MXFP4 weights (GGUF type 39, the experts of the released gpt-oss GGUFs) times f32 activations
//! rounded to Q8_0 blocks, computed as llama.cpp's x86 CPU backend computes them
//! (`ggml_vec_dot_mxfp4_q8_0` in `ggml-cpu/arch/x86/quants.c`).
//!
//! A block is 32 values in 17 bytes: an E8M0 exponent `e`, then 16 bytes of 4-bit E2M1 codes
//! (value `j` in the low nibble of byte `j`, value `j + 16` in its high nibble). A code stands
//! for twice its E2M1 value ([`KVALUES`]), so a value is `KVALUES[code] · 2^(e - 128)`
//! ([`e8m0_half`]). The dot product of a weight row with a Q8_0 activation row: per block, the
//! integer products summed in eight lanes of four consecutive values (lane `j`: values
//! `4j..4j + 4`); even blocks accumulate `fma(d_x · half(e), lane, acc1_j)`, odd blocks into
//! `acc2`; then the lanes of `acc1 + acc2` are summed as [`hsum8`]; a last odd block adds
//! `fma(d_x · half(e), Σ, sum)`. The AVX2 kernel (chosen at run time, capped by
//! `XINFERENCE_QUANT_TIER`) computes the same integers and floats in the same order as the
//! portable one: every tier gives the same bits.

use super::quant::activation::{ActRow, Acts};
use super::quant::format::{ActFormat, QK};
use super::quant::scalar::hsum8;
use super::quant::Tier;
use rayon::prelude::*;

/// Bytes of one MXFP4 block of [`QK`] values.
pub const BLOCK_BYTES: usize = 17;
/// GGML's type id of MXFP4 in GGUF files.
pub const GGML_TYPE_MXFP4: u32 = 39;
/// The E2M1 values of the sixteen codes, doubled (llama.cpp's `kvalues_mxfp4`).
pub const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of the E8M0 scale `2^(e - 127)`, exactly (llama.cpp's `ggml_e8m0_to_fp32_half`; the
/// half undoes [`KVALUES`]' doubling).
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// The f32 values of one row of MXFP4 blocks (`k = bytes / 17 · 32` values).
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    assert_eq!(bytes.len() / BLOCK_BYTES * QK, out.len());
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = e8m0_half(block[0]);
        for j in 0..QK / 2 {
            y[j] = KVALUES[(block[1 + j] & 0xF) as usize] as f32 * d;
            y[j + QK / 2] = KVALUES[(block[1 + j] >> 4) as usize] as f32 * d;
        }
    }
}

/// The integer products of block `w` (17 bytes) with 32 activation values, in eight lanes.
#[inline(always)]
fn block_lanes(w: &[u8], x: &[i8]) -> ([i32; 8], i32) {
    let mut v = [0i32; QK];
    for j in 0..QK / 2 {
        v[j] = KVALUES[(w[1 + j] & 0xF) as usize] as i32;
        v[j + QK / 2] = KVALUES[(w[1 + j] >> 4) as usize] as i32;
    }
    let lanes: [i32; 8] =
        std::array::from_fn(|l| (4 * l..4 * l + 4).map(|e| v[e] * x[e] as i32).sum());
    (lanes, lanes.iter().sum())
}

/// The portable dot product of one weight row with one Q8_0 activation row.
pub fn dot_scalar(w: &[u8], a: &ActRow<'_>) -> f32 {
    let blocks = w.len() / BLOCK_BYTES;
    let (mut acc1, mut acc2) = ([0f32; 8], [0f32; 8]);
    let mut b = 0;
    while b + 1 < blocks {
        for (acc, i) in [(&mut acc1, b), (&mut acc2, b + 1)] {
            let block = &w[i * BLOCK_BYTES..(i + 1) * BLOCK_BYTES];
            let (lanes, _) = block_lanes(block, &a.qs[i * QK..(i + 1) * QK]);
            let d = a.d[i] * e8m0_half(block[0]);
            for (s, l) in acc.iter_mut().zip(lanes) {
                *s = d.mul_add(l as f32, *s);
            }
        }
        b += 2;
    }
    let mut sum = hsum8(std::array::from_fn(|j| acc1[j] + acc2[j]));
    if b < blocks {
        let block = &w[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
        let (_, total) = block_lanes(block, &a.qs[b * QK..(b + 1) * QK]);
        sum = (a.d[b] * e8m0_half(block[0])).mul_add(total as f32, sum);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{e8m0_half, hsum8, ActRow, BLOCK_BYTES, KVALUES, QK};
    use std::arch::x86_64::*;

    /// [`super::dot_scalar`] with AVX2 + FMA.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(w: &[u8], a: &ActRow<'_>) -> f32 {
        let blocks = w.len() / BLOCK_BYTES;
        let values = _mm_loadu_si128(KVALUES.as_ptr() as *const __m128i);
        let m4 = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        // One block's eight lanes of integer products, as i32.
        let lanes = |i: usize| -> __m256i {
            let bits = _mm_loadu_si128(w.as_ptr().add(i * BLOCK_BYTES + 1) as *const __m128i);
            let lo = _mm_shuffle_epi8(values, _mm_and_si128(bits, m4));
            let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(bits, 4), m4));
            let q4 = _mm256_set_m128i(hi, lo);
            let q8 = _mm256_loadu_si256(a.qs.as_ptr().add(i * QK) as *const __m256i);
            // Signed products: |q4| times q8 with q4's sign (llama.cpp's `mul_add_epi8`).
            let ax = _mm256_sign_epi8(q4, q4);
            let sy = _mm256_sign_epi8(q8, q4);
            _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones)
        };
        let (mut acc1, mut acc2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut b = 0;
        while b + 1 < blocks {
            let d0 = _mm256_set1_ps(a.d[b] * e8m0_half(w[b * BLOCK_BYTES]));
            let d1 = _mm256_set1_ps(a.d[b + 1] * e8m0_half(w[(b + 1) * BLOCK_BYTES]));
            acc1 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(lanes(b)), acc1);
            acc2 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(lanes(b + 1)), acc2);
            b += 2;
        }
        let mut sum8 = [0f32; 8];
        _mm256_storeu_ps(sum8.as_mut_ptr(), _mm256_add_ps(acc1, acc2));
        let mut sum = hsum8(sum8);
        if b < blocks {
            let mut l = [0i32; 8];
            _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, lanes(b));
            let total: i32 = l.iter().sum();
            sum = (a.d[b] * e8m0_half(w[b * BLOCK_BYTES])).mul_add(total as f32, sum);
        }
        sum
    }
}

/// The dot product on `tier` (lowered to what the CPU has; AVX-512 runs the AVX2 kernel).
pub fn dot_on(tier: Tier, w: &[u8], a: &ActRow<'_>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if tier.min(Tier::best()) >= Tier::Avx2 {
        // SAFETY: `Tier::best` found AVX2 and FMA on this CPU.
        return unsafe { avx2::dot(w, a) };
    }
    let _ = tier;
    dot_scalar(w, a)
}

/// From this many weight bytes times rows a product is split over the compute threads.
const PARALLEL_BYTES: usize = 1 << 17;

/// An MXFP4 weight matrix `[n, k]` (PyTorch's layout of a linear layer), as GGUF blocks.
#[derive(Clone, Copy, Debug)]
pub struct Mxfp4Matrix<'a> {
    bytes: &'a [u8],
    n: usize,
    k: usize,
}

impl<'a> Mxfp4Matrix<'a> {
    /// `n` rows of `k` values in `bytes`; `None` unless the sizes fit.
    pub fn new(bytes: &'a [u8], n: usize, k: usize) -> Option<Self> {
        (k.is_multiple_of(QK) && bytes.len() == k / QK * BLOCK_BYTES * n).then_some(Mxfp4Matrix {
            bytes,
            n,
            k,
        })
    }

    /// `out[rows × n] = x[rows × k] · wᵀ` on the current [`Tier`].
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) {
        self.matmul_on(Tier::current(), x, out)
    }

    /// [`Mxfp4Matrix::matmul`] on `tier`.
    pub fn matmul_on(&self, tier: Tier, x: &[f32], out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let acts = Acts::quantize(ActFormat::Q8_0, x, k);
        let rows = x.len() / k.max(1);
        assert_eq!(out.len(), rows * n);
        let row_bytes = k / QK * BLOCK_BYTES;
        let one = |(i, o): (usize, &mut f32)| {
            let (r, c) = (i / n, i % n);
            *o = dot_on(
                tier,
                &self.bytes[c * row_bytes..(c + 1) * row_bytes],
                &acts.row(r),
            );
        };
        if self.bytes.len() * rows >= PARALLEL_BYTES && super::threads() > 1 {
            out.par_iter_mut()
                .enumerate()
                .with_min_len(n.div_ceil(4).max(1))
                .for_each(one);
        } else {
            out.iter_mut().enumerate().for_each(one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random row of MXFP4 blocks (exponents around 2^0).
    fn random_blocks(blocks: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        };
        (0..blocks)
            .flat_map(|_| {
                let mut b = vec![120 + next() % 14];
                b.extend((0..16).map(|_| next()));
                b
            })
            .collect()
    }

    fn random_floats(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    #[test]
    fn e8m0_half_is_half_the_power_of_two() {
        assert_eq!(e8m0_half(127), 0.5);
        assert_eq!(e8m0_half(128), 1.0);
        assert_eq!(e8m0_half(130), 4.0);
        assert_eq!(e8m0_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_half(0), 2f32.powi(-128));
    }

    #[test]
    fn dequantized_values_are_the_codes_times_the_scale() {
        // e = 129: scale 2; code 7 (E2M1 6.0 → 12 doubled), code 0xA (-2 doubled → -1.0).
        let mut block = vec![129u8];
        block.extend([0xA7u8; 16]);
        let mut out = [0f32; QK];
        dequantize_row(&block, &mut out);
        assert!(out[..16].iter().all(|&v| v == 24.0), "{out:?}");
        assert!(out[16..].iter().all(|&v| v == -4.0), "{out:?}");
    }

    /// Every tier gives the same bits, and they are the dot product of the dequantized weights
    /// with the dequantized activations, to the rounding of a float sum (odd and even block
    /// counts: the last odd block takes the scalar path).
    #[test]
    fn every_tier_matches_dequantize_then_dot() {
        for blocks in [1usize, 2, 7, 8] {
            let k = blocks * QK;
            let w = random_blocks(blocks, 7 + blocks as u64);
            let x = random_floats(k, 11 + blocks as u64);
            let acts = Acts::quantize(ActFormat::Q8_0, &x, k);
            let row = acts.row(0);
            let mut wf = vec![0f32; k];
            dequantize_row(&w, &mut wf);
            let expected: f64 = (0..k)
                .map(|i| wf[i] as f64 * row.qs[i] as f64 * row.d[i / QK] as f64)
                .sum();
            let scalar = dot_scalar(&w, &row);
            let scale: f64 = (0..k)
                .map(|i| (wf[i] as f64 * row.qs[i] as f64 * row.d[i / QK] as f64).abs())
                .sum();
            assert!(
                (scalar as f64 - expected).abs() <= 1e-5 * scale.max(1.0),
                "{blocks} blocks: {scalar} vs {expected}"
            );
            for tier in Tier::available() {
                assert_eq!(
                    dot_on(tier, &w, &row).to_bits(),
                    scalar.to_bits(),
                    "{tier:?}, {blocks} blocks"
                );
            }
        }
    }

    /// The matrix product is each row's dot product, on every tier, alone or in parallel.
    #[test]
    fn matmul_is_the_rows_dot_products() {
        let (n, k, rows) = (48, 4 * QK, 3);
        let w = random_blocks(n * k / QK, 3);
        let x = random_floats(rows * k, 5);
        let m = Mxfp4Matrix::new(&w, n, k).unwrap();
        let acts = Acts::quantize(ActFormat::Q8_0, &x, k);
        for tier in Tier::available() {
            let mut out = vec![0f32; rows * n];
            m.matmul_on(tier, &x, &mut out);
            for r in 0..rows {
                for c in 0..n {
                    let row_bytes = k / QK * BLOCK_BYTES;
                    let want = dot_scalar(&w[c * row_bytes..(c + 1) * row_bytes], &acts.row(r));
                    assert_eq!(out[r * n + c].to_bits(), want.to_bits(), "{tier:?} {r} {c}");
                }
            }
        }
        assert!(Mxfp4Matrix::new(&w, n, k + 1).is_none());
    }
}
