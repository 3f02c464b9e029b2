//! Portable dot products, and the definition of the numbers every tier computes: llama.cpp's
//! AVX2 arithmetic (`ggml-cpu/arch/x86/quants.c`), integer sums exact, float operations in the
//! same order.
//!
//! Small blocks (32 values): each block's integer products are summed in eight lanes of four
//! consecutive values (lane `j`: values `4j..4j + 4`), each lane accumulates
//! `fma(d_w * d_x, lane, acc_j)` over the blocks, and the lanes are summed as
//! `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`. Q4_1 / Q5_1 also sum their minimums
//! `m_w · s_x` block after block in one float, added to the lanes' sum last.
//!
//! Q4_K / Q5_K / Q6_K: the same eight lanes, value `e` of a super-block in lane `(e % 32) / 4`,
//! each product times its scale; Q6_K takes `32 · (bsum_2l · sc_2l + bsum_2l+1 · sc_2l+1)` off
//! lane `l`; `acc_l = fma(d_x * d_w, lane_l, acc_l)`. Q4_K / Q5_K's minimums go in four
//! lanes (`m_2t · P_2t + m_2t+1 · P_2t+1`, `P_j` the activation sum of the 32 values of `j`),
//! `accm_t = fma(-d_x * dmin_w, lane_t, accm_t)`, summed `(m0 + m2) + (m1 + m3)` and added last.
//! Q2_K / Q3_K (no vector kernel yet): each super-block's integer sums whole, then
//! `acc = fma(d_x * d_w, sumi, acc)` and `acc = fma(-(d_x * dmin_w), mins, acc)`.
//!
//! The SIMD tiers compute the same integers and the same float operations in the same order,
//! so every tier gives the same bits.

use super::activation::ActRow;
use super::format::{f16_at, q3k_scales, scale_min_k4, Format, QK, QK_K};

/// A dot-product kernel: one weight row (whole blocks) against `R` activation rows.
pub type DotFn<const R: usize> = fn(&[u8], &[ActRow<'_>; R]) -> [f32; R];

/// The values of a small block as integers, its scale and its minimum (0 when it has none).
type Unpacked32 = ([i8; QK], f32, f32);

fn unpack_q4_0(b: &[u8]) -> Unpacked32 {
    let mut q = [0i8; QK];
    for i in 0..16 {
        q[i] = (b[2 + i] & 0xF) as i8 - 8;
        q[i + 16] = (b[2 + i] >> 4) as i8 - 8;
    }
    (q, f16_at(b), 0.0)
}

fn unpack_q4_1(b: &[u8]) -> Unpacked32 {
    let mut q = [0i8; QK];
    for i in 0..16 {
        q[i] = (b[4 + i] & 0xF) as i8;
        q[i + 16] = (b[4 + i] >> 4) as i8;
    }
    (q, f16_at(b), f16_at(&b[2..]))
}

/// Q5 values: `qs` nibbles, the fifth bit of value `e` is bit `e` of `qh`.
fn five_bits(qh: &[u8], qs: &[u8], offset: i8) -> [i8; QK] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0i8; QK];
    for i in 0..16 {
        let h0 = (((qh >> i) & 1) << 4) as u8;
        let h1 = (((qh >> (i + 16)) & 1) << 4) as u8;
        q[i] = ((qs[i] & 0xF) | h0) as i8 - offset;
        q[i + 16] = ((qs[i] >> 4) | h1) as i8 - offset;
    }
    q
}

fn unpack_q5_0(b: &[u8]) -> Unpacked32 {
    (five_bits(&b[2..6], &b[6..22], 16), f16_at(b), 0.0)
}

fn unpack_q5_1(b: &[u8]) -> Unpacked32 {
    (
        five_bits(&b[4..8], &b[8..24], 0),
        f16_at(b),
        f16_at(&b[2..]),
    )
}

fn unpack_q8_0(b: &[u8]) -> Unpacked32 {
    let mut q = [0i8; QK];
    for (v, byte) in q.iter_mut().zip(&b[2..34]) {
        *v = *byte as i8;
    }
    (q, f16_at(b), 0.0)
}

/// The lanes' sum, in the order the SIMD tiers sum a vector of eight.
#[inline(always)]
pub fn hsum8(a: [f32; 8]) -> f32 {
    let t = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

fn dot_small<const R: usize>(
    w: &[u8],
    a: &[ActRow<'_>; R],
    bytes: usize,
    unpack: fn(&[u8]) -> Unpacked32,
    with_min: bool,
) -> [f32; R] {
    let mut acc = [[0f32; 8]; R];
    let mut mins = [0f32; R];
    for (b, block) in w.chunks_exact(bytes).enumerate() {
        let (q, d, m) = unpack(block);
        for r in 0..R {
            let x = &a[r].qs[b * QK..(b + 1) * QK];
            if with_min {
                mins[r] = add_min(mins[r], m, a[r].s[b]);
            }
            let dd = d * a[r].d[b];
            for (j, lane) in acc[r].iter_mut().enumerate() {
                let sum: i32 = (4 * j..4 * j + 4).map(|e| q[e] as i32 * x[e] as i32).sum();
                *lane = dd.mul_add(sum as f32, *lane);
            }
        }
    }
    std::array::from_fn(|r| hsum8(acc[r]) + mins[r])
}

/// Q4_1 / Q5_1: a block's minimum term `m_w · s_x` added to the running sum of minimums, as
/// llama.cpp's `summs += m * s` compiles with FMA contraction.
#[inline(always)]
pub fn add_min(sum: f32, m: f32, s: f32) -> f32 {
    m.mul_add(s, sum)
}

/// A k-quant super-block as integers: values, a scale and a minimum per 16 values, and the
/// float scale and minimum scale (`dmin` 0 when the format has none).
struct UnpackedK {
    q: [i8; QK_K],
    scales: [i32; 16],
    mins: [i32; 16],
    d: f32,
    dmin: f32,
}

fn unpack_q2k(b: &[u8]) -> UnpackedK {
    let (sc, qs) = (&b[0..16], &b[16..80]);
    let mut u = UnpackedK {
        q: [0; QK_K],
        scales: std::array::from_fn(|g| (sc[g] & 0xF) as i32),
        mins: std::array::from_fn(|g| (sc[g] >> 4) as i32),
        d: f16_at(&b[80..]),
        dmin: f16_at(&b[82..]),
    };
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                u.q[128 * n + 32 * j + l] = ((qs[32 * n + l] >> (2 * j)) & 3) as i8;
            }
        }
    }
    u
}

fn unpack_q3k(b: &[u8]) -> UnpackedK {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let scales = q3k_scales(&b[96..108]);
    let mut u = UnpackedK {
        q: [0; QK_K],
        scales: std::array::from_fn(|g| scales[g] as i32),
        mins: [0; 16],
        d: f16_at(&b[108..]),
        dmin: 0.0,
    };
    for n in 0..2 {
        for j in 0..4 {
            let m = 1u8 << (4 * n + j);
            for l in 0..32 {
                let low = ((qs[32 * n + l] >> (2 * j)) & 3) as i8;
                let high = if hmask[l] & m != 0 { 0 } else { 4 };
                u.q[128 * n + 32 * j + l] = low - high;
            }
        }
    }
    u
}

/// Q4_K / Q5_K: 6-bit scales and minimums per 32 values (repeated for each 16).
fn k4_scales(sc: &[u8], u: &mut UnpackedK) {
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, sc);
        u.scales[2 * j] = s as i32;
        u.scales[2 * j + 1] = s as i32;
        u.mins[2 * j] = m as i32;
        u.mins[2 * j + 1] = m as i32;
    }
}

fn unpack_q4k(b: &[u8]) -> UnpackedK {
    let mut u = UnpackedK {
        q: [0; QK_K],
        scales: [0; 16],
        mins: [0; 16],
        d: f16_at(b),
        dmin: f16_at(&b[2..]),
    };
    k4_scales(&b[4..16], &mut u);
    let qs = &b[16..144];
    for j in 0..4 {
        for l in 0..32 {
            u.q[64 * j + l] = (qs[32 * j + l] & 0xF) as i8;
            u.q[64 * j + 32 + l] = (qs[32 * j + l] >> 4) as i8;
        }
    }
    u
}

fn unpack_q5k(b: &[u8]) -> UnpackedK {
    let mut u = UnpackedK {
        q: [0; QK_K],
        scales: [0; 16],
        mins: [0; 16],
        d: f16_at(b),
        dmin: f16_at(&b[2..]),
    };
    k4_scales(&b[4..16], &mut u);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for j in 0..4 {
        for l in 0..32 {
            let h0 = if qh[l] & (1 << (2 * j)) != 0 { 16 } else { 0 };
            let h1 = if qh[l] & (2 << (2 * j)) != 0 { 16 } else { 0 };
            u.q[64 * j + l] = ((qs[32 * j + l] & 0xF) | h0) as i8;
            u.q[64 * j + 32 + l] = ((qs[32 * j + l] >> 4) | h1) as i8;
        }
    }
    u
}

fn unpack_q6k(b: &[u8]) -> UnpackedK {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let mut u = UnpackedK {
        q: [0; QK_K],
        scales: std::array::from_fn(|g| sc[g] as i8 as i32),
        mins: [0; 16],
        d: f16_at(&b[208..]),
        dmin: 0.0,
    };
    for n in 0..2 {
        let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
        for l in 0..32 {
            let y = &mut u.q[128 * n..];
            y[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    u
}

/// One super-block's contribution, as every tier adds it.
#[inline(always)]
pub fn add_superblock(acc: f32, dx: f32, d: f32, dmin: f32, sumi: i32, mins: i32) -> f32 {
    let acc = (dx * d).mul_add(sumi as f32, acc);
    if dmin == 0.0 && mins == 0 {
        acc
    } else {
        (-(dx * dmin)).mul_add(mins as f32, acc)
    }
}

/// Q2_K / Q3_K: whole integer sums per super-block.
fn dot_k<const R: usize>(
    w: &[u8],
    a: &[ActRow<'_>; R],
    bytes: usize,
    unpack: fn(&[u8]) -> UnpackedK,
) -> [f32; R] {
    let mut acc = [0f32; R];
    for (b, block) in w.chunks_exact(bytes).enumerate() {
        let u = unpack(block);
        for r in 0..R {
            let x = &a[r].qs[b * QK_K..(b + 1) * QK_K];
            let bsums = &a[r].bsums[b * 16..(b + 1) * 16];
            let mut sumi = 0i32;
            let mut mins = 0i32;
            for (g, bsum) in bsums.iter().enumerate() {
                let dot: i32 = (16 * g..16 * g + 16)
                    .map(|e| u.q[e] as i32 * x[e] as i32)
                    .sum();
                sumi += u.scales[g] * dot;
                mins += u.mins[g] * *bsum as i32;
            }
            acc[r] = add_superblock(acc[r], a[r].d[b], u.d, u.dmin, sumi, mins);
        }
    }
    acc
}

/// Q4_K / Q5_K (`SIX` false) and Q6_K (`SIX` true) in llama.cpp's lanes.
fn dot_k_lanes<const R: usize, const SIX: bool>(
    w: &[u8],
    a: &[ActRow<'_>; R],
    bytes: usize,
    unpack: fn(&[u8]) -> UnpackedK,
) -> [f32; R] {
    let mut acc = [[0f32; 8]; R];
    let mut accm = [[0f32; 4]; R];
    let offset = if SIX { 32 } else { 0 };
    for (b, block) in w.chunks_exact(bytes).enumerate() {
        let u = unpack(block);
        for r in 0..R {
            let x = &a[r].qs[b * QK_K..(b + 1) * QK_K];
            let bsums = &a[r].bsums[b * 16..(b + 1) * 16];
            let mut lanes = [0i32; 8];
            for e in 0..QK_K {
                lanes[(e % 32) / 4] += u.scales[e / 16] * (u.q[e] as i32 + offset) * x[e] as i32;
            }
            let dx = a[r].d[b];
            let d = dx * u.d;
            for (l, lane) in lanes.iter_mut().enumerate() {
                if SIX {
                    *lane -= 32
                        * (bsums[2 * l] as i32 * u.scales[2 * l]
                            + bsums[2 * l + 1] as i32 * u.scales[2 * l + 1]);
                }
                acc[r][l] = d.mul_add(*lane as f32, acc[r][l]);
            }
            if !SIX {
                let dmin = -dx * u.dmin;
                let p = |j: usize| bsums[2 * j] as i32 + bsums[2 * j + 1] as i32;
                for (t, m) in accm[r].iter_mut().enumerate() {
                    let lane = u.mins[4 * t] * p(2 * t) + u.mins[4 * t + 2] * p(2 * t + 1);
                    *m = dmin.mul_add(lane as f32, *m);
                }
            }
        }
    }
    std::array::from_fn(|r| hsum8(acc[r]) + hsum4(accm[r]))
}

/// Four lanes summed as llama.cpp sums its minimums: `(m0 + m2) + (m1 + m3)`.
#[inline(always)]
pub fn hsum4(m: [f32; 4]) -> f32 {
    (m[0] + m[2]) + (m[1] + m[3])
}

macro_rules! scalar_kernels {
    ($($name:ident => $body:expr;)*) => {
        $(
            fn $name<const R: usize>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
                $body(w, a)
            }
        )*
    };
}

scalar_kernels! {
    q4_0 => |w, a| dot_small(w, a, 18, unpack_q4_0, false);
    q4_1 => |w, a| dot_small(w, a, 20, unpack_q4_1, true);
    q5_0 => |w, a| dot_small(w, a, 22, unpack_q5_0, false);
    q5_1 => |w, a| dot_small(w, a, 24, unpack_q5_1, true);
    q8_0 => |w, a| dot_small(w, a, 34, unpack_q8_0, false);
    q2k => |w, a| dot_k(w, a, 84, unpack_q2k);
    q3k => |w, a| dot_k(w, a, 110, unpack_q3k);
    q4k => |w, a| dot_k_lanes::<R, false>(w, a, 144, unpack_q4k);
    q5k => |w, a| dot_k_lanes::<R, false>(w, a, 176, unpack_q5k);
    q6k => |w, a| dot_k_lanes::<R, true>(w, a, 210, unpack_q6k);
}

/// The portable kernel of `format` for `R` activation rows.
pub fn kernel<const R: usize>(format: Format) -> DotFn<R> {
    match format {
        Format::Q4_0 => q4_0::<R>,
        Format::Q4_1 => q4_1::<R>,
        Format::Q5_0 => q5_0::<R>,
        Format::Q5_1 => q5_1::<R>,
        Format::Q8_0 => q8_0::<R>,
        Format::Q2K => q2k::<R>,
        Format::Q3K => q3k::<R>,
        Format::Q4K => q4k::<R>,
        Format::Q5K => q5k::<R>,
        Format::Q6K => q6k::<R>,
    }
}
