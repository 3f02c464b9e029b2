//! Mixture-of-experts feed-forward, as llama.cpp's `build_moe_ffn` computes it: a router
//! (`ffn_gate_inp`) scores every expert for each row, the `used` best are picked, their gated
//! feed-forwards (`ffn_{gate,up,down}_exps`, one matrix per expert in a 3-D GGUF tensor) run on
//! the row and their outputs are summed with the routing weights. The families differ in how
//! scores become weights ([`Gating`]), whether the weights are renormalised and scaled, the
//! activation ([`ExpertActivation`]), biases (gpt-oss), an always-on shared expert (GLM-4.5),
//! and, for Gemma 4, a router input of its own, gate and up in one fused tensor
//! (`ffn_gate_up_exps`) and a per-expert output scale (`ffn_down_exps.scale`).
//!
//! Rows are grouped by expert, so each expert's matrices are read once per pass whatever the
//! number of rows (prompt or batched decode steps); each row's arithmetic is the same as alone.

use super::f32_tensor;
use super::mxfp4::ExpertLinear;
use super::qlinear::QLinear;
use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::io::{Read, Seek};
use std::sync::Arc;

/// How router scores become expert choices and weights (llama.cpp's
/// `llama_expert_gating_func_type`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Gating {
    /// Softmax over all experts, the `used` most probable kept with their probabilities
    /// (Qwen3 MoE).
    Softmax,
    /// The `used` highest scores kept, then a softmax over those alone (gpt-oss).
    SoftmaxWeight,
    /// Sigmoid of each score; experts chosen by sigmoid plus a per-expert selection bias
    /// (`exp_probs_b`), weighted by the unbiased sigmoid (GLM-4.5).
    Sigmoid,
}

/// The experts' gated activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum ExpertActivation {
    /// `silu(gate) * up`.
    Silu,
    /// gpt-oss's clamped SwiGLU: `g = min(gate, limit)`, `u = clamp(up, -limit, limit)`,
    /// `g * sigmoid(alpha * g) * (u + 1)`.
    SwigluOai { alpha: f32, limit: f32 },
    /// `gelu(gate) * up` with llama.cpp's f16 GELU table (Gemma 4; candle's tanh GELU when
    /// the products are exact).
    Gelu,
}

/// One expert's gated feed-forward.
#[derive(Clone)]
struct Expert {
    gate: ExpertLinear,
    up: ExpertLinear,
    down: ExpertLinear,
}

/// What a family sets about its experts.
#[derive(Clone, Copy, Debug)]
pub(super) struct MoeSettings {
    /// Experts used per row.
    pub(super) used: usize,
    /// How scores become choices and weights.
    pub(super) gating: Gating,
    /// Divide the chosen weights by their sum.
    pub(super) normalize: bool,
    /// Multiply the chosen weights (GLM-4.5's `routed_scaling_factor`); 0 or 1: unscaled.
    pub(super) scale: f32,
    /// The experts' activation.
    pub(super) activation: ExpertActivation,
    /// Whether the router and the experts have biases (gpt-oss).
    pub(super) biases: bool,
}

/// A mixture-of-experts feed-forward block. Cloning shares the weights.
#[derive(Clone)]
pub(super) struct Experts {
    router: QLinear,
    /// Selection bias added to the gated scores before choosing (GLM-4.5's `exp_probs_b`).
    selection_bias: Option<Vec<f32>>,
    experts: Arc<Vec<Expert>>,
    /// Always-on expert (GLM-4.5): gate, up, down.
    shared: Option<Arc<Expert>>,
    /// Each expert's output scale (Gemma 4's `ffn_down_exps.scale`).
    down_scales: Option<Vec<f32>>,
    settings: MoeSettings,
}

/// The matrices of one 3-D GGUF tensor `[experts, rows, cols]` as one quantized linear layer
/// each (MXFP4 ones read by `mxfp4.rs`), with the matching row of a `[experts, rows]` bias.
fn split_experts<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    name: &str,
    bias: bool,
) -> Result<Vec<ExpertLinear>> {
    if let Some(experts) = super::mxfp4::load_experts(ct, reader, name, bias)? {
        return Ok(experts);
    }
    let biases = if bias {
        Some(f32_tensor(ct, reader, &format!("{name}.bias"))?)
    } else {
        None
    };
    let [experts] = quantized_experts(ct, reader, name)?;
    experts
        .into_iter()
        .enumerate()
        .map(|(e, mut linear)| {
            if let Some(b) = &biases {
                linear.bias = Some(b.get(e)?);
            }
            Ok(ExpertLinear::Quant(linear))
        })
        .collect()
}

/// The matrices of one 3-D GGUF tensor `[experts, rows, cols]`, each cut by rows into `N`
/// equal parts (a fused gate and up: `N` = 2, the gate first), as quantized linear layers:
/// part `i` of every expert in the `i`-th list.
fn quantized_experts<R: Read + Seek, const N: usize>(
    ct: &Content,
    reader: &mut R,
    name: &str,
) -> Result<[Vec<QLinear>; N]> {
    let device = Device::Cpu;
    let whole = ct.tensor(reader, &format!("{name}.weight"), &device)?;
    let (count, rows, cols) = whole.shape().dims3()?;
    let data = whole.data()?;
    if count == 0 || data.len() % count != 0 || rows % N != 0 {
        return Err(Error::bad_request(format!(
            "the GGUF's {name}.weight is not {count} equal expert matrices of {N} parts"
        )));
    }
    // Quantized rows are whole blocks, so a part of the rows is a part of the bytes.
    let per = data.len() / count / N;
    let exact = super::qlinear::exact_products(ct);
    let mut parts: [Vec<QLinear>; N] = std::array::from_fn(|_| Vec::with_capacity(count));
    for e in 0..count {
        for (i, part) in parts.iter_mut().enumerate() {
            let at = (e * N + i) * per;
            let storage =
                QStorage::from_data(Cow::Borrowed(&data[at..at + per]), &device, whole.dtype())?;
            let weight = Arc::new(QTensor::new(storage, (rows / N, cols))?);
            part.push(QLinear::from_weight(weight, exact)?);
        }
    }
    Ok(parts)
}

/// The experts' gate and up projections: `ffn_gate_exps` and `ffn_up_exps`, or both in
/// `ffn_gate_up_exps` (Gemma 4; gate rows first, as llama.cpp's views split it).
fn gate_and_up_experts<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    p: &str,
    bias: bool,
) -> Result<(Vec<ExpertLinear>, Vec<ExpertLinear>)> {
    let fused = format!("{p}.ffn_gate_up_exps");
    if !crate::llm::loading::has_tensor(ct, &format!("{fused}.weight")) {
        return Ok((
            split_experts(ct, reader, &format!("{p}.ffn_gate_exps"), bias)?,
            split_experts(ct, reader, &format!("{p}.ffn_up_exps"), bias)?,
        ));
    }
    if bias {
        return Err(Error::bad_request(format!(
            "the GGUF's {fused} has biases, which no supported family has"
        )));
    }
    if let Some([gates, ups]) = super::mxfp4::load_gate_up_experts(ct, reader, &fused)? {
        return Ok((gates, ups));
    }
    let [gates, ups] = quantized_experts(ct, reader, &fused)?;
    let wrap = |v: Vec<QLinear>| v.into_iter().map(ExpertLinear::Quant).collect();
    Ok((wrap(gates), wrap(ups)))
}

impl Experts {
    /// Loads block `p`'s (`blk.{i}`) router, experts and, when `shared`, its shared expert
    /// (`ffn_{gate,up,down}_shexp`).
    pub(super) fn load<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        p: &str,
        settings: MoeSettings,
        shared: bool,
    ) -> Result<Self> {
        let router = QLinear::load(ct, reader, &format!("{p}.ffn_gate_inp"), settings.biases)?;
        let (gates, ups) = gate_and_up_experts(ct, reader, p, settings.biases)?;
        let downs = split_experts(ct, reader, &format!("{p}.ffn_down_exps"), settings.biases)?;
        if gates.len() != ups.len() || gates.len() != downs.len() || settings.used == 0 {
            return Err(Error::bad_request(format!(
                "the GGUF's {p} has {} gate, {} up and {} down experts, {} used",
                gates.len(),
                ups.len(),
                downs.len(),
                settings.used
            )));
        }
        let experts = gates
            .into_iter()
            .zip(ups)
            .zip(downs)
            .map(|((gate, up), down)| Expert { gate, up, down })
            .collect::<Vec<_>>();
        let scale_name = format!("{p}.ffn_down_exps.scale");
        let down_scales = if ct.tensor_infos.contains_key(&scale_name) {
            let scales = f32_tensor(ct, reader, &scale_name)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if scales.len() != experts.len() {
                return Err(Error::bad_request(format!(
                    "the GGUF's {scale_name} has {} values for {} experts",
                    scales.len(),
                    experts.len()
                )));
            }
            Some(scales)
        } else {
            None
        };
        let bias_name = format!("{p}.exp_probs_b.bias");
        let selection_bias = if ct.tensor_infos.contains_key(&bias_name) {
            Some(f32_tensor(ct, reader, &bias_name)?.to_vec1::<f32>()?)
        } else {
            None
        };
        let shared = if shared {
            let load = |reader: &mut R, n: &str| -> Result<ExpertLinear> {
                Ok(ExpertLinear::Quant(QLinear::load(
                    ct,
                    reader,
                    &format!("{p}.{n}"),
                    false,
                )?))
            };
            Some(Arc::new(Expert {
                gate: load(reader, "ffn_gate_shexp")?,
                up: load(reader, "ffn_up_shexp")?,
                down: load(reader, "ffn_down_shexp")?,
            }))
        } else {
            None
        };
        Ok(Experts {
            router,
            selection_bias,
            experts: Arc::new(experts),
            shared,
            down_scales,
            settings,
        })
    }

    /// The experts each row uses and their weights, from the router's `scores` of the row.
    fn route(&self, scores: &[f32]) -> Vec<(usize, f32)> {
        let s = &self.settings;
        let used = s.used.min(scores.len());
        let probs: Vec<f32> = match s.gating {
            Gating::Softmax => softmax(scores),
            Gating::SoftmaxWeight => scores.to_vec(),
            Gating::Sigmoid => scores.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
        };
        let selection: Vec<f32> = match &self.selection_bias {
            Some(b) => probs.iter().zip(b).map(|(p, b)| p + b).collect(),
            None => probs.clone(),
        };
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Highest first; ties keep the lower index first.
        order.sort_by(|&a, &b| selection[b].total_cmp(&selection[a]).then(a.cmp(&b)));
        order.truncate(used);
        let mut weights: Vec<f32> = order.iter().map(|&e| probs[e]).collect();
        if s.gating == Gating::SoftmaxWeight {
            weights = softmax(&weights);
        }
        if s.normalize {
            // llama.cpp clamps the sum to f16's smallest normal number.
            let sum = weights.iter().sum::<f32>().max(6.103_515_6e-5);
            weights.iter_mut().for_each(|w| *w /= sum);
        }
        if s.scale != 0.0 && s.scale != 1.0 {
            weights.iter_mut().for_each(|w| *w *= s.scale);
        }
        order.into_iter().zip(weights).collect()
    }

    /// The block's output for `x` (`[1, rows, hidden]`): each expert's products run over the
    /// rows routed to it (every row's result is the one it has alone).
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_routed(x, x)
    }

    /// [`Experts::forward`] with the router scoring `router_input` (`[1, rows, hidden]`)
    /// instead of `x` (Gemma 4 routes on a norm of its own).
    pub(super) fn forward_routed(&self, x: &Tensor, router_input: &Tensor) -> Result<Tensor> {
        let (_, rows, hidden) = x.dims3()?;
        let x2 = x.reshape((rows, hidden))?;
        let scores = self
            .router
            .forward_rows(&router_input.reshape((rows, hidden))?)?
            .to_vec2::<f32>()?;
        // Per expert: the rows routed to it and their weights.
        let mut routed: Vec<(Vec<u32>, Vec<f32>)> =
            vec![(Vec::new(), Vec::new()); self.experts.len()];
        for (row, row_scores) in scores.iter().enumerate() {
            for (e, w) in self.route(row_scores) {
                routed[e].0.push(row as u32);
                routed[e].1.push(w);
            }
        }
        let mut out = x2.zeros_like()?;
        for (e, (expert, (ids, weights))) in self.experts.iter().zip(routed).enumerate() {
            if ids.is_empty() {
                continue;
            }
            let n = ids.len();
            let ids = Tensor::from_vec(ids, n, x.device())?;
            let xs = x2.index_select(&ids, 0)?;
            let mut y = self.expert_forward(expert, &xs)?;
            if let Some(scales) = &self.down_scales {
                y = (y * scales[e] as f64)?;
            }
            let weights = Tensor::from_vec(weights, (n, 1), x.device())?;
            out = out.index_add(&ids, &y.broadcast_mul(&weights)?, 0)?;
        }
        if let Some(shared) = &self.shared {
            out = (out + self.expert_forward(shared, &x2)?)?;
        }
        Ok(out.reshape((1, rows, hidden))?)
    }

    /// One expert's gated feed-forward of `x` (`[rows, hidden]`).
    fn expert_forward(&self, expert: &Expert, x: &Tensor) -> Result<Tensor> {
        let gate = expert.gate.forward_rows(x)?;
        let up = expert.up.forward_rows(x)?;
        let gated = match self.settings.activation {
            ExpertActivation::Silu => (gate.silu()? * up)?,
            ExpertActivation::SwigluOai { alpha, limit } => {
                let g = gate.clamp(f32::NEG_INFINITY, limit)?;
                let u = up.clamp(-limit, limit)?;
                let sig = candle_nn::ops::sigmoid(&(&g * alpha as f64)?)?;
                ((g * sig)? * (u + 1.0)?)?
            }
            // Exact products (safetensors, compared with transformers): the exact GELU.
            ExpertActivation::Gelu if self.router.exact => (gate.gelu()? * up)?,
            ExpertActivation::Gelu => super::gelu_f16_mul(&gate, &up)?,
        };
        Ok(expert.down.forward_rows(&gated)?)
    }
}

/// Softmax of a few values, in f32.
fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Experts with no matrices, for routing alone.
    fn router(gating: Gating, normalize: bool, scale: f32, bias: Option<Vec<f32>>) -> Experts {
        let w = Tensor::zeros((4, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let weight =
            Arc::new(QTensor::quantize(&w, candle_core::quantized::GgmlDType::F32).unwrap());
        Experts {
            router: QLinear {
                matmul: candle_core::quantized::QMatMul::from_arc(weight.clone()).unwrap(),
                weight,
                bias: None,
                exact: false,
            },
            selection_bias: bias,
            experts: Arc::new(Vec::new()),
            shared: None,
            down_scales: None,
            settings: MoeSettings {
                used: 2,
                gating,
                normalize,
                scale,
                activation: ExpertActivation::Silu,
                biases: false,
            },
        }
    }

    fn close(a: &[(usize, f32)], b: &[(usize, f32)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() < 1e-6)
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[2] && p[2] > p[0]);
    }

    /// Qwen3 MoE: softmax over all four, the best two renormalised; gpt-oss: softmax over the
    /// best two scores; GLM-4.5: chosen by sigmoid plus bias, weighted by the plain sigmoid,
    /// renormalised and scaled.
    #[test]
    fn each_gating_picks_and_weights_as_llama_cpp() {
        let scores = [0.5f32, 2.0, -1.0, 1.0];
        let all = softmax(&scores);
        let (a, b) = (all[1], all[3]);
        let got = router(Gating::Softmax, true, 0.0, None).route(&scores);
        assert!(
            close(&got, &[(1, a / (a + b)), (3, b / (a + b))]),
            "{got:?}"
        );
        let got = router(Gating::Softmax, false, 0.0, None).route(&scores);
        assert!(close(&got, &[(1, a), (3, b)]), "{got:?}");
        let two = softmax(&[2.0, 1.0]);
        let got = router(Gating::SoftmaxWeight, false, 0.0, None).route(&scores);
        assert!(close(&got, &[(1, two[0]), (3, two[1])]), "{got:?}");
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let bias = Some(vec![0.0, 0.0, 5.0, 0.0]);
        let got = router(Gating::Sigmoid, true, 2.5, bias).route(&scores);
        let (s2, s1) = (sig(-1.0), sig(2.0));
        let want = [(2, 2.5 * s2 / (s1 + s2)), (1, 2.5 * s1 / (s1 + s2))];
        assert!(close(&got, &want), "{got:?}");
    }
}
