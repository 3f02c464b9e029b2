//! Whisper's attention on plain slices, where candle's tensors cost more than the arithmetic:
//! the decoder's self-attention over a key/value cache written in place (no concatenation,
//! transposition or mask per step), its cross-attention for the few rows of a decoder step
//! (no packing of the window's 1500 keys for a one-row product, no pool dispatch for a
//! softmax of a few rows), and the encoder's attention by blocks of queries straight on the
//! projected `[frames, d]` matrices (no split copies, no materialised `heads x 1500²` scores).

use crate::kernels::{self, View};
use rayon::prelude::*;

/// Queries per block of [`encoder_attention`] (its scores: `64 x 1500` values per task).
const QUERY_BLOCK: usize = 64;

/// One decoder layer's self-attention keys and values, per sequence: `[batch][cap][d]`, one
/// row of `d` per position (the heads side by side), written in place as tokens come.
#[derive(Clone, Default)]
pub(crate) struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
    /// Positions each sequence has room for.
    cap: usize,
    /// Sequences held (0 before the first write).
    batch: usize,
}

impl KvCache {
    /// Makes room for `len` positions of each of `batch` sequences of width `d`, keeping the
    /// first `kept` positions of each.
    fn reserve(&mut self, batch: usize, kept: usize, len: usize, d: usize) {
        if self.batch == batch && len <= self.cap {
            return;
        }
        let cap = len.max(2 * self.cap).max(32);
        let old_batch = self.batch;
        let grow = |old: &[f32], old_cap: usize| {
            let mut new = vec![0f32; batch * cap * d];
            if kept > 0 {
                for s in 0..batch.min(old_batch) {
                    new[s * cap * d..][..kept * d]
                        .copy_from_slice(&old[s * old_cap * d..][..kept * d]);
                }
            }
            new
        };
        self.k = grow(&self.k, self.cap);
        self.v = grow(&self.v, self.cap);
        self.cap = cap;
        self.batch = batch;
    }

    /// Makes sequence `origins[i]` the new sequence `i` (its first `len` positions).
    pub(crate) fn reorder(&mut self, origins: &[u32], len: usize, d: usize) {
        if self.batch == 0 {
            return;
        }
        let (cap, row) = (self.cap, self.cap * d);
        let gather = |old: &[f32]| {
            let mut new = Vec::with_capacity(origins.len() * row);
            for &o in origins {
                new.extend_from_slice(&old[o as usize * row..][..len * d]);
                new.resize(new.len() + (cap - len) * d, 0.0);
            }
            new
        };
        self.k = gather(&self.k);
        self.v = gather(&self.v);
        self.batch = origins.len();
    }
}

/// Sum of `a[i] * b[i]` (eight running sums, so that it vectorises).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for ((s, a), b) in acc.iter_mut().zip(x).zip(y) {
            *s = a.mul_add(*b, *s);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out += p * v`.
#[inline(always)]
fn axpy(p: f32, v: &[f32], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o = p.mul_add(*x, *o);
    }
}

/// The decoder's self-attention of `n` new positions of each of `batch` sequences after
/// `offset` cached ones: rows of `qkv` (`[batch * n][3d]`: query, key, value side by side)
/// write their keys and values into `cache`, then each query attends to the positions up to
/// its own. Writes `[batch * n][d]` into `out`.
pub(crate) fn self_attention(
    cache: &mut KvCache,
    qkv: &[f32],
    out: &mut [f32],
    (batch, n, offset): (usize, usize, usize),
    (d, heads): (usize, usize),
) {
    cache.reserve(batch, offset, offset + n, d);
    let cap = cache.cap;
    for s in 0..batch {
        for i in 0..n {
            let row = &qkv[(s * n + i) * 3 * d..][..3 * d];
            let at = (s * cap + offset + i) * d;
            cache.k[at..at + d].copy_from_slice(&row[d..2 * d]);
            cache.v[at..at + d].copy_from_slice(&row[2 * d..]);
        }
    }
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut q = vec![0f32; hd];
    let mut p = vec![0f32; offset + n];
    for s in 0..batch {
        let (ks, vs) = (&cache.k[s * cap * d..], &cache.v[s * cap * d..]);
        for i in 0..n {
            let row = (s * n + i) * d;
            let len = offset + i + 1;
            for h in 0..heads {
                let c = h * hd;
                q.iter_mut()
                    .zip(&qkv[(s * n + i) * 3 * d + c..][..hd])
                    .for_each(|(q, x)| *q = x * scale);
                for (j, pj) in p[..len].iter_mut().enumerate() {
                    *pj = dot(&q, &ks[j * d + c..][..hd]);
                }
                kernels::softmax_rows(&mut p[..len], len);
                let o = &mut out[row + c..][..hd];
                o.fill(0.0);
                for (j, &pj) in p[..len].iter().enumerate() {
                    axpy(pj, &vs[j * d + c..][..hd], o);
                }
            }
        }
    }
}

/// Cross-attention of a few query rows (`q`: `[rows][d]`, not yet scaled) over one window's
/// keys (`kt`: `[heads][head_dim][frames]`) and values (`v`: `[heads][frames][head_dim]`).
/// Writes `[rows][d]` into `out`; hands `keep(head, scores)` the scaled scores before the
/// softmax (`[rows][frames]`) of each head it asks for (`wanted(head)`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_attention(
    q: &[f32],
    kt: &[f32],
    v: &[f32],
    out: &mut [f32],
    (rows, d, heads, frames): (usize, usize, usize, usize),
    wanted: &dyn Fn(usize) -> bool,
    keep: &mut dyn FnMut(usize, &[f32]),
) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; rows * frames];
    for h in 0..heads {
        scores.fill(0.0);
        for e in 0..hd {
            let krow = &kt[(h * hd + e) * frames..][..frames];
            for (r, srow) in scores.chunks_exact_mut(frames).enumerate() {
                let qe = q[r * d + h * hd + e] * scale;
                for (s, k) in srow.iter_mut().zip(krow) {
                    *s = qe.mul_add(*k, *s);
                }
            }
        }
        if wanted(h) {
            keep(h, &scores);
        }
        kernels::softmax_rows(&mut scores, frames);
        let vh = &v[h * frames * hd..][..frames * hd];
        for (r, prow) in scores.chunks_exact(frames).enumerate() {
            let o = &mut out[r * d + h * hd..][..hd];
            o.fill(0.0);
            for (&pj, vrow) in prow.iter().zip(vh.chunks_exact(hd)) {
                axpy(pj, vrow, o);
            }
        }
    }
}

/// The encoder's attention of `b` windows of `t` frames: `q`, `k` and `v` are `[b * t][d]`
/// (the projections, heads side by side); writes `[b * t][d]` into `out`. Blocks of queries of
/// one head run as tasks on the pool, each through `gemm` on views of the matrices.
pub(crate) fn encoder_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    (b, t, d, heads): (usize, usize, usize, usize),
) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let blocks = t.div_ceil(QUERY_BLOCK);
    let shared = kernels::SharedMut::new(out);
    (0..b * heads * blocks).into_par_iter().for_each(|task| {
        let (w, rest) = (task / (heads * blocks), task % (heads * blocks));
        let (h, blk) = (rest / blocks, rest % blocks);
        let first = blk * QUERY_BLOCK;
        let m = QUERY_BLOCK.min(t - first);
        let base = w * t * d;
        let mut scores = vec![0f32; m * t];
        // scores[m x t] = scale * q[first.., h] · k[.., h]ᵀ
        kernels::matmul(
            (m, hd, t),
            &mut scores,
            View::rows(0, t),
            q,
            View {
                offset: base + first * d + h * hd,
                row_stride: d,
                col_stride: 1,
            },
            k,
            View {
                offset: base + h * hd,
                row_stride: 1,
                col_stride: d,
            },
            scale,
            false,
            false,
        );
        kernels::softmax_rows(&mut scores, t);
        // out[first.., h] = scores · v[.., h]
        // SAFETY: each task writes only its own rows and head's columns of `out`.
        unsafe {
            kernels::matmul_to(
                (m, t, hd),
                shared,
                View {
                    offset: base + first * d + h * hd,
                    row_stride: d,
                    col_stride: 1,
                },
                &scores,
                View::rows(0, t),
                v,
                View {
                    offset: base + h * hd,
                    row_stride: d,
                    col_stride: 1,
                },
                1.0,
                false,
                false,
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention of one query row over `keys`/`values` rows (plain loops).
    fn reference(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>]) -> Vec<f32> {
        let scale = 1.0 / (q.len() as f32).sqrt();
        let s: Vec<f32> = keys
            .iter()
            .map(|k| q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale)
            .collect();
        let max = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = s.iter().map(|x| (x - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        (0..q.len())
            .map(|c| e.iter().zip(values).map(|(p, v)| p * v[c]).sum::<f32>() / sum)
            .collect()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn self_attention_over_a_cache_written_in_place() {
        let (d, heads, hd) = (16, 2, 8);
        let mut cache = KvCache::default();
        let rows = values(3 * d * 5, 1);
        let mut out = vec![0f32; 3 * d];
        // Three positions at once, then two one at a time (growing past nothing cached).
        self_attention(&mut cache, &rows[..9 * d], &mut out, (1, 3, 0), (d, heads));
        let mut one = vec![0f32; d];
        for p in 3..5 {
            self_attention(
                &mut cache,
                &rows[p * 3 * d..(p + 1) * 3 * d],
                &mut one,
                (1, 1, p),
                (d, heads),
            );
        }
        let part =
            |p: usize, from: usize, h: usize| rows[p * 3 * d + from + h * hd..][..hd].to_vec();
        for h in 0..heads {
            let keys: Vec<Vec<f32>> = (0..5).map(|p| part(p, d, h)).collect();
            let vals: Vec<Vec<f32>> = (0..5).map(|p| part(p, 2 * d, h)).collect();
            let want = reference(&part(4, 0, h), &keys, &vals);
            let got = &one[h * hd..][..hd];
            assert!(want.iter().zip(got).all(|(a, b)| (a - b).abs() < 1e-5));
            // The second of the first three saw only two positions.
            let want = reference(&part(1, 0, h), &keys[..2], &vals[..2]);
            let got = &out[d + h * hd..][..hd];
            assert!(want.iter().zip(got).all(|(a, b)| (a - b).abs() < 1e-5));
        }
        // Two sequences from the first one: both continue as it would.
        cache.reorder(&[0, 0], 5, d);
        let mut two = vec![0f32; 2 * d];
        let next: Vec<f32> = rows[4 * 3 * d..5 * 3 * d].repeat(2);
        self_attention(&mut cache, &next, &mut two, (2, 1, 5), (d, heads));
        assert_eq!(two[..d], two[d..]);
    }

    #[test]
    fn cross_and_encoder_attention_match_plain_loops() {
        let (d, heads, hd, t) = (16, 2, 8, 70);
        let (q, k, v) = (values(t * d, 2), values(t * d, 3), values(t * d, 4));
        let mut enc = vec![0f32; t * d];
        encoder_attention(&q, &k, &v, &mut enc, (1, t, d, heads));
        // The window's keys transposed per head, values per head.
        let mut kt = vec![0f32; t * d];
        let mut vh = vec![0f32; t * d];
        for h in 0..heads {
            for j in 0..t {
                for e in 0..hd {
                    kt[(h * hd + e) * t + j] = k[j * d + h * hd + e];
                    vh[(h * t + j) * hd + e] = v[j * d + h * hd + e];
                }
            }
        }
        let rows = 3;
        let mut cross = vec![0f32; rows * d];
        let mut kept = Vec::new();
        cross_attention(
            &q[..rows * d],
            &kt,
            &vh,
            &mut cross,
            (rows, d, heads, t),
            &|h| h == 1,
            &mut |h, s| kept.push((h, s.len())),
        );
        assert_eq!(kept, vec![(1, rows * t)]);
        for h in 0..heads {
            let keys: Vec<Vec<f32>> = (0..t).map(|j| k[j * d + h * hd..][..hd].to_vec()).collect();
            let vals: Vec<Vec<f32>> = (0..t).map(|j| v[j * d + h * hd..][..hd].to_vec()).collect();
            for r in 0..rows {
                let want = reference(&q[r * d + h * hd..][..hd], &keys, &vals);
                for (got, what) in [(&enc, "encoder"), (&cross, "cross")] {
                    let got = &got[r * d + h * hd..][..hd];
                    let diff = want
                        .iter()
                        .zip(got)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(diff < 1e-5, "{what} attention differs by {diff}");
                }
            }
        }
    }
}
