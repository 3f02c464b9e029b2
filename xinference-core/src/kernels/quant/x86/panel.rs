//! Prompt panels of the small-block formats (Q4_0 .. Q8_0), Q4_K and Q6_K: a run of weight
//! rows unpacked once ([`unpack`], [`unpack_k`]: values as the bytes the products take, scales
//! and minimums as f32, a k-quant's scale vectors) and then multiplied against every group of
//! activation rows of the prompt ([`run`], [`run_k`]). The tiles ([`super::small_tile`],
//! [`super::ktile`]) unpacked each weight block again for every group of four activation rows
//! (a Q5_0 block's nibbles and fifth bits, a Q4_K super-block's 6-bit scales, cost more than
//! their products with four rows); here that work is paid once per weight block, whatever the
//! prompt's length.
//!
//! Signed formats are multiplied as unsigned bytes, `Σ (w + o)·x - o·Σ x`, with the
//! `-o·Σ x` lanes of each activation block computed once per group for all the panel's rows.
//! Every (weight row, activation row) pair forms the same exact integer lanes, and the same
//! float operations in the same order, as [`super::small`]: the bits of a row computed alone.

use super::ktile::{min_lanes, mins_twice, q6k_offset, q6k_scales16, q6k_values, scales_mins_k4};
use super::*;
use crate::kernels::quant::{Bytes32, Panel};

/// Unpacks `rows` weight rows of format `F` (whole blocks, `w` holding them one after the
/// other) into `panel`.
///
/// # Safety
/// The CPU has the tier's features; `w` holds `rows` rows of the same whole blocks.
#[inline(always)]
pub(super) unsafe fn unpack<const F: u8, const V: bool>(w: &[u8], rows: usize, panel: &mut Panel) {
    let bytes = small_bytes(F);
    let blocks = w.len() / bytes;
    panel.rows = rows;
    panel.nb = blocks.checked_div(rows).unwrap_or(0);
    panel.vals.clear();
    panel.vals.resize(blocks, Default::default());
    panel.d.clear();
    panel.d.resize(blocks, 0.0);
    panel.m.clear();
    panel.m.resize(blocks, 0.0);
    for b in 0..blocks {
        let (q, d, m) = unpack_unsigned::<F, V>(w.as_ptr().add(b * bytes));
        _mm256_store_si256(panel.vals.as_mut_ptr().add(b).cast(), q);
        *panel.d.get_unchecked_mut(b) = d;
        *panel.m.get_unchecked_mut(b) = m;
    }
}

/// Bytes of a small block of format `F`.
const fn small_bytes(f: u8) -> usize {
    match f {
        Q4_0 => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        Q5_1 => 24,
        _ => 34,
    }
}

/// The offset `o` of format `F`'s unpacked bytes (`value = byte - o`), 0 where they are the
/// values (and for Q8_0 on AVX2, whose signed bytes are multiplied with sign flips).
const fn offset(f: u8, v: bool) -> i32 {
    match f {
        Q4_0 => 8,
        Q5_0 => 16,
        Q8_0 if v => 128,
        _ => 0,
    }
}

/// Every row of `panel` (a multiple of the tier's tile rows) against the `RX` activation rows
/// `a`: `out[i][j]` = weight row `i` · activation row `j`.
///
/// # Safety
/// The CPU has the tier's features; every row of `a` holds the values, scales and sums of the
/// panel's `nb` blocks; `out` holds `panel.rows` entries.
#[inline(always)]
pub(super) unsafe fn run<const RW: usize, const RX: usize, const V: bool, const F: u8>(
    panel: &mut Panel,
    a: &[ActRow<'_>; RX],
    out: &mut [[f32; RX]],
) {
    let nb = panel.nb;
    let o = offset(F, V);
    // `-o · Σ x` per lane of every activation block, computed once for all weight rows.
    panel.starts.clear();
    if o != 0 {
        panel.starts.resize(nb * RX, Default::default());
        let ob = _mm256_set1_epi8(o as u8 as i8);
        for b in 0..nb {
            for (j, row) in a.iter().enumerate() {
                let x = load(row.qs.as_ptr().add(b * QK).cast());
                let start = _mm256_sub_epi32(_mm256_setzero_si256(), dot_u8::<V>(ob, x));
                _mm256_store_si256(panel.starts.as_mut_ptr().add(b * RX + j).cast(), start);
            }
        }
    }
    let mut i = 0;
    while i + RW <= panel.rows {
        let got = tile::<RW, RX, V, F>(panel, i, a);
        out[i..i + RW].copy_from_slice(&got);
        i += RW;
    }
}

/// Panel rows `i0..i0 + RW` against `a`.
#[inline(always)]
unsafe fn tile<const RW: usize, const RX: usize, const V: bool, const F: u8>(
    panel: &Panel,
    i0: usize,
    a: &[ActRow<'_>; RX],
) -> [[f32; RX]; RW] {
    let nb = panel.nb;
    let with_min = matches!(F, Q4_1 | Q5_1);
    let signed = offset(F, V) == 0 && F == Q8_0;
    let with_start = offset(F, V) != 0;
    let vals = panel.vals.as_ptr().add(i0 * nb).cast::<__m256i>();
    let ds = panel.d.as_ptr().add(i0 * nb);
    let ms = panel.m.as_ptr().add(i0 * nb);
    let starts = panel.starts.as_ptr().cast::<__m256i>();
    let mut acc = [[_mm256_setzero_ps(); RX]; RW];
    let mut mins = [[0f32; RX]; RW];
    for b in 0..nb {
        let q: [__m256i; RW] = std::array::from_fn(|i| _mm256_load_si256(vals.add(i * nb + b)));
        let dw: [__m256; RW] = std::array::from_fn(|i| _mm256_broadcast_ss(&*ds.add(i * nb + b)));
        for j in 0..RX {
            let x = load(a[j].qs.as_ptr().add(b * QK).cast());
            let dx = _mm256_broadcast_ss(a[j].d.get_unchecked(b));
            for i in 0..RW {
                let lanes = if signed {
                    dot_i8::<V>(q[i], x)
                } else if with_start {
                    dot_u8_add::<V>(_mm256_load_si256(starts.add(b * RX + j)), q[i], x)
                } else {
                    dot_u8::<V>(q[i], x)
                };
                if with_min {
                    mins[i][j] = add_min(mins[i][j], *ms.add(i * nb + b), *a[j].s.get_unchecked(b));
                }
                let dd = _mm256_mul_ps(dw[i], dx);
                acc[i][j] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes), acc[i][j]);
            }
        }
    }
    std::array::from_fn(|i| std::array::from_fn(|j| hsum_f32(acc[i][j]) + mins[i][j]))
}

/// Unpacks `rows` weight rows of Q4_K (`SIX` false) or Q6_K into `panel`: per super-block its
/// eight 32-value chunks (the values as unsigned bytes, the chunk order of the activations),
/// each chunk's scale vector for [`dot_scaled`], then Q4_K's minimums ([`mins_twice`]) or
/// Q6_K's scales ([`q6k_scales16`]), the scale and Q4_K's minimum scale.
///
/// # Safety
/// As [`unpack`].
#[inline(always)]
pub(super) unsafe fn unpack_k<const SIX: bool, const V: bool>(
    w: &[u8],
    rows: usize,
    panel: &mut Panel,
) {
    let bytes = if SIX { 210 } else { 144 };
    let blocks = w.len() / bytes;
    panel.rows = rows;
    panel.nb = blocks.checked_div(rows).unwrap_or(0);
    for v in [&mut panel.vals, &mut panel.scales] {
        v.clear();
        v.resize(8 * blocks, Default::default());
    }
    panel.extra.clear();
    panel.extra.resize(blocks, Default::default());
    panel.d.clear();
    panel.d.resize(blocks, 0.0);
    panel.m.clear();
    panel.m.resize(blocks, 0.0);
    let store = |v: &mut Vec<Bytes32>, at: usize, x: __m256i| {
        _mm256_store_si256(v.as_mut_ptr().add(at).cast(), x);
    };
    for b in 0..blocks {
        let blk = w.as_ptr().add(b * bytes);
        if SIX {
            let sc = |g: usize| *blk.add(192 + g) as i8 as i32;
            for n in 0..2 {
                for (t, q) in q6k_values(blk, n).into_iter().enumerate() {
                    let (c, g) = (8 * b + 4 * n + t, 8 * n + 2 * t);
                    store(&mut panel.vals, c, q);
                    store(&mut panel.scales, c, scales::<V>(sc(g), sc(g + 1)));
                }
            }
            store(&mut panel.extra, b, q6k_scales16(blk));
            panel.d[b] = f16_at(blk.add(208));
        } else {
            let (sc, mn) = scales_mins_k4(blk.add(4));
            let low = _mm256_set1_epi8(0x0F);
            for j in 0..4 {
                let q = load(blk.add(16 + 32 * j));
                let halves = [
                    _mm256_and_si256(q, low),
                    _mm256_and_si256(_mm256_srli_epi16(q, 4), low),
                ];
                for (h, v) in halves.into_iter().enumerate() {
                    let (c, s) = (8 * b + 2 * j + h, sc[2 * j + h] as i32);
                    store(&mut panel.vals, c, v);
                    store(&mut panel.scales, c, scales::<V>(s, s));
                }
            }
            store(&mut panel.extra, b, mins_twice(&mn));
            panel.d[b] = f16_at(blk);
            panel.m[b] = f16_at(blk.add(2));
        }
    }
}

/// Every row of a Q4_K / Q6_K `panel` against the `RX` activation rows `a`, as [`run`].
///
/// # Safety
/// As [`run`] (Q8K rows: values, scales and block sums of the panel's super-blocks).
#[inline(always)]
pub(super) unsafe fn run_k<const RW: usize, const RX: usize, const V: bool, const SIX: bool>(
    panel: &Panel,
    a: &[ActRow<'_>; RX],
    out: &mut [[f32; RX]],
) {
    let mut i = 0;
    while i + RW <= panel.rows {
        let got = tile_k::<RW, RX, V, SIX>(panel, i, a);
        out[i..i + RW].copy_from_slice(&got);
        i += RW;
    }
}

/// Panel rows `i0..i0 + RW` of Q4_K / Q6_K against `a`: the integer lanes and float
/// operations of [`super::ktile::q4k_tile`] / [`super::ktile::q6k_tile`].
#[inline(always)]
unsafe fn tile_k<const RW: usize, const RX: usize, const V: bool, const SIX: bool>(
    panel: &Panel,
    i0: usize,
    a: &[ActRow<'_>; RX],
) -> [[f32; RX]; RW] {
    let nb = panel.nb;
    let vals = panel.vals.as_ptr().add(8 * i0 * nb).cast::<__m256i>();
    let scs = panel.scales.as_ptr().add(8 * i0 * nb).cast::<__m256i>();
    let extra = panel.extra.as_ptr().add(i0 * nb).cast::<__m256i>();
    let (ds, dmins) = (panel.d.as_ptr().add(i0 * nb), panel.m.as_ptr().add(i0 * nb));
    let mut acc = [[_mm256_setzero_ps(); RX]; RW];
    let mut accm = [[_mm_setzero_ps(); RX]; RW];
    for b in 0..nb {
        let mut sums = [[_mm256_setzero_si256(); RX]; RW];
        for c in 0..8 {
            let x: [__m256i; RX] =
                std::array::from_fn(|r| load(a[r].qs.as_ptr().add(b * QK_K + 32 * c).cast()));
            for (i, sums) in sums.iter_mut().enumerate() {
                let at = 8 * (i * nb + b) + c;
                let (q, s) = (
                    _mm256_load_si256(vals.add(at)),
                    _mm256_load_si256(scs.add(at)),
                );
                for (sum, &x) in sums.iter_mut().zip(&x) {
                    *sum = _mm256_add_epi32(*sum, dot_scaled::<V>(q, x, s));
                }
            }
        }
        let bsums: [__m256i; RX] =
            std::array::from_fn(|r| load(a[r].bsums.as_ptr().add(b * 16).cast()));
        for i in 0..RW {
            let (d, e) = (
                *ds.add(i * nb + b),
                _mm256_load_si256(extra.add(i * nb + b)),
            );
            for r in 0..RX {
                let dx = *a[r].d.get_unchecked(b);
                let lanes = if SIX {
                    _mm256_sub_epi32(sums[i][r], q6k_offset(bsums[r], e))
                } else {
                    sums[i][r]
                };
                acc[i][r] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(lanes), acc[i][r]);
                if !SIX {
                    let dm = -dx * *dmins.add(i * nb + b);
                    let m = _mm_cvtepi32_ps(min_lanes(bsums[r], e));
                    accm[i][r] = _mm_fmadd_ps(_mm_set1_ps(dm), m, accm[i][r]);
                }
            }
        }
    }
    std::array::from_fn(|i| {
        std::array::from_fn(|r| {
            if SIX {
                hsum_f32(acc[i][r])
            } else {
                let mut m = [0f32; 4];
                _mm_storeu_ps(m.as_mut_ptr(), accm[i][r]);
                hsum_f32(acc[i][r]) + hsum4(m)
            }
        })
    })
}
