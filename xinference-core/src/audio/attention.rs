//! Whisper's attention on plain slices, where candle's tensors cost more than the arithmetic:
//! the decoder's self-attention over a key/value cache written in place (no concatenation,
//! transposition or mask per step), its cross-attention for the few rows of a decoder step
//! (no packing of the window's 1500 keys for a one-row product, no pool dispatch for a
//! softmax of a few rows). (The encoder's attention is `audio::encoder_attention`'s.)

use crate::kernels;
#[cfg(test)]
use crate::kernels::View;
use half::f16;
use half::slice::HalfFloatSliceExt;
#[cfg(test)]
use rayon::prelude::*;

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

    /// Makes sequence `origins[i]` the new sequence `i` (its first `len` positions). With as
    /// many sequences as before (a beam step), in place: only the sequences that change are
    /// written, from copies of their origins taken first.
    pub(crate) fn reorder(&mut self, origins: &[u32], len: usize, d: usize) {
        if self.batch == 0 {
            return;
        }
        let (cap, row) = (self.cap, self.cap * d);
        if origins.len() == self.batch {
            let moved: Vec<(usize, usize)> = origins
                .iter()
                .enumerate()
                .filter(|&(i, &o)| o as usize != i)
                .map(|(i, &o)| (i, o as usize))
                .collect();
            for values in [&mut self.k, &mut self.v] {
                let sources: Vec<Vec<f32>> = moved
                    .iter()
                    .map(|&(_, o)| values[o * row..][..len * d].to_vec())
                    .collect();
                for (&(i, _), source) in moved.iter().zip(&sources) {
                    values[i * row..][..len * d].copy_from_slice(source);
                }
            }
            return;
        }
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

impl KvCache {
    /// Writes the keys and values of `n` new positions of each of `batch` sequences after
    /// `offset` cached ones, from the rows of `qkv` (`[batch * n][3d]`: query, key, value side
    /// by side).
    pub(crate) fn append(
        &mut self,
        qkv: &[f32],
        (batch, n, offset): (usize, usize, usize),
        d: usize,
    ) {
        self.reserve(batch, offset, offset + n, d);
        let cap = self.cap;
        for s in 0..batch {
            for i in 0..n {
                let row = &qkv[(s * n + i) * 3 * d..][..3 * d];
                let at = (s * cap + offset + i) * d;
                self.k[at..at + d].copy_from_slice(&row[d..2 * d]);
                self.v[at..at + d].copy_from_slice(&row[2 * d..]);
            }
        }
    }
}

/// The decoder's self-attention of head `h` of sequence `s` (of a step of `n` new positions per
/// sequence after `offset` cached ones, whose keys and values [`KvCache::append`] wrote): each
/// query of `qkv` (`[batch * n][3d]`) attends to the positions up to its own. Returns
/// `[n][head_dim]`.
pub(crate) fn self_attention_head(
    cache: &KvCache,
    qkv: &[f32],
    (s, h): (usize, usize),
    (n, offset): (usize, usize),
    (d, heads): (usize, usize),
) -> Vec<f32> {
    let hd = d / heads;
    let c = h * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let cap = cache.cap;
    let (ks, vs) = (&cache.k[s * cap * d..], &cache.v[s * cap * d..]);
    let mut q = vec![0f32; hd];
    let mut p = vec![0f32; offset + n];
    let mut out = vec![0f32; n * hd];
    for i in 0..n {
        let len = offset + i + 1;
        q.iter_mut()
            .zip(&qkv[(s * n + i) * 3 * d + c..][..hd])
            .for_each(|(q, x)| *q = x * scale);
        for (j, pj) in p[..len].iter_mut().enumerate() {
            *pj = dot(&q, &ks[j * d + c..][..hd]);
        }
        kernels::softmax_rows(&mut p[..len], len);
        let o = &mut out[i * hd..][..hd];
        for (j, &pj) in p[..len].iter().enumerate() {
            axpy(pj, &vs[j * d + c..][..hd], o);
        }
    }
    out
}

/// The decoder's self-attention of `n` new positions of each of `batch` sequences after
/// `offset` cached ones: rows of `qkv` (`[batch * n][3d]`: query, key, value side by side)
/// write their keys and values into `cache`, then each query attends to the positions up to
/// its own. Writes `[batch * n][d]` into `out`. (The decoder runs the heads as pool tasks.)
#[cfg(test)]
pub(crate) fn self_attention(
    cache: &mut KvCache,
    qkv: &[f32],
    out: &mut [f32],
    (batch, n, offset): (usize, usize, usize),
    (d, heads): (usize, usize),
) {
    cache.append(qkv, (batch, n, offset), d);
    let hd = d / heads;
    for s in 0..batch {
        for h in 0..heads {
            let o = self_attention_head(cache, qkv, (s, h), (n, offset), (d, heads));
            for i in 0..n {
                out[(s * n + i) * d + h * hd..][..hd].copy_from_slice(&o[i * hd..][..hd]);
            }
        }
    }
}

/// Frames of values widened from f16 at a time by [`cross_attention_head`] (16 KiB of f32 for
/// a head of 64).
const VALUE_FRAMES: usize = 64;

/// Cross-attention of head `h` for a few query rows (`q`: `[rows][d]`, not yet scaled) over one
/// window's keys (`kt`: `[heads][head_dim][frames]`) and values (`v`:
/// `[heads][frames][head_dim]`), both kept as f16 and widened to f32 a row (or a few frames)
/// at a time: the arithmetic is f32, in the same order whatever the rows. Returns
/// `[rows][head_dim]`, and the scaled scores before the softmax (`[rows][frames]`) when `keep`
/// is set.
pub(crate) fn cross_attention_head(
    q: &[f32],
    kt: &[f16],
    v: &[f16],
    h: usize,
    (rows, d, heads, frames): (usize, usize, usize, usize),
    keep: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; rows * frames];
    let mut krow = vec![0f32; frames];
    for e in 0..hd {
        kt[(h * hd + e) * frames..][..frames].convert_to_f32_slice(&mut krow);
        for (r, srow) in scores.chunks_exact_mut(frames).enumerate() {
            let qe = q[r * d + h * hd + e] * scale;
            for (s, k) in srow.iter_mut().zip(&krow) {
                *s = qe.mul_add(*k, *s);
            }
        }
    }
    let kept = keep.then(|| scores.clone());
    kernels::softmax_rows(&mut scores, frames);
    let vh = &v[h * frames * hd..][..frames * hd];
    let mut out = vec![0f32; rows * hd];
    let mut values = vec![0f32; VALUE_FRAMES * hd];
    for (c, part) in vh.chunks(VALUE_FRAMES * hd).enumerate() {
        let values = &mut values[..part.len()];
        part.convert_to_f32_slice(values);
        for (r, o) in out.chunks_exact_mut(hd).enumerate() {
            let p = &scores[r * frames + c * VALUE_FRAMES..][..part.len() / hd];
            for (&pj, vrow) in p.iter().zip(values.chunks_exact(hd)) {
                axpy(pj, vrow, o);
            }
        }
    }
    (out, kept)
}

/// [`cross_attention_head`] of every head, written into `out` (`[rows][d]`). (The decoder runs
/// the heads as pool tasks.)
#[cfg(test)]
pub(crate) fn cross_attention(
    q: &[f32],
    kt: &[f16],
    v: &[f16],
    out: &mut [f32],
    (rows, d, heads, frames): (usize, usize, usize, usize),
    wanted: &dyn Fn(usize) -> bool,
    keep: &mut dyn FnMut(usize, &[f32]),
) {
    let hd = d / heads;
    for h in 0..heads {
        let (o, kept) = cross_attention_head(q, kt, v, h, (rows, d, heads, frames), wanted(h));
        if let Some(s) = kept {
            keep(h, &s);
        }
        for r in 0..rows {
            out[r * d + h * hd..][..hd].copy_from_slice(&o[r * hd..][..hd]);
        }
    }
}

/// The encoder's attention as it ran before `audio::encoder_attention` fused it, kept as the
/// reference its tests compare with: `qkv` is `[b * t][3d]`, writes
/// `[b * t][d]` into `out`; blocks of `query_block` queries of one head run as pool tasks, each
/// through two `gemm` products with the scores of the block written out between them.
#[cfg(test)]
pub(crate) fn encoder_attention_gemm(
    qkv: &[f32],
    out: &mut [f32],
    (b, t, d, heads): (usize, usize, usize, usize),
    query_block: usize,
) {
    let (q, k, v) = (qkv, qkv, qkv);
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let blocks = t.div_ceil(query_block);
    let shared = kernels::SharedMut::new(out);
    (0..b * heads * blocks).into_par_iter().for_each(|task| {
        let (w, rest) = (task / (heads * blocks), task % (heads * blocks));
        let (h, blk) = (rest / blocks, rest % blocks);
        let first = blk * query_block;
        let m = query_block.min(t - first);
        let base = w * t * 3 * d;
        let out_base = w * t * d;
        let mut scores = vec![0f32; m * t];
        // scores[m x t] = scale * q[first.., h] · k[.., h]ᵀ
        kernels::matmul(
            (m, hd, t),
            &mut scores,
            View::rows(0, t),
            q,
            View {
                offset: base + first * 3 * d + h * hd,
                row_stride: 3 * d,
                col_stride: 1,
            },
            k,
            View {
                offset: base + d + h * hd,
                row_stride: 1,
                col_stride: 3 * d,
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
                    offset: out_base + first * d + h * hd,
                    row_stride: d,
                    col_stride: 1,
                },
                &scores,
                View::rows(0, t),
                v,
                View {
                    offset: base + 2 * d + h * hd,
                    row_stride: 3 * d,
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
    fn beam_reorder_in_place_takes_each_origin() {
        let d = 4;
        let mut cache = KvCache::default();
        // Three sequences of two positions: keys and values of sequence s, position p.
        let qkv = values(3 * 2 * 3 * d, 5);
        cache.append(&qkv, (3, 2, 0), d);
        let key = |s: usize, p: usize| qkv[(s * 2 + p) * 3 * d + d..][..d].to_vec();
        let value = |s: usize, p: usize| qkv[(s * 2 + p) * 3 * d + 2 * d..][..d].to_vec();
        let origins = [2u32, 0, 0];
        cache.reorder(&origins, 2, d);
        for (i, &o) in origins.iter().enumerate() {
            for p in 0..2 {
                let at = (i * cache.cap + p) * d;
                assert_eq!(cache.k[at..at + d], key(o as usize, p)[..]);
                assert_eq!(cache.v[at..at + d], value(o as usize, p)[..]);
            }
        }
    }

    #[test]
    fn cross_and_encoder_attention_match_plain_loops() {
        let (d, heads, hd, t) = (16, 2, 8, 70);
        // Keys and values that f16 holds exactly (the cross-attention keeps them so).
        let halved = |x: Vec<f32>| -> Vec<f32> {
            x.into_iter().map(|v| f16::from_f32(v).to_f32()).collect()
        };
        let (q, k, v) = (
            values(t * d, 2),
            halved(values(t * d, 3)),
            halved(values(t * d, 4)),
        );
        let mut enc = vec![0f32; t * d];
        let qkv: Vec<f32> = (0..t)
            .flat_map(|j| {
                [&q, &k, &v]
                    .map(|m| m[j * d..(j + 1) * d].to_vec())
                    .concat()
            })
            .collect();
        encoder_attention_gemm(&qkv, &mut enc, (1, t, d, heads), 32);
        let mut fused = vec![0f32; t * d];
        crate::audio::encoder_attention::encoder_attention(&qkv, &mut fused, (1, t, d, heads));
        // The window's keys transposed per head, values per head.
        let mut kt = vec![f16::ZERO; t * d];
        let mut vh = vec![f16::ZERO; t * d];
        for h in 0..heads {
            for j in 0..t {
                for e in 0..hd {
                    kt[(h * hd + e) * t + j] = f16::from_f32(k[j * d + h * hd + e]);
                    vh[(h * t + j) * hd + e] = f16::from_f32(v[j * d + h * hd + e]);
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
                for (got, what) in [
                    (&enc, "encoder (gemm)"),
                    (&fused, "encoder"),
                    (&cross, "cross"),
                ] {
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
