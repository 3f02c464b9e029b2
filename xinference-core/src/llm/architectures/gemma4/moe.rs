//! Gemma 4's mixture-of-experts feed-forward (26B-A4B), as llama.cpp's `gemma4.cpp` builds it:
//! in a block with a router (`ffn_gate_inp`), the dense feed-forward becomes a shared expert
//! whose output is RMS-normed by `post_ffw_norm_1`, and beside it the routed experts run on
//! the input RMS-normed by `pre_ffw_norm_2`, their sum RMS-normed by `post_ffw_norm_2`; the
//! two are added before the block's `post_ffw_norm`. The router scores the block input
//! RMS-normed without a weight, scaled by `1/sqrt(hidden)` and by `ffn_gate_inp.scale`;
//! softmax gating over all experts, the best `expert_used_count` renormalised, GELU-gated
//! experts (gate and up fused in `ffn_gate_up_exps`), each scaled by its `ffn_down_exps.scale`.

use super::super::moe::{ExpertActivation, Experts, Gating, MoeSettings};
use super::super::{f32_tensor, meta_usize};
use super::{rms_norm, ARCH};
use crate::kernels::norm_rope::Rounding;
use crate::Result;
use candle_core::quantized::gguf_file::Content;
use candle_core::Tensor;
use std::io::{Read, Seek};

/// One block's routed experts and the norms around them.
#[derive(Clone)]
pub(super) struct BlockExperts {
    experts: Experts,
    /// `ffn_gate_inp.scale`: the router input's per-channel scale.
    router_scale: Tensor,
    /// A weight of ones: the router input's RMS norm has none.
    ones: Tensor,
    pre_norm: Tensor,
    shared_post_norm: Tensor,
    post_norm: Tensor,
}

impl BlockExperts {
    /// Block `p`'s (`blk.{i}`) experts, when it has a router.
    pub(super) fn load<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        p: &str,
    ) -> Result<Option<Self>> {
        if !ct
            .tensor_infos
            .contains_key(&format!("{p}.ffn_gate_inp.weight"))
        {
            return Ok(None);
        }
        let settings = MoeSettings {
            used: meta_usize(ct, ARCH, "expert_used_count")?,
            gating: Gating::Softmax,
            normalize: true,
            scale: 1.0,
            activation: ExpertActivation::Gelu,
            biases: false,
        };
        let tensor = |reader: &mut R, name: &str| f32_tensor(ct, reader, &format!("{p}.{name}"));
        let router_scale = tensor(reader, "ffn_gate_inp.scale")?;
        Ok(Some(BlockExperts {
            experts: Experts::load(ct, reader, p, settings, false)?,
            ones: router_scale.ones_like()?,
            router_scale,
            pre_norm: tensor(reader, "pre_ffw_norm_2.weight")?,
            shared_post_norm: tensor(reader, "post_ffw_norm_1.weight")?,
            post_norm: tensor(reader, "post_ffw_norm_2.weight")?,
        }))
    }

    /// The feed-forward output for the block input `x` (`[1, rows, hidden]`) whose dense
    /// (shared-expert) output is `shared`: both normed (as `rounding` says), added.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        shared: &Tensor,
        eps: f32,
        rounding: Rounding,
    ) -> Result<Tensor> {
        let hidden = x.dim(2)?;
        let norm = |x: &Tensor, w: &Tensor| rms_norm(x, w, eps, rounding);
        let router_input = (norm(x, &self.ones)? * (1.0 / (hidden as f32).sqrt()) as f64)?
            .broadcast_mul(&self.router_scale)?;
        let routed = self
            .experts
            .forward_routed(&norm(x, &self.pre_norm)?, &router_input)?;
        let routed = norm(&routed, &self.post_norm)?;
        Ok((norm(shared, &self.shared_post_norm)? + routed)?)
    }
}
