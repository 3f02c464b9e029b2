//! Scaled dot-product attention over padded batches, a block of query rows at a time, for the
//! embedders that run on candle tensors (JinaBERT, Nomic-BERT, Qwen3).
//!
//! The whole `[batch, heads, seq, seq]` score matrix of an 8192-token input is 3 GB for a
//! 12-head model, and 68 GB for Qwen3-Embedding's 32768 tokens: one long request would take
//! the server down. Rows of queries are independent, so the scores are built, normalised and
//! applied a block of rows at a time, within a fixed budget; short inputs take one block, as
//! before.

use candle_core::{Result, Tensor};

/// Scores (values) one block may hold: 64 MB of f32.
const BLOCK_SCORES: usize = 1 << 24;

/// `softmax(q kᵀ · scale + bias) v` for `q` `[batch, heads, seq, dim]` and `k`, `v` of the same
/// shape. `bias(first, rows)` gives the additive bias of query rows `first..first + rows`,
/// broadcastable to `[batch, heads, rows, seq]`, or `None`. Returns `[batch, heads, seq, dim]`.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    bias: &dyn Fn(usize, usize) -> Result<Option<Tensor>>,
) -> Result<Tensor> {
    let (b, h, s, _) = q.dims4()?;
    let rows_per_block = (BLOCK_SCORES / (b * h * s).max(1)).clamp(1, s.max(1));
    attention_in_blocks(q, k, v, scale, bias, rows_per_block)
}

/// [`attention`] with `rows_per_block` query rows per block.
fn attention_in_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    bias: &dyn Fn(usize, usize) -> Result<Option<Tensor>>,
    rows_per_block: usize,
) -> Result<Tensor> {
    let s = q.dim(2)?;
    let kt = k.t()?;
    let mut blocks = Vec::with_capacity(s.div_ceil(rows_per_block));
    let mut first = 0;
    while first < s {
        let rows = rows_per_block.min(s - first);
        let q_rows = if rows == s {
            q.clone()
        } else {
            q.narrow(2, first, rows)?
        };
        let mut scores = (q_rows.matmul(&kt)? * scale)?;
        if let Some(bias) = bias(first, rows)? {
            scores = scores.broadcast_add(&bias)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        blocks.push(probs.matmul(v)?);
        first += rows;
    }
    if blocks.len() == 1 {
        Ok(blocks.remove(0))
    } else {
        Tensor::cat(&blocks, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn blocks_give_the_same_result_as_one_pass() {
        let dev = Device::Cpu;
        let (b, h, s, d) = (2, 3, 40, 8);
        let make = |seed: f32| {
            let data: Vec<f32> = (0..b * h * s * d)
                .map(|i| ((i as f32 * seed).sin() * 3.0).fract())
                .collect();
            Tensor::from_vec(data, (b, h, s, d), &dev).unwrap()
        };
        let (q, k, v) = (make(0.37), make(0.71), make(1.13));
        // A causal bias, built per block of rows.
        let causal = |first: usize, rows: usize| -> Result<Option<Tensor>> {
            let data: Vec<f32> = (first..first + rows)
                .flat_map(|i| (0..s).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Ok(Some(Tensor::from_vec(data, (1, 1, rows, s), &dev)?))
        };
        let whole = attention(&q, &k, &v, 0.35, &causal).unwrap();
        let blocked = attention_in_blocks(&q, &k, &v, 0.35, &causal, 7).unwrap();
        assert_eq!(blocked.dims(), &[b, h, s, d]);
        let diff: f32 = (whole - blocked)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }
}
