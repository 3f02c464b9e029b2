//! What the row kernels ([`super::q45k`], [`super::q6k`]) and the prompt tiles of the
//! super-block formats share: the unpacking of Q4_K / Q5_K scales and minimums and of Q6_K
//! values and scales. Then the tiles of Q4_K and Q6_K against Q8_K rows: `RW` weight rows
//! against `RX` activation rows, each weight super-block unpacked once for the `RX` rows and
//! each activation block loaded once for the `RW` weight rows. Every (weight row, activation
//! row) pair forms the same exact integer lanes, and the same float operations in the same
//! order, as [`super::q45k`] / [`super::q6k`] (which the portable kernels define): the same
//! bits as a row computed alone.

use super::*;

/// The eight 6-bit scales and eight minimums of a Q4_K / Q5_K super-block from its 12 bytes at
/// `q` (`format::scale_min_k4` for every `j`, as llama.cpp's `kmask` words unpack them).
#[inline(always)]
pub(super) unsafe fn scales_mins_k4(q: *const u8) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let word =
        |i: usize| u32::from_le_bytes([*q.add(i), *q.add(i + 1), *q.add(i + 2), *q.add(i + 3)]);
    let (u0, u1, u2) = (word(0), word(4), word(8));
    let scales = [u0 & KMASK1, (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4)];
    let mins = [
        u1 & KMASK1,
        ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
    ];
    let bytes = |w: [u32; 2]| {
        let (a, b) = (w[0].to_le_bytes(), w[1].to_le_bytes());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    };
    (bytes(scales), bytes(mins))
}

/// A Q4_K / Q5_K super-block's eight minimums, each twice, for `vpmaddwd` against the sums
/// of 16 activations ([`min_lanes`]).
#[inline(always)]
pub(super) unsafe fn mins_twice(mn: &[u8; 8]) -> __m256i {
    let mn16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(mn.as_ptr().cast()));
    _mm256_set_m128i(
        _mm_unpackhi_epi16(mn16, mn16),
        _mm_unpacklo_epi16(mn16, mn16),
    )
}

/// The four minimum lanes of a Q4_K / Q5_K super-block against one activation row's 16
/// `bsums`: lane `t` is `mn_2t · P_2t + mn_2t+1 · P_2t+1` (exact integers), `P_j` the sum of
/// sub-block `j`'s 32 activations.
#[inline(always)]
pub(super) unsafe fn min_lanes(bsums: __m256i, mn_twice: __m256i) -> __m128i {
    let per_block = _mm256_madd_epi16(bsums, mn_twice);
    let pairs = _mm256_hadd_epi32(per_block, per_block);
    _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(pairs))
}

/// The four 32-value groups of half `n` of a Q6_K super-block at `blk`, as unsigned 6-bit
/// values (the stored value plus 32).
#[inline(always)]
pub(super) unsafe fn q6k_values(blk: *const u8, n: usize) -> [__m256i; 4] {
    let (low, high) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    let ql0 = load(blk.add(64 * n));
    let ql1 = load(blk.add(64 * n + 32));
    let qh = load(blk.add(128 + 32 * n));
    [
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
    ]
}

/// A Q6_K super-block's sixteen scales at `blk` as i16, for [`q6k_offset`].
#[inline(always)]
pub(super) unsafe fn q6k_scales16(blk: *const u8) -> __m256i {
    _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192).cast()))
}

/// `32 · (bsum_2l · sc_2l + bsum_2l+1 · sc_2l+1)` per lane `l`: what Q6_K's unsigned values
/// add over the signed ones.
#[inline(always)]
pub(super) unsafe fn q6k_offset(bsums: __m256i, sc16: __m256i) -> __m256i {
    _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5)
}

/// Q4_K's tile.
///
/// # Safety
/// The CPU has the tier's features; every pointer of `w` holds `nb` super-blocks and every row
/// of `a` the values, scales and block sums of `nb` super-blocks.
#[inline(always)]
pub(super) unsafe fn q4k_tile<const RW: usize, const RX: usize, const V: bool>(
    w: [*const u8; RW],
    a: &[ActRow<'_>; RX],
    nb: usize,
) -> [[f32; RX]; RW] {
    const BYTES: usize = 144;
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm256_setzero_ps(); RX]; RW];
    let mut accm = [[_mm_setzero_ps(); RX]; RW];
    for b in 0..nb {
        let blk: [*const u8; RW] = std::array::from_fn(|i| w[i].add(b * BYTES));
        let mut sc = [[0u8; 8]; RW];
        let mut mn = [[0u8; 8]; RW];
        for i in 0..RW {
            (sc[i], mn[i]) = scales_mins_k4(blk[i].add(4));
        }
        let mut sums = [[_mm256_setzero_si256(); RX]; RW];
        for j in 0..4 {
            let x: [[__m256i; 2]; RX] = std::array::from_fn(|r| {
                let p = a[r].qs.as_ptr().add(b * QK_K + 64 * j).cast::<u8>();
                [load(p), load(p.add(32))]
            });
            for i in 0..RW {
                let q = load(blk[i].add(16 + 32 * j));
                let lo = _mm256_and_si256(q, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
                let (s_lo, s_hi) = (
                    scales::<V>(sc[i][2 * j] as i32, sc[i][2 * j] as i32),
                    scales::<V>(sc[i][2 * j + 1] as i32, sc[i][2 * j + 1] as i32),
                );
                for r in 0..RX {
                    let part = _mm256_add_epi32(
                        dot_scaled::<V>(lo, x[r][0], s_lo),
                        dot_scaled::<V>(hi, x[r][1], s_hi),
                    );
                    sums[i][r] = _mm256_add_epi32(sums[i][r], part);
                }
            }
        }
        let bsums: [__m256i; RX] =
            std::array::from_fn(|r| load(a[r].bsums.as_ptr().add(b * 16).cast()));
        for i in 0..RW {
            let (d, dmin) = (f16_at(blk[i]), f16_at(blk[i].add(2)));
            let mn_twice = mins_twice(&mn[i]);
            for r in 0..RX {
                let dx = *a[r].d.get_unchecked(b);
                acc[i][r] = _mm256_fmadd_ps(
                    _mm256_set1_ps(dx * d),
                    _mm256_cvtepi32_ps(sums[i][r]),
                    acc[i][r],
                );
                let lanes = min_lanes(bsums[r], mn_twice);
                let dm = -dx * dmin;
                accm[i][r] = _mm_fmadd_ps(_mm_set1_ps(dm), _mm_cvtepi32_ps(lanes), accm[i][r]);
            }
        }
    }
    std::array::from_fn(|i| {
        std::array::from_fn(|r| {
            let mut m = [0f32; 4];
            _mm_storeu_ps(m.as_mut_ptr(), accm[i][r]);
            hsum_f32(acc[i][r]) + hsum4(m)
        })
    })
}

/// Q6_K's tile.
///
/// # Safety
/// As [`q4k_tile`].
#[inline(always)]
pub(super) unsafe fn q6k_tile<const RW: usize, const RX: usize, const V: bool>(
    w: [*const u8; RW],
    a: &[ActRow<'_>; RX],
    nb: usize,
) -> [[f32; RX]; RW] {
    const BYTES: usize = 210;
    let mut acc = [[_mm256_setzero_ps(); RX]; RW];
    for b in 0..nb {
        let blk: [*const u8; RW] = std::array::from_fn(|i| w[i].add(b * BYTES));
        let mut sums = [[_mm256_setzero_si256(); RX]; RW];
        for n in 0..2 {
            // The four 32-value groups of this half, per weight row.
            let by_row: [[__m256i; 4]; RW] = std::array::from_fn(|i| q6k_values(blk[i], n));
            let q: [[__m256i; RW]; 4] =
                std::array::from_fn(|t| std::array::from_fn(|i| by_row[i][t]));
            for (t, qt) in q.iter().enumerate() {
                let g = 8 * n + 2 * t;
                let x: [__m256i; RX] = std::array::from_fn(|r| {
                    load(
                        a[r].qs
                            .as_ptr()
                            .add(b * QK_K + 128 * n + 32 * t)
                            .cast::<u8>(),
                    )
                });
                for i in 0..RW {
                    let s = scales::<V>(
                        *blk[i].add(192 + g) as i8 as i32,
                        *blk[i].add(192 + g + 1) as i8 as i32,
                    );
                    for r in 0..RX {
                        sums[i][r] = _mm256_add_epi32(sums[i][r], dot_scaled::<V>(qt[i], x[r], s));
                    }
                }
            }
        }
        let bsums: [__m256i; RX] =
            std::array::from_fn(|r| _mm256_loadu_si256(a[r].bsums.as_ptr().add(b * 16).cast()));
        for i in 0..RW {
            let d = f16_at(blk[i].add(208));
            let sc16 = q6k_scales16(blk[i]);
            for r in 0..RX {
                let lanes = _mm256_sub_epi32(sums[i][r], q6k_offset(bsums[r], sc16));
                let dx = *a[r].d.get_unchecked(b);
                acc[i][r] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(lanes), acc[i][r]);
            }
        }
    }
    std::array::from_fn(|i| std::array::from_fn(|r| hsum_f32(acc[i][r])))
}
