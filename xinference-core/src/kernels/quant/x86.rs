//! AVX2 + FMA dot products, and the same with AVX-512 VNNI's `vpdpbusd` (on 256-bit vectors)
//! in place of `vpmaddubsw` + `vpmaddwd`. Both tiers form the same exact integer sums and the
//! same float operations in the same order as [`super::scalar`] (see there), so they give the
//! same bits. Q2_K and Q3_K have no vector kernel yet: both tiers run the portable one.

use super::activation::ActRow;
use super::format::{Format, QK, QK_K};
use super::scalar::{self, add_min, hsum4, DotFn};
use super::{Panel, PanelKernel, RowsFn, TileFn, GROUP, TILE};
use std::arch::x86_64::*;

mod ktile;
use ktile::{min_lanes, mins_twice, q6k_offset, q6k_scales16, q6k_values, scales_mins_k4};
mod panel;

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

/// The f16 at `p`, widened. Written out (`vpbroadcastw` from memory writes its whole
/// register) because the compiler makes of the intrinsics a 16-bit insert (`vpinsrw`) into
/// a register it picks, keeping that register's other lanes: at times the loop's
/// accumulator, which chained each block's scale to the previous block's sum (a decode row
/// of Q4_0 / Q8_0 blocks then ran at half the speed of llama.cpp's when its weights were in
/// cache: `XINFERENCE_BENCH_QUANT=rows cargo bench --bench quant`).
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let v: __m128;
    std::arch::asm!(
        "vpbroadcastw {v}, word ptr [{p}]",
        "vcvtph2ps {v}, {v}",
        p = in(reg) p,
        v = out(xmm_reg) v,
        options(pure, readonly, nostack, preserves_flags),
    );
    _mm_cvtss_f32(v)
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
/// [`tiers`]' numbers for the super-block formats in the decode kernels.
const K4: u8 = 5;
const K5: u8 = 6;
const K6: u8 = 7;
/// The small-block formats by their number above.
const SMALL: [Format; 5] = [
    Format::Q4_0,
    Format::Q4_1,
    Format::Q5_0,
    Format::Q5_1,
    Format::Q8_0,
];

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

/// A small block's 32 values as unsigned bytes, with the offset taken off them in the
/// products (`value = byte - offset`), its scale and minimum. Q8_0 is unsigned (`w + 128`)
/// only with VNNI, whose `vpdpbusd` does not saturate; on AVX2 it stays signed (`None`).
#[inline(always)]
unsafe fn unpack_unsigned<const F: u8, const V: bool>(b: *const u8) -> (__m256i, f32, f32) {
    match F {
        Q4_0 => (nibbles(b.add(2)), f16_at(b), 0.0),
        Q5_0 => (
            _mm256_or_si256(nibbles(b.add(6)), fifth_bits(b.add(2))),
            f16_at(b),
            0.0,
        ),
        Q8_0 if V => (
            _mm256_xor_si256(load(b.add(2)), _mm256_set1_epi8(-128)),
            f16_at(b),
            0.0,
        ),
        _ => unpack_small::<F>(b),
    }
}

/// `src + ` the exact sums of four byte products per lane (unsigned `w`, signed `x`).
#[inline(always)]
unsafe fn dot_u8_add<const V: bool>(src: __m256i, w: __m256i, x: __m256i) -> __m256i {
    if V {
        _mm256_dpbusd_epi32(src, w, x)
    } else {
        _mm256_add_epi32(src, dot_u8::<false>(w, x))
    }
}

/// Weight rows of one tile of the prompt products on a tier (`V`: VNNI, 32 vector registers;
/// else AVX2's 16).
const fn tile_rows(v: bool) -> usize {
    if v {
        4
    } else {
        2
    }
}

/// A tile of the prompt products: `RW` weight rows (small-block format `F`) against `RX`
/// activation rows, each weight block unpacked once for the `RX` rows and each activation
/// block loaded once for the `RW` weight rows. Signed formats are multiplied as unsigned
/// bytes, `Σ (w + o)·x - o·Σ x` (the `o·Σ x` of each lane computed once per activation
/// block), which saves the sign flips of [`dot_i8`] per product. The integer lanes are the
/// same exact sums, and the float operations the same in the same order, as [`small`]'s: the
/// same bits.
///
/// # Safety
/// The CPU has the tier's features; every pointer of `w` holds `nb` blocks and every row of
/// `a` the values, scales and sums of `nb` blocks.
#[inline(always)]
unsafe fn small_tile<const RW: usize, const RX: usize, const V: bool, const F: u8>(
    w: [*const u8; RW],
    a: &[ActRow<'_>; RX],
    nb: usize,
) -> [[f32; RX]; RW] {
    let (bytes, offset, with_min) = match F {
        Q4_0 => (18, 8, false),
        Q4_1 => (20, 0, true),
        Q5_0 => (22, 16, false),
        Q5_1 => (24, 0, true),
        _ => (34, 128, false),
    };
    // Q8_0 on AVX2: `maddubs` would saturate on `w + 128`; signed products there.
    let signed = F == Q8_0 && !V;
    let mut acc = [[_mm256_setzero_ps(); RX]; RW];
    let mut mins = [[0f32; RX]; RW];
    for b in 0..nb {
        let x: [__m256i; RX] = std::array::from_fn(|j| load(a[j].qs.as_ptr().add(b * QK).cast()));
        // `-o · Σ x` per lane, where the products start.
        let start: [__m256i; RX] = std::array::from_fn(|j| {
            if offset == 0 || signed {
                _mm256_setzero_si256()
            } else {
                _mm256_sub_epi32(
                    _mm256_setzero_si256(),
                    dot_u8::<V>(_mm256_set1_epi8(offset as u8 as i8), x[j]),
                )
            }
        });
        let dx: [f32; RX] = std::array::from_fn(|j| *a[j].d.get_unchecked(b));
        for i in 0..RW {
            let (q, d, m) = unpack_unsigned::<F, V>(w[i].add(b * bytes));
            for j in 0..RX {
                let lanes = if signed {
                    dot_i8::<V>(q, x[j])
                } else {
                    dot_u8_add::<V>(start[j], q, x[j])
                };
                if with_min {
                    mins[i][j] = add_min(mins[i][j], m, *a[j].s.get_unchecked(b));
                }
                let dd = _mm256_set1_ps(d * dx[j]);
                acc[i][j] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes), acc[i][j]);
            }
        }
    }
    std::array::from_fn(|i| std::array::from_fn(|j| hsum_f32(acc[i][j]) + mins[i][j]))
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
    let mut accm = [_mm_setzero_ps(); R];
    for b in 0..nb {
        let blk = w.as_ptr().add(b * bytes);
        let (d, dmin) = (f16_at(blk), f16_at(blk.add(2)));
        let (sc, mn) = scales_mins_k4(blk.add(4));
        let mn_twice = mins_twice(&mn);
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
                scales::<V>(sc[2 * j] as i32, sc[2 * j] as i32),
                scales::<V>(sc[2 * j + 1] as i32, sc[2 * j + 1] as i32),
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
            let dx = *a[r].d.get_unchecked(b);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(sums[r]), acc[r]);
            let bsums = load(a[r].bsums.as_ptr().add(b * 16).cast());
            let lanes = min_lanes(bsums, mn_twice);
            let dm = -dx * dmin;
            accm[r] = _mm_fmadd_ps(_mm_set1_ps(dm), _mm_cvtepi32_ps(lanes), accm[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        let mut m = [0f32; 4];
        _mm_storeu_ps(m.as_mut_ptr(), accm[r]);
        out[r] = hsum_f32(acc[r]) + hsum4(m);
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
            let q = q6k_values(blk, n);
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
        let sc16 = q6k_scales16(blk);
        for r in 0..R {
            let bsums = _mm256_loadu_si256(a[r].bsums.as_ptr().add(b * 16).cast());
            let lanes = _mm256_sub_epi32(sums[r], q6k_offset(bsums, sc16));
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

mod tiers;
pub(super) use tiers::{avx2, vnni};
