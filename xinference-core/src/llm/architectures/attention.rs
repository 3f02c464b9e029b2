//! Attention of one sequence's rows over its own KV cache, with llama.cpp's CPU rounding
//! (its default, without flash attention): keys (after rotary) and values stored in f16
//! ([`LayerKv`]); each query rounded to f16 for `q · k` (ggml converts the product's f32
//! operand to f16) with f32 sums; the scale, the causal and sliding-window masks, the
//! attention sink and the softmax in f32; the attention weights rounded to f16 for
//! `weights · v`. Grouped-query heads read their key/value head in place (no `repeat_kv`
//! copies). Every query row is computed on its own, over exactly the keys it sees, so a
//! prompt fed in parts, a prompt after a cached prefix and a batched decode step give the bits
//! of the sequence run alone.

use super::{GgufDecoder, Layer};
use crate::kernels::attention::{scores, softmax_f16, weighted_sum};
use crate::llm::model::LayerKv;
use crate::Result;
use candle_core::{Device, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// From this many multiply-adds (query rows × keys × head size × heads) a pass's attention
/// is spread over the compute threads.
const PARALLEL_WORK: usize = 1 << 17;

/// The positions a query at `query` sees among keys held from `first` on: itself and those
/// before it, and with a `window` only the last `window` positions (llama.cpp's standard
/// window, Hugging Face's `q - k < sliding_window`).
pub(super) fn visible(query: usize, first: usize, window: Option<usize>) -> std::ops::Range<usize> {
    let start = match window {
        Some(w) => (query + 1).saturating_sub(w).max(first),
        None => first,
    };
    start..query + 1
}

/// `values` rounded to f16 and back.
fn round_f16(values: &mut [f32]) {
    for v in values {
        *v = f16::from_f32(*v).to_f32();
    }
}

impl GgufDecoder {
    /// Attention of one sequence's `s` rows at `position` in block `layer`: `q`, `k`, `v` are
    /// `[1, s, heads * head_dim]` projections; `cache` (its keys and values before `position`)
    /// is extended, then trimmed to a sliding window. Returns `[1, s, heads * head_dim]`.
    pub(super) fn attend(
        &self,
        layer: &Layer,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        position: usize,
        cache: &mut Option<LayerKv>,
    ) -> Result<Tensor> {
        let (heads, kv_heads, hd) = (self.heads, self.kv_heads, self.head_dim);
        let s = q.dim(1)?;
        let rope = &self.ropes[layer.rope];
        // `[s][n][hd]` rows as the projection gave them, each head RMS-normed when the family
        // norms them, then rotated: all in place on one copy of the values.
        let heads_of = |t: &Tensor, n: usize, w: &Option<Tensor>| -> Result<Vec<f32>> {
            let mut x = t.flatten_all()?.to_vec1::<f32>()?;
            if let Some(w) = w {
                self.rms_in_place(&mut x, w)?;
            }
            rope.rotate(&mut x, (n, hd), position, self.family.neox)?;
            Ok(x)
        };
        let mut q = heads_of(q, heads, &layer.q_norm)?;
        let k = heads_of(k, kv_heads, &layer.k_norm)?;
        let v = v.flatten_all()?.to_vec1::<f32>()?;
        // Gemma scales the queries before the product (llama.cpp's graph), the others the
        // products in the softmax.
        let scale = self.family.attn_scale as f32;
        let scale = if self.family.scale_queries {
            q.iter_mut().for_each(|x| *x *= scale);
            1.0
        } else {
            scale
        };
        let exact = self.exact;
        if !exact {
            round_f16(&mut q);
        }
        // An exact cache holds each value as two f16 halves (`split_exact`).
        let width = kv_heads * hd * if exact { 2 } else { 1 };
        // A new sequence (or a cache that does not end where this continues) starts empty.
        if !matches!(cache, Some(kv) if position > 0 && kv.held() <= position && kv.row() == width)
        {
            *cache = Some(LayerKv::new(width));
        }
        let Some(kv) = cache.as_mut() else {
            unreachable!("set above")
        };
        if exact {
            kv.append(
                &split_exact(&k, kv_heads * hd),
                &split_exact(&v, kv_heads * hd),
            );
        } else {
            kv.append(&k, &v);
        }
        // Keys held: positions first..position + s.
        let first = position + s - kv.held();
        let sinks = layer
            .sinks
            .as_ref()
            .map(|t| t.to_vec1::<f32>())
            .transpose()?;
        let group = heads / kv_heads;
        let window = layer.window;
        let held: &LayerKv = kv;
        // The first query sees the earliest keys any query of the pass sees.
        let from = visible(position, first, window).start - first;
        let widened = exact.then(|| WidenedKv::of(held, from, kv_heads, hd));
        let mut out = vec![0f32; s * heads * hd];
        let item = |(index, out): (usize, &mut [f32])| {
            let (row, g) = (index / kv_heads, index % kv_heads);
            let query = position + row;
            let keys = visible(query, first, window);
            let queries = &q[(row * heads + g * group) * hd..][..group * hd];
            let sinks = sinks.as_ref().map(|s| &s[g * group..(g + 1) * group]);
            let keys = keys.start - first..keys.end - first;
            match &widened {
                Some(kv) => attend_group_exact(kv, g, keys, queries, scale, sinks, out),
                None => attend_group(held, (g * hd, hd), keys, queries, scale, sinks, out),
            }
        };
        let work = s * heads * hd * (position + s - first);
        if work >= PARALLEL_WORK && crate::kernels::threads() > 1 {
            out.par_chunks_mut(group * hd).enumerate().for_each(item);
        } else {
            out.chunks_mut(group * hd).enumerate().for_each(item);
        }
        // A sliding-window layer drops the keys no later query sees (now and then), unless
        // it keeps them all for prompt-prefix reuse.
        if let Some(w) = layer.window.filter(|_| !self.whole_windows) {
            kv.trim_to(w);
        }
        Ok(Tensor::from_vec(out, (1, s, heads * hd), &Device::Cpu)?)
    }
}

/// One query row's heads of one key/value group: `queries` (`group` rows of `hd`, f16 values)
/// over the held positions `keys` of `kv` (the group's head at `offset` in each row), with
/// per-head `sinks` logits, into `out` (`group` rows of `hd`).
pub(super) fn attend_group(
    kv: &LayerKv,
    (offset, hd): (usize, usize),
    keys: std::ops::Range<usize>,
    queries: &[f32],
    scale: f32,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    let (row, n) = (kv.row(), keys.len());
    let group = queries.len() / hd;
    let at = keys.start * row + offset;
    let mut w = vec![0f32; group * n];
    scores(queries, hd, &kv.keys()[at..], row, &mut w);
    let mut half = Vec::new();
    for (j, w) in w.chunks_exact_mut(n).enumerate() {
        softmax_f16(w, scale, sinks.map(|s| s[j]), &mut half);
    }
    weighted_sum(&w, &kv.values()[at..], row, hd, out);
}

/// Rows of `width` f32 values as rows of `2 * width` whose f16 roundings hold them to about
/// 22 bits: each value's f16 rounding, then what that leaves out, also in f16.
pub(super) fn split_exact(values: &[f32], width: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len() * 2);
    for row in values.chunks_exact(width) {
        out.extend(row.iter().map(|&x| f16::from_f32(x).to_f32()));
        out.extend(row.iter().map(|&x| x - f16::from_f32(x).to_f32()));
    }
    out
}

/// The keys and values an exact cache holds ([`split_exact`]), widened back to f32 once per
/// pass: per key/value head, `held` rows of `hd` keys and as many values, so that every query
/// row of the pass reads them without converting them again.
pub(super) struct WidenedKv {
    /// Per key/value head: the keys of positions `from..`, `hd` values each.
    keys: Vec<Vec<f32>>,
    /// Per key/value head: the values, as `keys`.
    values: Vec<Vec<f32>>,
    /// The first held position widened (the first any query of the pass sees).
    from: usize,
    hd: usize,
}

impl WidenedKv {
    /// The positions `kv` holds from `from` on (relative to its first held one), `kv_heads`
    /// heads of `hd`: a sliding-window layer that keeps every position for the prefix cache
    /// widens only what its window shows.
    pub(super) fn of(kv: &LayerKv, from: usize, kv_heads: usize, hd: usize) -> Self {
        let (row, held) = (kv.row(), kv.held());
        let half = row / 2;
        let widen = |cache: &[f16], g: usize| -> Vec<f32> {
            let mut rows = vec![0f32; (held - from) * hd];
            let mut lo = vec![0f32; hd];
            for (p, out) in (from..held).zip(rows.chunks_exact_mut(hd)) {
                let at = p * row + g * hd;
                cache[at..at + hd].convert_to_f32_slice(out);
                cache[at + half..at + half + hd].convert_to_f32_slice(&mut lo);
                out.iter_mut().zip(&lo).for_each(|(o, l)| *o += l);
            }
            rows
        };
        WidenedKv {
            keys: (0..kv_heads).map(|g| widen(kv.keys(), g)).collect(),
            values: (0..kv_heads).map(|g| widen(kv.values(), g)).collect(),
            from,
            hd,
        }
    }
}

/// [`attend_group`] in f32, as transformers computes it, over the widened keys and values of
/// an exact cache (key/value head `g`, positions `keys`): queries unrounded, weights
/// unrounded; each score a [`crate::kernels::float::dot`] (eight running sums).
pub(super) fn attend_group_exact(
    kv: &WidenedKv,
    g: usize,
    keys: std::ops::Range<usize>,
    queries: &[f32],
    scale: f32,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    let hd = kv.hd;
    let at = (keys.start - kv.from) * hd..(keys.end - kv.from) * hd;
    let (k, v) = (&kv.keys[g][at.clone()], &kv.values[g][at]);
    let mut w = vec![0f32; keys.len()];
    for (j, (q, out)) in queries
        .chunks_exact(hd)
        .zip(out.chunks_exact_mut(hd))
        .enumerate()
    {
        for (w, kr) in w.iter_mut().zip(k.chunks_exact(hd)) {
            *w = crate::kernels::float::dot(q, kr) * scale;
        }
        let sink = sinks.map(|s| s[j]);
        let max = w
            .iter()
            .copied()
            .chain(sink)
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for x in w.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        if let Some(sink) = sink {
            sum += (sink - max).exp();
        }
        out.iter_mut().for_each(|o| *o = 0.0);
        for (wt, vr) in w.iter().zip(v.chunks_exact(hd)) {
            let wt = wt / sum;
            for (o, x) in out.iter_mut().zip(vr) {
                *o += wt * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::visible;

    /// A sliding-window query sees itself and the `window - 1` positions before it; a global
    /// one sees all before it that are held.
    #[test]
    fn sliding_windows_hide_what_is_too_far_back() {
        assert_eq!(visible(3, 0, Some(2)), 2..4);
        assert_eq!(visible(0, 0, Some(2)), 0..1);
        assert_eq!(visible(2, 0, None), 0..3);
        // A decode step over a cache that kept an older key than the window needs.
        assert_eq!(visible(10, 7, Some(3)), 8..11);
        assert_eq!(visible(11, 7, Some(3)), 9..12);
        assert_eq!(visible(10, 7, None), 7..11);
    }
}
