//! AVX2 + FMA dot products, and the same with AVX-512 VNNI's `vpdpbusd` (on 256-bit vectors)
//! in place of `vpmaddubsw` + `vpmaddwd`. Both tiers form the same exact integer sums and the
//! same float operations in the same order as [`super::scalar`] (see there), so they give the
//! same bits. Q2_K and Q3_K have no vector kernel yet: both tiers run the portable one.

use super::activation::ActRow;
use super::format::{scale_min_k4, Format, QK, QK_K};
use super::scalar::{self, add_min, hsum4, DotFn};
use std::arch::x86_64::*;

/// The exact sums of four byte products per 32-bit lane: unsigned `w` times signed `x`.
#[inline(always)]
unsafe fn dot_u8<const V: bool>(w: __m256i, x: __m256i) -> __m256i {
    if V {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x)
    } else {
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
    }
}

/// [`dot_u8`] for signed `w` (no value is -128 on the activation side).
#[inline(always)]
unsafe fn dot_i8<const V: bool>(w: __m256i, x: __m256i) -> __m256i {
    dot_u8::<V>(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

/// A scale per 128-bit half (`lo` for values 0..16, `hi` for 16..32) in the shape
/// [`dot_scaled`] takes.
#[inline(always)]
unsafe fn scales<const V: bool>(lo: i32, hi: i32) -> __m256i {
    if V {
        _mm256_set_m128i(_mm_set1_epi32(hi), _mm_set1_epi32(lo))
    } else {
        _mm256_set_m128i(_mm_set1_epi16(hi as i16), _mm_set1_epi16(lo as i16))
    }
}

/// [`dot_u8`] with each lane multiplied by its half's scale (exact).
#[inline(always)]
unsafe fn dot_scaled<const V: bool>(w: __m256i, x: __m256i, s: __m256i) -> __m256i {
    if V {
        _mm256_mullo_epi32(dot_u8::<true>(w, x), s)
    } else {
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), s)
    }
}

/// The sum of eight lanes in [`scalar::hsum8`]'s order.
#[inline(always)]
unsafe fn hsum_f32(a: __m256) -> f32 {
    let t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    let u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)))
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

/// Nibbles of 16 bytes: low ones as values 0..16, high ones as 16..32.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p.cast());
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(q, 4), q),
        _mm256_set1_epi8(0x0F),
    )
}

/// 0x10 in byte `e` where bit `e` of `qh` is set.
#[inline(always)]
unsafe fn fifth_bits(p: *const u8) -> __m256i {
    let qh = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let set = _mm256_cmpeq_epi8(
        _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe)),
        _mm256_set1_epi64x(-1),
    );
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// 0x10 in every byte of `qh` that has `mask`'s bit.
#[inline(always)]
unsafe fn bit_as_0x10(qh: __m256i, mask: i8) -> __m256i {
    let m = _mm256_set1_epi8(mask);
    _mm256_and_si256(
        _mm256_cmpeq_epi8(_mm256_and_si256(qh, m), m),
        _mm256_set1_epi8(0x10),
    )
}

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q5_1: u8 = 3;
const Q8_0: u8 = 4;

/// A small block's 32 values (signed for Q4_0 / Q5_0 / Q8_0), its scale and minimum.
#[inline(always)]
unsafe fn unpack_small<const F: u8>(b: *const u8) -> (__m256i, f32, f32) {
    match F {
        Q4_0 => (
            _mm256_sub_epi8(nibbles(b.add(2)), _mm256_set1_epi8(8)),
            f16_at(b),
            0.0,
        ),
        Q4_1 => (nibbles(b.add(4)), f16_at(b), f16_at(b.add(2))),
        Q5_0 => (
            _mm256_sub_epi8(
                _mm256_or_si256(nibbles(b.add(6)), fifth_bits(b.add(2))),
                _mm256_set1_epi8(16),
            ),
            f16_at(b),
            0.0,
        ),
        Q5_1 => (
            _mm256_or_si256(nibbles(b.add(8)), fifth_bits(b.add(4))),
            f16_at(b),
            f16_at(b.add(2)),
        ),
        _ => (load(b.add(2)), f16_at(b), 0.0),
    }
}

/// Small-block formats against Q8_0 / Q8_1 rows.
///
/// # Safety
/// The CPU has the tier's features; [`checked`] passed for these slices.
#[inline(always)]
unsafe fn small<const R: usize, const V: bool, const F: u8>(
    w: &[u8],
    a: &[ActRow<'_>; R],
) -> [f32; R] {
    let (bytes, signed, with_min) = match F {
        Q4_0 => (18, true, false),
        Q4_1 => (20, false, true),
        Q5_0 => (22, true, false),
        Q5_1 => (24, false, true),
        _ => (34, true, false),
    };
    let nb = w.len() / bytes;
    let mut acc = [_mm256_setzero_ps(); R];
    let mut mins = [0f32; R];
    for b in 0..nb {
        let (q, d, m) = unpack_small::<F>(w.as_ptr().add(b * bytes));
        for r in 0..R {
            let x = load(a[r].qs.as_ptr().add(b * QK).cast());
            let dot = if signed {
                dot_i8::<V>(q, x)
            } else {
                dot_u8::<V>(q, x)
            };
            if with_min {
                mins[r] = add_min(mins[r], m, *a[r].s.get_unchecked(b));
            }
            let dd = _mm256_set1_ps(d * *a[r].d.get_unchecked(b));
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(dot), acc[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = hsum_f32(acc[r]) + mins[r];
    }
    out
}

/// Q4_K (`FIVE` false) and Q5_K (`FIVE` true) against Q8K rows.
///
/// # Safety
/// As [`small`].
#[inline(always)]
unsafe fn q45k<const R: usize, const V: bool, const FIVE: bool>(
    w: &[u8],
    a: &[ActRow<'_>; R],
) -> [f32; R] {
    let bytes = if FIVE { 176 } else { 144 };
    let nb = w.len() / bytes;
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut accm = [[0f32; 4]; R];
    for b in 0..nb {
        let blk = w.as_ptr().add(b * bytes);
        let block = std::slice::from_raw_parts(blk, bytes);
        let (d, dmin) = (f16_at(blk), f16_at(blk.add(2)));
        let mut sc = [0i32; 8];
        let mut mn = [0i32; 8];
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, &block[4..16]);
            sc[j] = s as i32;
            mn[j] = m as i32;
        }
        let qs = if FIVE { blk.add(48) } else { blk.add(16) };
        let qh = if FIVE {
            load(blk.add(16))
        } else {
            _mm256_setzero_si256()
        };
        let mut sums = [_mm256_setzero_si256(); R];
        for j in 0..4 {
            let q = load(qs.add(32 * j));
            let mut lo = _mm256_and_si256(q, low);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            if FIVE {
                lo = _mm256_or_si256(lo, bit_as_0x10(qh, (1u8 << (2 * j)) as i8));
                hi = _mm256_or_si256(hi, bit_as_0x10(qh, (2u8 << (2 * j)) as i8));
            }
            let (s_lo, s_hi) = (
                scales::<V>(sc[2 * j], sc[2 * j]),
                scales::<V>(sc[2 * j + 1], sc[2 * j + 1]),
            );
            for r in 0..R {
                let x = a[r].qs.as_ptr().add(b * QK_K + 64 * j).cast::<u8>();
                let part = _mm256_add_epi32(
                    dot_scaled::<V>(lo, load(x), s_lo),
                    dot_scaled::<V>(hi, load(x.add(32)), s_hi),
                );
                sums[r] = _mm256_add_epi32(sums[r], part);
            }
        }
        for r in 0..R {
            let bsums = a[r].bsums.get_unchecked(b * 16..b * 16 + 16);
            let p = |j: usize| bsums[2 * j] as i32 + bsums[2 * j + 1] as i32;
            let dx = *a[r].d.get_unchecked(b);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(sums[r]), acc[r]);
            let dm = -dx * dmin;
            for (t, m) in accm[r].iter_mut().enumerate() {
                let lane = mn[2 * t] * p(2 * t) + mn[2 * t + 1] * p(2 * t + 1);
                *m = dm.mul_add(lane as f32, *m);
            }
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = hsum_f32(acc[r]) + hsum4(accm[r]);
    }
    out
}

/// Q6_K against Q8K rows: unsigned 6-bit values, with `32 · Σ scale · bsum` taken off.
///
/// # Safety
/// As [`small`].
#[inline(always)]
unsafe fn q6k<const R: usize, const V: bool>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
    let bytes = 210;
    let nb = w.len() / bytes;
    let low = _mm256_set1_epi8(0x0F);
    let high = _mm256_set1_epi8(0x30);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = w.as_ptr().add(b * bytes);
        let mut sc = [0i32; 16];
        for (g, s) in sc.iter_mut().enumerate() {
            *s = *blk.add(192 + g) as i8 as i32;
        }
        let d = f16_at(blk.add(208));
        let mut sums = [_mm256_setzero_si256(); R];
        for n in 0..2 {
            let ql0 = load(blk.add(64 * n));
            let ql1 = load(blk.add(64 * n + 32));
            let qh = load(blk.add(128 + 32 * n));
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, low),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 4), high),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, low),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 2), high),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                    _mm256_and_si256(qh, high),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), high),
                ),
            ];
            for (i, q) in q.iter().enumerate() {
                let g = 8 * n + 2 * i;
                let s = scales::<V>(sc[g], sc[g + 1]);
                for r in 0..R {
                    let x = a[r]
                        .qs
                        .as_ptr()
                        .add(b * QK_K + 128 * n + 32 * i)
                        .cast::<u8>();
                    sums[r] = _mm256_add_epi32(sums[r], dot_scaled::<V>(*q, load(x), s));
                }
            }
        }
        // 32 · (bsum_2l · sc_2l + bsum_2l+1 · sc_2l+1) per lane `l`.
        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192).cast()));
        for r in 0..R {
            let bsums = _mm256_loadu_si256(a[r].bsums.as_ptr().add(b * 16).cast());
            let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5);
            let lanes = _mm256_sub_epi32(sums[r], offset);
            let dx = *a[r].d.get_unchecked(b);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(lanes), acc[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = hsum_f32(acc[r]);
    }
    out
}

/// Panics unless `w` is whole blocks of `format` and every row has the values, scales and
/// sums those blocks read: what makes the unchecked reads above in bounds.
fn checked<const R: usize>(format: Format, w: &[u8], a: &[ActRow<'_>; R]) {
    let (bytes, values) = (format.block_bytes(), format.block_values());
    assert_eq!(
        w.len() % bytes,
        0,
        "{format:?} weights are not whole blocks"
    );
    let nb = w.len() / bytes;
    for row in a {
        assert!(row.qs.len() >= nb * values && row.d.len() >= nb);
        match format {
            Format::Q4_1 | Format::Q5_1 => assert!(row.s.len() >= nb),
            Format::Q4K | Format::Q5K | Format::Q6K => assert!(row.bsums.len() >= nb * 16),
            _ => {}
        }
    }
}

/// Defines a tier: its `#[target_feature]` kernels, their checked safe entry points and
/// `kernel`, the table [`super::kernel`] reads once the CPU is known to have `$features`.
macro_rules! tier {
    ($tier:ident, $features:literal, $v:literal) => {
        pub(super) mod $tier {
            use super::*;

            #[target_feature(enable = $features)]
            unsafe fn small_t<const R: usize, const F: u8>(
                w: &[u8],
                a: &[ActRow<'_>; R],
            ) -> [f32; R] {
                small::<R, $v, F>(w, a)
            }

            #[target_feature(enable = $features)]
            unsafe fn q45k_t<const R: usize, const FIVE: bool>(
                w: &[u8],
                a: &[ActRow<'_>; R],
            ) -> [f32; R] {
                q45k::<R, $v, FIVE>(w, a)
            }

            #[target_feature(enable = $features)]
            unsafe fn q6k_t<const R: usize>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
                q6k::<R, $v>(w, a)
            }

            fn small_safe<const R: usize, const F: u8>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
                let format = [
                    Format::Q4_0,
                    Format::Q4_1,
                    Format::Q5_0,
                    Format::Q5_1,
                    Format::Q8_0,
                ][F as usize];
                checked(format, w, a);
                // SAFETY: `kernel` hands these out only once the CPU has the tier's features;
                // `checked` bounds every read.
                unsafe { small_t::<R, F>(w, a) }
            }

            fn q45k_safe<const R: usize, const FIVE: bool>(
                w: &[u8],
                a: &[ActRow<'_>; R],
            ) -> [f32; R] {
                checked(if FIVE { Format::Q5K } else { Format::Q4K }, w, a);
                // SAFETY: as in `small_safe`.
                unsafe { q45k_t::<R, FIVE>(w, a) }
            }

            fn q6k_safe<const R: usize>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
                checked(Format::Q6K, w, a);
                // SAFETY: as in `small_safe`.
                unsafe { q6k_t::<R>(w, a) }
            }

            /// The tier's kernel of `format` for `R` rows.
            ///
            /// # Safety
            /// The CPU has the tier's features (the kernels returned assume it).
            pub(in super::super) unsafe fn kernel<const R: usize>(format: Format) -> DotFn<R> {
                match format {
                    Format::Q4_0 => small_safe::<R, Q4_0>,
                    Format::Q4_1 => small_safe::<R, Q4_1>,
                    Format::Q5_0 => small_safe::<R, Q5_0>,
                    Format::Q5_1 => small_safe::<R, Q5_1>,
                    Format::Q8_0 => small_safe::<R, Q8_0>,
                    Format::Q4K => q45k_safe::<R, false>,
                    Format::Q5K => q45k_safe::<R, true>,
                    Format::Q6K => q6k_safe::<R>,
                    Format::Q2K | Format::Q3K => scalar::kernel::<R>(format),
                }
            }
        }
    };
}

tier!(avx2, "avx2,fma,f16c", false);
tier!(vnni, "avx2,fma,f16c,avx512f,avx512vl,avx512vnni", true);
