//! The encoder's self-attention, fused: for each small block of query rows of one head, the
//! scores against the window's keys, their softmax and the product with the values, with the
//! block's few score rows (`ROWS x frames`, ~36 KB) kept in the L1/L2 caches instead of
//! writing `256 x 1500` score matrices to memory between two `gemm` calls and reading them
//! back (and instead of `gemm` packing each head's keys and values again for every block).
//!
//! Each head's keys are packed once per window, transposed in panels of 16 frames
//! (`[frames / 16][head_dim][16]`), its values `[frames][head_dim]`. The products run in
//! register tiles of up to 6 query rows by 16 frames (scores) or 16 value columns (output):
//! AVX2/FMA code chosen at run time, with a portable fallback doing the same fused
//! multiply-adds in the same order. Every output value depends only on its own query row (each
//! score is one chain of multiply-adds over the head's dimensions, each output one chain over
//! the frames), so a window's result is the same bits whatever the batch, the blocks or the
//! threads, and the same on both code paths.

use crate::kernels;
use rayon::prelude::*;

/// Query rows of a register tile.
const ROWS: usize = 6;
/// Frames of a key panel (two AVX2 vectors).
const PANEL: usize = 16;
/// Query rows of one pool task (all heads of these rows).
const TASK_ROWS: usize = 8 * ROWS;

/// One head's keys and values of one window, packed for the kernels.
struct Packed {
    /// `[frames.div_ceil(16)][head_dim][16]`: the keys transposed in panels of 16 frames
    /// (frames past the window's are zero).
    kt: Vec<f32>,
    /// `[frames][head_dim]`.
    v: Vec<f32>,
}

/// The encoder's attention of `b` windows of `t` frames: `qkv` is `[b * t][3d]` (the query,
/// key and value projections side by side, heads side by side in each); writes `[b * t][d]`
/// into `out`. Blocks of query rows (every head of them) run as tasks on the pool.
pub(crate) fn encoder_attention(
    qkv: &[f32],
    out: &mut [f32],
    (b, t, d, heads): (usize, usize, usize, usize),
) {
    assert!(qkv.len() >= b * t * 3 * d && out.len() >= b * t * d && d % heads == 0);
    if b * t == 0 {
        return;
    }
    let hd = d / heads;
    let panels = t.div_ceil(PANEL);
    let packed: Vec<Packed> = (0..b * heads)
        .into_par_iter()
        .map(|wh| {
            let (w, h) = (wh / heads, wh % heads);
            let base = w * t * 3 * d + h * hd;
            let mut kt = vec![0f32; panels * hd * PANEL];
            let mut v = vec![0f32; t * hd];
            for j in 0..t {
                let row = &qkv[base + j * 3 * d..];
                let panel = &mut kt[(j / PANEL) * hd * PANEL + j % PANEL..];
                for (e, &k) in row[d..d + hd].iter().enumerate() {
                    panel[e * PANEL] = k;
                }
                v[j * hd..][..hd].copy_from_slice(&row[2 * d..2 * d + hd]);
            }
            Packed { kt, v }
        })
        .collect();
    let scale = 1.0 / (hd as f32).sqrt();
    let chunks_per_window = t.div_ceil(TASK_ROWS);
    // Tasks: the rows of one window at a time (a task never spans two windows).
    let tasks: Vec<(usize, usize, usize)> = (0..b)
        .flat_map(|w| {
            (0..chunks_per_window).map(move |c| {
                let first = c * TASK_ROWS;
                (w, first, TASK_ROWS.min(t - first))
            })
        })
        .collect();
    let shared = Shared(out.as_mut_ptr());
    tasks.par_iter().for_each(|&(w, first, rows)| {
        let shared = &shared;
        let mut scores = vec![0f32; ROWS * panels * PANEL];
        let mut q = vec![0f32; ROWS * hd];
        let mut o = vec![0f32; ROWS * hd];
        for h in 0..heads {
            let p = &packed[w * heads + h];
            let mut r0 = 0;
            while r0 < rows {
                let m = ROWS.min(rows - r0);
                for r in 0..m {
                    let at = (w * t + first + r0 + r) * 3 * d + h * hd;
                    q[r * hd..][..hd].copy_from_slice(&qkv[at..at + hd]);
                }
                tile(&q, p, &mut scores, &mut o, (m, hd, t, scale));
                for r in 0..m {
                    let at = (w * t + first + r0 + r) * d + h * hd;
                    // SAFETY: each task writes only its own rows of `out` (in bounds: checked
                    // at the top), which no other task reads or writes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(o[r * hd..].as_ptr(), shared.0.add(at), hd)
                    };
                }
                r0 += m;
            }
        }
    });
}

/// `out`'s pointer, shared by the tasks that write disjoint rows of it.
struct Shared(*mut f32);
// SAFETY: the tasks write disjoint rows (see `encoder_attention`).
unsafe impl Sync for Shared {}

/// The attention of `m` (at most [`ROWS`]) query rows `q` (`[m][hd]`) of one head: scores
/// into `scores` (`[m][panels * 16]`), their softmax, and the weighted values into `o`
/// (`[m][hd]`).
fn tile(
    q: &[f32],
    p: &Packed,
    scores: &mut [f32],
    o: &mut [f32],
    (m, hd, t, scale): (usize, usize, usize, f32),
) {
    let width = t.div_ceil(PANEL) * PANEL;
    #[cfg(target_arch = "x86_64")]
    if hd % PANEL == 0
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has AVX2 and FMA; the kernels index inside the buffers sized above.
        unsafe {
            avx2::scores(q, &p.kt, scores, (m, hd, width, scale));
            softmax_rows(scores, (m, width, t));
            avx2::weighted(scores, &p.v, o, (m, hd, width, t));
        }
        return;
    }
    portable::scores(q, &p.kt, scores, (m, hd, width, scale));
    softmax_rows(scores, (m, width, t));
    portable::weighted(scores, &p.v, o, (m, hd, width, t));
}

/// The softmax of the first `t` values of each of the `m` score rows, in place
/// ([`kernels::softmax_rows`]: vectorised, the same operations on every code path).
fn softmax_rows(scores: &mut [f32], (m, width, t): (usize, usize, usize)) {
    for r in 0..m {
        kernels::softmax_rows(&mut scores[r * width..][..t], t);
    }
}

/// The kernels as plain loops: the same fused multiply-adds in the same order as [`avx2`]'s.
mod portable {
    use super::PANEL;

    pub(super) fn scores(
        q: &[f32],
        kt: &[f32],
        scores: &mut [f32],
        (m, hd, width, scale): (usize, usize, usize, f32),
    ) {
        for (pi, panel) in kt.chunks_exact(hd * PANEL).enumerate() {
            for r in 0..m {
                let mut acc = [0f32; PANEL];
                for e in 0..hd {
                    let qe = q[r * hd + e];
                    for (a, k) in acc.iter_mut().zip(&panel[e * PANEL..][..PANEL]) {
                        *a = qe.mul_add(*k, *a);
                    }
                }
                for (s, a) in scores[r * width + pi * PANEL..][..PANEL]
                    .iter_mut()
                    .zip(acc)
                {
                    *s = a * scale;
                }
            }
        }
    }

    pub(super) fn weighted(
        scores: &[f32],
        v: &[f32],
        o: &mut [f32],
        (m, hd, width, t): (usize, usize, usize, usize),
    ) {
        for r in 0..m {
            let out = &mut o[r * hd..][..hd];
            out.fill(0.0);
            for j in 0..t {
                let pj = scores[r * width + j];
                for (a, x) in out.iter_mut().zip(&v[j * hd..][..hd]) {
                    *a = pj.mul_add(*x, *a);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::PANEL;
    use std::arch::x86_64::*;

    /// Scores of `m` query rows against every key panel, times `scale`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores(
        q: &[f32],
        kt: &[f32],
        scores: &mut [f32],
        (m, hd, width, scale): (usize, usize, usize, f32),
    ) {
        assert!(q.len() >= m * hd && scores.len() >= m * width && kt.len() >= width * hd);
        match m {
            6 => scores_rows::<6>(q, kt, scores, (hd, width, scale)),
            5 => scores_rows::<5>(q, kt, scores, (hd, width, scale)),
            4 => scores_rows::<4>(q, kt, scores, (hd, width, scale)),
            3 => scores_rows::<3>(q, kt, scores, (hd, width, scale)),
            2 => scores_rows::<2>(q, kt, scores, (hd, width, scale)),
            _ => scores_rows::<1>(q, kt, scores, (hd, width, scale)),
        }
    }

    #[inline(always)]
    unsafe fn scores_rows<const R: usize>(
        q: &[f32],
        kt: &[f32],
        scores: &mut [f32],
        (hd, width, scale): (usize, usize, f32),
    ) {
        let (q, s) = (q.as_ptr(), scores.as_mut_ptr());
        let sv = _mm256_set1_ps(scale);
        for pi in 0..width / PANEL {
            let panel = kt.as_ptr().add(pi * hd * PANEL);
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for e in 0..hd {
                let k0 = _mm256_loadu_ps(panel.add(e * PANEL));
                let k1 = _mm256_loadu_ps(panel.add(e * PANEL + 8));
                for (r, a) in acc.iter_mut().enumerate() {
                    let qe = _mm256_broadcast_ss(&*q.add(r * hd + e));
                    a[0] = _mm256_fmadd_ps(qe, k0, a[0]);
                    a[1] = _mm256_fmadd_ps(qe, k1, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let at = s.add(r * width + pi * PANEL);
                _mm256_storeu_ps(at, _mm256_mul_ps(a[0], sv));
                _mm256_storeu_ps(at.add(8), _mm256_mul_ps(a[1], sv));
            }
        }
    }

    /// `o[r] = Σ_j scores[r][j] · v[j]` for `m` rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted(
        scores: &[f32],
        v: &[f32],
        o: &mut [f32],
        (m, hd, width, t): (usize, usize, usize, usize),
    ) {
        assert!(scores.len() >= m * width && v.len() >= t * hd && o.len() >= m * hd);
        match m {
            6 => weighted_rows::<6>(scores, v, o, (hd, width, t)),
            5 => weighted_rows::<5>(scores, v, o, (hd, width, t)),
            4 => weighted_rows::<4>(scores, v, o, (hd, width, t)),
            3 => weighted_rows::<3>(scores, v, o, (hd, width, t)),
            2 => weighted_rows::<2>(scores, v, o, (hd, width, t)),
            _ => weighted_rows::<1>(scores, v, o, (hd, width, t)),
        }
    }

    #[inline(always)]
    unsafe fn weighted_rows<const R: usize>(
        scores: &[f32],
        v: &[f32],
        o: &mut [f32],
        (hd, width, t): (usize, usize, usize),
    ) {
        let (s, v, o) = (scores.as_ptr(), v.as_ptr(), o.as_mut_ptr());
        for c in (0..hd).step_by(PANEL) {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for j in 0..t {
                let v0 = _mm256_loadu_ps(v.add(j * hd + c));
                let v1 = _mm256_loadu_ps(v.add(j * hd + c + 8));
                for (r, a) in acc.iter_mut().enumerate() {
                    let p = _mm256_broadcast_ss(&*s.add(r * width + j));
                    a[0] = _mm256_fmadd_ps(p, v0, a[0]);
                    a[1] = _mm256_fmadd_ps(p, v1, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(r * hd + c), a[0]);
                _mm256_storeu_ps(o.add(r * hd + c + 8), a[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::attention::encoder_attention_gemm;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Whisper's head width (64) over frame counts that leave partial key panels and query
    /// tiles: the fused attention equals the `gemm` one within f32 rounding, and a window
    /// computed beside another equals it computed alone, bit for bit.
    #[test]
    fn fused_matches_gemm_and_batch_is_exact() {
        for (t, d, heads) in [(1500, 384, 6), (77, 128, 2), (5, 64, 1)] {
            let qkv = values(2 * t * 3 * d, t as u32);
            let mut want = vec![0f32; 2 * t * d];
            encoder_attention_gemm(&qkv, &mut want, (2, t, d, heads), 256);
            let mut got = vec![0f32; 2 * t * d];
            encoder_attention(&qkv, &mut got, (2, t, d, heads));
            let diff = max_diff(&want, &got);
            assert!(diff < 2e-5, "t {t}: the fused attention differs by {diff}");
            for w in 0..2 {
                let mut alone = vec![0f32; t * d];
                encoder_attention(
                    &qkv[w * t * 3 * d..][..t * 3 * d],
                    &mut alone,
                    (1, t, d, heads),
                );
                assert_eq!(alone, got[w * t * d..][..t * d], "window {w} of {t}");
            }
        }
    }

    /// The AVX2 kernels (when this CPU has them) and the portable loops give the same bits.
    #[test]
    fn code_paths_agree_bit_for_bit() {
        let (t, hd) = (203usize, 64usize);
        let width = t.div_ceil(PANEL) * PANEL;
        let kv = values(t * 2 * hd, 9);
        let mut kt = vec![0f32; width * hd];
        for j in 0..t {
            for e in 0..hd {
                kt[(j / PANEL) * hd * PANEL + e * PANEL + j % PANEL] = kv[j * hd + e];
            }
        }
        let p = Packed {
            kt,
            v: kv[t * hd..].to_vec(),
        };
        let scale = 0.125;
        for m in 1..=ROWS {
            let q = values(m * hd, m as u32);
            let (mut s1, mut o1) = (vec![0f32; ROWS * width], vec![0f32; ROWS * hd]);
            let (mut s2, mut o2) = (s1.clone(), o1.clone());
            tile(&q, &p, &mut s1, &mut o1, (m, hd, t, scale));
            portable::scores(&q, &p.kt, &mut s2, (m, hd, width, scale));
            softmax_rows(&mut s2, (m, width, t));
            portable::weighted(&s2, &p.v, &mut o2, (m, hd, width, t));
            assert_eq!(o1, o2, "{m} rows");
        }
    }
}
