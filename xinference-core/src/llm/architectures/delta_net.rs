//! Gated DeltaNet (Qwen3.5's linear-attention blocks), one sequence's rows at a time over its
//! recurrent state, as llama.cpp's CPU backend computes it (`ggml_ssm_conv`, then the fused
//! `ggml_gated_delta_net`, which it runs for prompts and decode steps alike):
//!
//! - a causal depthwise convolution of `conv_kernel` taps over the mixed q/k/v projection,
//!   its last `conv_kernel - 1` inputs carried in the state, then SiLU;
//! - q and k L2-normalised per head (`x / sqrt(sum x² + eps)`, as llama.cpp's
//!   `build_gdn_l2_norm` writes it: an RMS norm with `eps / n`, scaled by `1 / sqrt(n)`);
//! - per value head (its key head: `head % key_heads`, the converter having put the value
//!   heads in tiled order) the delta rule over a `head_dim x head_dim` state `S`:
//!   `S *= exp(g)`; `d = (v - Sᵀk) * beta`; `S += k dᵀ`; `o = Sᵀq / sqrt(head_dim)`, with
//!   `g = softplus(alpha + dt_bias) * a` (`a = -exp(A_log)`, stored so) and `beta =
//!   sigmoid(b)`;
//! - the output RMS-normed per head, times `ssm_norm`, times `silu(z)`.
//!
//! Every token is one step of the recurrence (no chunked form), so a prompt fed whole, in
//! chunks or beside other sequences' steps gives the same bits.

use crate::llm::model::LayerKv;
use crate::{Error, Result};

/// One Gated DeltaNet block's sizes and small weights (the projections are the block's
/// [`super::Layer`] linear layers).
#[derive(Clone, Debug)]
pub(super) struct DeltaNet {
    /// Key heads (`ssm.group_count`).
    pub(super) key_heads: usize,
    /// Value heads (`ssm.time_step_rank`), a multiple of the key heads.
    pub(super) value_heads: usize,
    /// Values per head, keys and values alike (`ssm.state_size`).
    pub(super) head_dim: usize,
    /// Convolution taps (`ssm.conv_kernel`).
    pub(super) taps: usize,
    /// Per channel (q, k, then v channels) its `taps` weights, oldest input first.
    pub(super) conv: Vec<f32>,
    /// Per value head: the time-step bias and the decay `a`.
    pub(super) dt_bias: Vec<f32>,
    pub(super) a: Vec<f32>,
    /// The output norm's weight (`head_dim` values).
    pub(super) norm: Vec<f32>,
    /// RMS norm epsilon.
    pub(super) eps: f32,
}

/// One sequence's rows of the block's projections: per row the mixed q/k/v (`channels`), the
/// output gate `z` (`value_heads * head_dim`), `b` and `alpha` (`value_heads`).
pub(super) struct Projected<'a> {
    pub(super) mixed: &'a [f32],
    pub(super) z: &'a [f32],
    pub(super) b: &'a [f32],
    pub(super) alpha: &'a [f32],
}

/// `x / (1 + e^-x)` as ggml computes it.
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// ggml's RMS norm scale of `x`: the sum of squares in f64, `1 / sqrt(mean + eps)` in f32.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

impl DeltaNet {
    /// Channels of the convolution: q and k (`key_heads * head_dim` each), then v.
    pub(super) fn channels(&self) -> usize {
        (2 * self.key_heads + self.value_heads) * self.head_dim
    }

    /// Floats of a sequence's state: the convolution's last inputs, then the matrices.
    fn state_len(&self) -> usize {
        self.channels() * (self.taps - 1) + self.value_heads * self.head_dim * self.head_dim
    }

    /// Runs `rows` rows of one sequence at `position` over its state in `cache` (a new one at
    /// position 0), writing `rows x value_heads x head_dim` gated outputs to `out`. A state
    /// that does not end at `position` cannot be continued: an error, never a guess.
    pub(super) fn run(
        &self,
        p: &Projected<'_>,
        rows: usize,
        position: usize,
        cache: &mut Option<LayerKv>,
        out: &mut [f32],
    ) -> Result<()> {
        let mut state = if position == 0 {
            vec![0f32; self.state_len()]
        } else {
            match cache.take().and_then(|kv| {
                (kv.held() == position)
                    .then(|| kv.into_recurrent())
                    .flatten()
            }) {
                Some(state) if state.len() == self.state_len() => {
                    std::sync::Arc::try_unwrap(state).unwrap_or_else(|shared| (*shared).clone())
                }
                _ => {
                    return Err(Error::internal(format!(
                        "no recurrent state at position {position} to continue from"
                    )))
                }
            }
        };
        let (channels, taps, hd) = (self.channels(), self.taps, self.head_dim);
        let (conv_state, matrices) = state.split_at_mut(channels * (taps - 1));
        let heads = self.value_heads;
        let key_dim = self.key_heads * hd;
        let mut conv_out = vec![0f32; channels];
        let mut delta = vec![0f32; hd];
        let scale = 1.0 / (hd as f32).sqrt();
        let l2_eps = self.eps / hd as f32;
        let l2_scale = 1.0 / (hd as f32).sqrt();
        for row in 0..rows {
            let x = &p.mixed[row * channels..(row + 1) * channels];
            // The convolution over the last `taps - 1` inputs and this one, then SiLU.
            for c in 0..channels {
                let window = &mut conv_state[c * (taps - 1)..(c + 1) * (taps - 1)];
                let w = &self.conv[c * taps..(c + 1) * taps];
                let mut sum = 0f32;
                for (v, w) in window.iter().zip(w) {
                    sum += v * w;
                }
                sum += x[c] * w[taps - 1];
                conv_out[c] = silu(sum);
                if taps > 1 {
                    window.copy_within(1.., 0);
                    window[taps - 2] = x[c];
                }
            }
            let (qk, v) = conv_out.split_at_mut(2 * key_dim);
            for head in qk.chunks_mut(hd) {
                let s = rms_scale(head, l2_eps);
                head.iter_mut().for_each(|x| *x = *x * s * l2_scale);
            }
            let (q, k) = qk.split_at(key_dim);
            let o_row = &mut out[row * heads * hd..(row + 1) * heads * hd];
            for h in 0..heads {
                let kh = h % self.key_heads;
                let (q, k) = (&q[kh * hd..(kh + 1) * hd], &k[kh * hd..(kh + 1) * hd]);
                let v = &v[h * hd..(h + 1) * hd];
                let a = p.alpha[row * heads + h] + self.dt_bias[h];
                let softplus = if a > 20.0 { a } else { (1.0 + a.exp()).ln() };
                let decay = (softplus * self.a[h]).exp();
                let b = p.b[row * heads + h];
                let beta = 1.0 / (1.0 + (-b).exp());
                // `m[j][i]` is `S[i][j]`: row j of m holds column j of S.
                let m = &mut matrices[h * hd * hd..(h + 1) * hd * hd];
                m.iter_mut().for_each(|x| *x *= decay);
                for (j, d) in delta.iter_mut().enumerate() {
                    let mj = &m[j * hd..(j + 1) * hd];
                    let sk: f32 = mj.iter().zip(k).map(|(a, b)| a * b).sum();
                    *d = (v[j] - sk) * beta;
                }
                for (j, d) in delta.iter().enumerate() {
                    for (mji, ki) in m[j * hd..(j + 1) * hd].iter_mut().zip(k) {
                        *mji += ki * d;
                    }
                }
                let o = &mut o_row[h * hd..(h + 1) * hd];
                for (j, o) in o.iter_mut().enumerate() {
                    let sq: f32 = m[j * hd..(j + 1) * hd]
                        .iter()
                        .zip(q)
                        .map(|(a, b)| a * b)
                        .sum();
                    *o = sq * scale;
                }
                // The gated output norm.
                let s = rms_scale(o, self.eps);
                let z = &p.z[(row * heads + h) * hd..(row * heads + h + 1) * hd];
                for ((o, w), z) in o.iter_mut().zip(&self.norm).zip(z) {
                    *o = *o * s * w * silu(*z);
                }
            }
        }
        *cache = Some(LayerKv::recurrent(state, position + rows));
        Ok(())
    }
}
