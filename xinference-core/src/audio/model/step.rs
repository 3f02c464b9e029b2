//! The decoder step: one request's tokens, or the steps of several requests in one shared
//! pass (projections and MLPs over all their rows, attention per request).

use super::layers::{add_into, mix, StepLin};
use super::{DecoderState, Step, WhisperNet, SMALL_ROWS};
use crate::audio::attention;
use crate::{kernels, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

impl WhisperNet {
    /// Feeds the steps of several requests in one pass: layer norms, projections and MLPs see
    /// the rows of all of them at once (each weight matrix streams through once per layer),
    /// attention stays per request (its own self-attention cache and its own window's audio).
    /// Every row is rounded as [`WhisperNet::decode`] rounds it for a request of at most 16
    /// rows alone (`tests::shared_pass_matches_one_at_a_time`). Returns each request's final
    /// hidden states `[rows, d]`.
    pub fn decode_many(&self, steps: &mut [Step]) -> Result<Vec<Tensor>> {
        Ok(self.decoder_pass(steps, true, &[])?.0)
    }

    /// Feeds `tokens` after what `state` holds: `state.batch()` sequences of
    /// `tokens.len() / batch` tokens each, row after row. Returns the final hidden states
    /// `[tokens.len(), d]` in the same order.
    pub fn decode(&self, tokens: &[u32], state: &mut DecoderState) -> Result<Tensor> {
        Ok(self.decode_with_scores(tokens, state, &[])?.0)
    }

    /// [`WhisperNet::decode`], also returning the cross-attention scores (scaled, before the
    /// softmax) of the `(layer, head)` pairs in `heads`, each `[b, n, audio positions]`.
    pub fn decode_with_scores(
        &self,
        tokens: &[u32],
        state: &mut DecoderState,
        heads: &[(usize, usize)],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut steps = [Step { tokens, state }];
        let (mut hidden, scores) = self.decoder_pass(&mut steps, false, heads)?;
        let hidden = hidden
            .pop()
            .ok_or_else(|| crate::Error::internal("a decoder pass returned nothing"))?;
        Ok((hidden, scores))
    }

    /// The decoder over the steps of one or more requests, on a pool thread
    /// ([`kernels::on_pool`]: the products and attention heads split from there). Products
    /// stream the weights ([`StepLin::forward`]: each row rounded as alone) when `streamed` or
    /// for a request of at most [`SMALL_ROWS`] rows, else go through `gemm`. A request's
    /// cross-attention of at most [`SMALL_ROWS`] rows runs on slices, one pool task per head
    /// ([`attention::cross_attention_head`]), a longer one (a prompt) through `gemm`. Returns
    /// each request's hidden states `[rows, d]`, and the cross-attention scores of `heads`
    /// (meant for one request; by layer, then in the order given).
    fn decoder_pass(
        &self,
        steps: &mut [Step],
        streamed: bool,
        heads: &[(usize, usize)],
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        kernels::on_pool(|| self.decoder_pass_here(steps, streamed, heads))
    }

    /// [`WhisperNet::decoder_pass`] on the calling thread.
    fn decoder_pass_here(
        &self,
        steps: &mut [Step],
        streamed: bool,
        heads: &[(usize, usize)],
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        if steps.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let d = self.dims.d_model;
        let (shapes, total, mut x) = self.embed_steps(steps)?;
        // Rows streamed, and the product split, alike for all requests: a request's rows
        // come out as alone.
        let lin = |l: &StepLin, x: &[f32]| l.forward(x, total, streamed);
        let mut scores = Vec::new();
        let mut y = vec![0f32; total * d];
        for (l, block) in self.decoder.iter().enumerate() {
            let qkv = lin(&block.qkv, &block.attn_ln.forward(&x));
            self.self_attention(l, steps, &shapes, &qkv, &mut y);
            add_into(&mut x, &lin(&block.attn_out, &y));
            let q = lin(&block.cross_q, &block.cross_ln.forward(&x));
            self.cross_attention(l, steps, &shapes, &q, &mut y, (heads, &mut scores))?;
            add_into(&mut x, &lin(&block.cross_out, &y));
            // The MLP.
            let mut h = lin(&block.fc1, &block.mlp_ln.forward(&x));
            kernels::Activation::Gelu.apply(&mut h);
            add_into(&mut x, &lin(&block.fc2, &h));
        }
        let hidden = self.decoder_ln.forward(&x);
        let mut out = Vec::with_capacity(steps.len());
        for (step, &(b, n, _, first)) in steps.iter_mut().zip(&shapes) {
            step.state.len += n;
            out.push(Tensor::from_slice(
                &hidden[first * d..(first + b * n) * d],
                (b * n, d),
                &Device::Cpu,
            )?);
        }
        Ok((out, scores))
    }

    /// The shapes of the steps (sequences, tokens per sequence, positions already cached,
    /// first row: each request's rows follow the previous one's), their total rows, and their
    /// token embeddings plus positions.
    #[allow(clippy::type_complexity)]
    fn embed_steps(
        &self,
        steps: &[Step],
    ) -> Result<(Vec<(usize, usize, usize, usize)>, usize, Vec<f32>)> {
        let d = self.dims.d_model;
        // (sequences, tokens per sequence, positions already cached, first row) of each request.
        let mut shapes: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(steps.len());
        let mut total = 0;
        for s in steps.iter() {
            let (b, len) = (s.state.batch, s.state.len);
            let n = s.tokens.len() / b.max(1);
            if b * n != s.tokens.len() || len + n > self.dims.text_ctx {
                return Err(crate::Error::internal(format!(
                    "a Whisper decoder step of {} tokens for {b} sequences after {len} positions",
                    s.tokens.len()
                )));
            }
            shapes.push((b, n, len, total));
            total += b * n;
        }
        // Token embeddings plus positions.
        let mut x = vec![0f32; total * d];
        for (s, &(_, n, offset, first)) in steps.iter().zip(&shapes) {
            for (i, &token) in s.tokens.iter().enumerate() {
                if token as usize >= self.dims.vocab {
                    return Err(crate::Error::internal(format!(
                        "token {token} is outside Whisper's vocabulary"
                    )));
                }
                let row = &mut x[(first + i) * d..][..d];
                self.embed.row_into(token as usize, d, row);
                add_into(row, &self.text_pos[(offset + i % n) * d..][..d]);
            }
        }
        Ok((shapes, total, x))
    }

    /// Layer `l`'s self-attention of every request into `y`: the keys and values of `qkv`
    /// into each request's cache, then one pool task per (request, sequence, head).
    fn self_attention(
        &self,
        l: usize,
        steps: &mut [Step],
        shapes: &[(usize, usize, usize, usize)],
        qkv: &[f32],
        y: &mut [f32],
    ) {
        let d = self.dims.d_model;
        let nh = self.dims.decoder_heads;
        let hd = d / nh;
        for (step, &(b, n, offset, first)) in steps.iter_mut().zip(shapes) {
            step.state.self_kv[l].append(
                &qkv[first * 3 * d..(first + b * n) * 3 * d],
                (b, n, offset),
                d,
            );
        }
        let tasks: Vec<(usize, usize, usize)> = shapes
            .iter()
            .enumerate()
            .flat_map(|(r, &(b, ..))| (0..b * nh).map(move |t| (r, t / nh, t % nh)))
            .collect();
        let done: Vec<Vec<f32>> = {
            let steps = &*steps;
            tasks
                .par_iter()
                .map(|&(r, s, h)| {
                    let (b, n, offset, first) = shapes[r];
                    attention::self_attention_head(
                        &steps[r].state.self_kv[l],
                        &qkv[first * 3 * d..(first + b * n) * 3 * d],
                        (s, h),
                        (n, offset),
                        (d, nh),
                    )
                })
                .collect()
        };
        for (&(r, s, h), o) in tasks.iter().zip(&done) {
            let (_, n, _, first) = shapes[r];
            for i in 0..n {
                y[(first + s * n + i) * d + h * hd..][..hd].copy_from_slice(&o[i * hd..][..hd]);
            }
        }
    }

    /// Layer `l`'s cross-attention of every request's queries `q` over its window, into `y`:
    /// one pool task per (request, head) for requests of at most [`SMALL_ROWS`] rows, `gemm`
    /// for longer ones; the scores of `heads` (of layer `l`) are pushed onto `scores`.
    fn cross_attention(
        &self,
        l: usize,
        steps: &[Step],
        shapes: &[(usize, usize, usize, usize)],
        q: &[f32],
        y: &mut [f32],
        (heads, scores): (&[(usize, usize)], &mut Vec<Tensor>),
    ) -> Result<()> {
        let d = self.dims.d_model;
        let nh = self.dims.decoder_heads;
        let hd = d / nh;
        let layer_heads: Vec<usize> = heads
            .iter()
            .filter(|&&(hl, _)| hl == l)
            .map(|&(_, h)| h)
            .collect();
        let sliced: Vec<usize> = (0..steps.len())
            .filter(|&r| shapes[r].0 * shapes[r].1 <= SMALL_ROWS)
            .collect();
        let tasks: Vec<(usize, usize)> = sliced
            .iter()
            .flat_map(|&r| (0..nh).map(move |h| (r, h)))
            .collect();
        let done: Vec<(Vec<f32>, Option<Vec<f32>>)> = {
            let layer_heads = &layer_heads;
            tasks
                .par_iter()
                .map(|&(r, h)| {
                    let (b, n, _, first) = shapes[r];
                    let rows = b * n;
                    let kv = &steps[r].state.cross_kv[l];
                    attention::cross_attention_head(
                        &q[first * d..(first + rows) * d],
                        &kv.kt,
                        &kv.v,
                        h,
                        (rows, d, nh, kv.frames),
                        layer_heads.contains(&h),
                    )
                })
                .collect()
        };
        for (&(r, h), (o, _)) in tasks.iter().zip(&done) {
            let (b, n, _, first) = shapes[r];
            for i in 0..b * n {
                y[(first + i) * d + h * hd..][..hd].copy_from_slice(&o[i * hd..][..hd]);
            }
        }
        for (r, &(b, n, _, first)) in shapes.iter().enumerate() {
            let rows = b * n;
            let kv = &steps[r].state.cross_kv[l];
            let frames = kv.frames;
            if rows <= SMALL_ROWS {
                for &h in &layer_heads {
                    let kept = tasks
                        .iter()
                        .zip(&done)
                        .find(|(task, _)| **task == (r, h))
                        .and_then(|(_, (_, s))| s.as_ref());
                    if let Some(s) = kept {
                        scores.push(Tensor::from_slice(s, (b, n, frames), &Device::Cpu)?);
                    }
                }
            } else {
                let qp = Tensor::from_slice(
                    &q[first * d..(first + rows) * d],
                    (1, rows, d),
                    &Device::Cpu,
                )?;
                let keep = !layer_heads.is_empty();
                let (kt, v) = kv.tensors(nh)?;
                let (o, s) = mix(&qp, &kt, &v, nh, keep)?;
                y[first * d..(first + rows) * d]
                    .copy_from_slice(&o.flatten_all()?.to_vec1::<f32>()?);
                if let Some(s) = s {
                    for &h in &layer_heads {
                        scores.push(s.narrow(1, h, 1)?.reshape((b, n, frames))?);
                    }
                }
            }
        }
        Ok(())
    }
}
