//! The mixture-of-experts families' Hugging Face layouts (qwen3_moe, glm4_moe, gpt_oss) mapped
//! onto the GGUF view, with the shared helpers of `families.rs`: experts stacked per block.

use super::*;

/// Layer `i`'s routed experts (`mlp.experts.{e}.{gate,up,down}_proj`) stacked per projection.
pub(super) fn experts(
    v: &mut View,
    c: &Common,
    i: usize,
    count: usize,
    intermediate: usize,
) -> Result<()> {
    if count == 0 {
        return Err(Error::bad_request("config.json: a mixture of no experts"));
    }
    let p = format!("blk.{i}");
    for (gguf, proj, shape) in [
        ("ffn_gate_exps", "gate_proj", [intermediate, c.hidden]),
        ("ffn_up_exps", "up_proj", [intermediate, c.hidden]),
        ("ffn_down_exps", "down_proj", [c.hidden, intermediate]),
    ] {
        let names: Vec<String> = (0..count)
            .map(|e| hf(i, &format!("mlp.experts.{e}.{proj}.weight")))
            .collect();
        expect(v, &names[0], &shape)?;
        v.stacked(&format!("{p}.{gguf}.weight"), &names)?;
    }
    Ok(())
}

/// Qwen3 MoE: Qwen3's attention, every block a softmax-routed mixture of experts whose chosen
/// weights are renormalised.
pub(super) fn qwen3moe(v: &mut View, cfg: &Cfg) -> Result<()> {
    const FAMILY: &str = "qwen3_moe";
    silu_only(cfg, FAMILY)?;
    no_sliding_window(cfg, FAMILY)?;
    if !cfg.bool_or("norm_topk_prob", true)? {
        return Err(unsupported("`norm_topk_prob: false`", FAMILY));
    }
    if cfg.opt_usize("decoder_sparse_step")?.unwrap_or(1) != 1
        || cfg
            .0
            .get("mlp_only_layers")
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
    {
        return Err(unsupported(
            "dense layers between the expert layers",
            FAMILY,
        ));
    }
    let (_, scaling) = cfg.rope(1_000_000.0)?;
    cfg.no_rope_scaling(scaling, FAMILY)?;
    let c = common(v, cfg, "qwen3moe", 0.0, 1_000_000.0)?;
    // Transformers 5 writes `num_local_experts`, earlier versions `num_experts`.
    let count = match cfg.opt_usize("num_experts")? {
        Some(n) => n,
        None => cfg.usize("num_local_experts")?,
    };
    let used = cfg.usize("num_experts_per_tok")?;
    let intermediate = cfg.usize("moe_intermediate_size")?;
    v.u32("qwen3moe.expert_count", count);
    v.u32("qwen3moe.expert_used_count", used);
    v.u32("qwen3moe.expert_feed_forward_length", intermediate);
    for i in 0..c.layers {
        let p = format!("blk.{i}");
        attention(v, &c, i, false)?;
        qk_norms(v, i, 0.0)?;
        expect(v, &hf(i, "mlp.gate.weight"), &[count, c.hidden])?;
        v.tensor(
            &format!("{p}.ffn_gate_inp.weight"),
            &hf(i, "mlp.gate.weight"),
        )?;
        experts(v, &c, i, count, intermediate)?;
        v.norm(
            &format!("{p}.attn_norm.weight"),
            &hf(i, "input_layernorm.weight"),
            0.0,
        )?;
        v.norm(
            &format!("{p}.ffn_norm.weight"),
            &hf(i, "post_attention_layernorm.weight"),
            0.0,
        )?;
    }
    Ok(())
}

/// GLM-4.5 / 4.6: dense first blocks, then experts chosen by sigmoid plus a selection bias,
/// renormalised and scaled, beside a shared expert; the checkpoint's NextN layers are not run.
pub(super) fn glm4moe(v: &mut View, cfg: &Cfg) -> Result<()> {
    const FAMILY: &str = "glm4_moe";
    silu_only(cfg, FAMILY)?;
    if cfg.opt_usize("n_group")?.unwrap_or(1) != 1 || cfg.opt_usize("topk_group")?.unwrap_or(1) != 1
    {
        return Err(unsupported("grouped expert routing (n_group > 1)", FAMILY));
    }
    let (_, scaling) = cfg.rope(1_000_000.0)?;
    cfg.no_rope_scaling(scaling, FAMILY)?;
    let c = common(v, cfg, "glm4moe", 0.0, 1_000_000.0)?;
    let rotated = (c.head_dim as f64 * partial_rotary(cfg, 0.5)?) as usize;
    let count = cfg.usize("n_routed_experts")?;
    let intermediate = cfg.usize("moe_intermediate_size")?;
    let dense = cfg.opt_usize("first_k_dense_replace")?.unwrap_or(0);
    let shared = cfg.opt_usize("n_shared_experts")?.unwrap_or(0);
    v.u32("glm4moe.rope.dimension_count", rotated);
    v.u32("glm4moe.expert_count", count);
    v.u32(
        "glm4moe.expert_used_count",
        cfg.usize("num_experts_per_tok")?,
    );
    v.u32("glm4moe.expert_feed_forward_length", intermediate);
    v.u32("glm4moe.leading_dense_block_count", dense);
    v.u32("glm4moe.nextn_predict_layers", 0);
    // llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID.
    v.u32("glm4moe.expert_gating_func", 2);
    v.bool(
        "glm4moe.expert_weights_norm",
        cfg.bool_or("norm_topk_prob", true)?,
    );
    v.f32(
        "glm4moe.expert_weights_scale",
        cfg.f64_or("routed_scaling_factor", 1.0)?,
    );
    let dense_intermediate = cfg.usize("intermediate_size")?;
    for i in 0..c.layers {
        let p = format!("blk.{i}");
        attention(v, &c, i, false)?;
        if v.has(&hf(i, "self_attn.q_norm.weight")) {
            qk_norms(v, i, 0.0)?;
        }
        v.norm(
            &format!("{p}.attn_norm.weight"),
            &hf(i, "input_layernorm.weight"),
            0.0,
        )?;
        v.norm(
            &format!("{p}.post_attention_norm.weight"),
            &hf(i, "post_attention_layernorm.weight"),
            0.0,
        )?;
        if i < dense {
            feed_forward(v, &c, i, dense_intermediate)?;
            continue;
        }
        expect(v, &hf(i, "mlp.gate.weight"), &[count, c.hidden])?;
        v.tensor(
            &format!("{p}.ffn_gate_inp.weight"),
            &hf(i, "mlp.gate.weight"),
        )?;
        v.optional(
            &format!("{p}.exp_probs_b.bias"),
            &hf(i, "mlp.gate.e_score_correction_bias"),
        )?;
        experts(v, &c, i, count, intermediate)?;
        if shared > 0 {
            let rows = intermediate * shared;
            for (gguf, proj, shape) in [
                ("ffn_gate_shexp", "gate_proj", [rows, c.hidden]),
                ("ffn_up_shexp", "up_proj", [rows, c.hidden]),
                ("ffn_down_shexp", "down_proj", [c.hidden, rows]),
            ] {
                let name = hf(i, &format!("mlp.shared_experts.{proj}.weight"));
                expect(v, &name, &shape)?;
                v.tensor(&format!("{p}.{gguf}.weight"), &name)?;
            }
        }
    }
    Ok(())
}

/// gpt-oss: biases everywhere, attention sinks, sliding windows on the even layers, YaRN
/// rotary; experts stored `[in, out]` with gate and up columns interleaved (transposed and
/// split here, as llama.cpp's converter does). Checkpoints in MXFP4 (the released ones) are
/// not read yet.
pub(super) fn gpt_oss(v: &mut View, cfg: &Cfg) -> Result<()> {
    const FAMILY: &str = "gpt_oss";
    if cfg
        .0
        .get("quantization_config")
        .is_some_and(|q| !q.is_null())
    {
        return Err(unsupported("MXFP4 weights", FAMILY));
    }
    let c = common(v, cfg, "gpt-oss", 0.0, 150_000.0)?;
    if let Some(types) = cfg.0.get("layer_types").and_then(Value::as_array) {
        for (i, t) in types.iter().enumerate() {
            let want = if (i + 1) % 2 == 0 {
                "full_attention"
            } else {
                "sliding_attention"
            };
            if t.as_str() != Some(want) {
                return Err(unsupported(
                    "layer_types other than alternating sliding and full",
                    FAMILY,
                ));
            }
        }
    }
    if let Some(w) = cfg.opt_usize("sliding_window")? {
        v.u32("gpt-oss.attention.sliding_window", w);
    }
    let count = cfg.usize("num_local_experts")?;
    v.u32("gpt-oss.expert_count", count);
    v.u32(
        "gpt-oss.expert_used_count",
        cfg.usize("num_experts_per_tok")?,
    );
    let (_, scaling) = cfg.rope(150_000.0)?;
    if let Some(s) = scaling {
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Value::as_str);
        if kind != Some("yarn") {
            cfg.no_rope_scaling(Some(s), FAMILY)?;
        } else {
            let num = |k: &str, d: f64| s.get(k).and_then(Value::as_f64).unwrap_or(d);
            v.string("gpt-oss.rope.scaling.type", "yarn");
            v.f32("gpt-oss.rope.scaling.factor", num("factor", 1.0));
            v.u32(
                "gpt-oss.rope.scaling.original_context_length",
                num("original_max_position_embeddings", 4096.0) as usize,
            );
            v.f32(
                "gpt-oss.rope.scaling.yarn_beta_fast",
                num("beta_fast", 32.0),
            );
            v.f32("gpt-oss.rope.scaling.yarn_beta_slow", num("beta_slow", 1.0));
            let truncate = s.get("truncate").and_then(Value::as_bool).unwrap_or(true);
            v.bool("gpt-oss.rope.scaling.yarn_truncate", truncate);
        }
    }
    for i in 0..c.layers {
        let p = format!("blk.{i}");
        attention(v, &c, i, false)?;
        expect(v, &hf(i, "self_attn.sinks"), &[c.heads])?;
        v.tensor(&format!("{p}.attn_sinks.weight"), &hf(i, "self_attn.sinks"))?;
        v.norm(
            &format!("{p}.attn_norm.weight"),
            &hf(i, "input_layernorm.weight"),
            0.0,
        )?;
        v.norm(
            &format!("{p}.post_attention_norm.weight"),
            &hf(i, "post_attention_layernorm.weight"),
            0.0,
        )?;
        expect(v, &hf(i, "mlp.router.weight"), &[count, c.hidden])?;
        v.tensor(
            &format!("{p}.ffn_gate_inp.weight"),
            &hf(i, "mlp.router.weight"),
        )?;
        v.tensor(&format!("{p}.ffn_gate_inp.bias"), &hf(i, "mlp.router.bias"))?;
        let experts = |n: &str| hf(i, &format!("mlp.experts.{n}"));
        let intermediate = cfg.usize("intermediate_size")?;
        expect(
            v,
            &experts("gate_up_proj"),
            &[count, c.hidden, 2 * intermediate],
        )?;
        expect(v, &experts("gate_up_proj_bias"), &[count, 2 * intermediate])?;
        expect(v, &experts("down_proj"), &[count, intermediate, c.hidden])?;
        expect(v, &experts("down_proj_bias"), &[count, c.hidden])?;
        for (gguf, start) in [("ffn_gate_exps", 0), ("ffn_up_exps", 1)] {
            v.experts_transposed(
                &format!("{p}.{gguf}.weight"),
                &experts("gate_up_proj"),
                start,
                2,
            )?;
            v.experts_transposed(
                &format!("{p}.{gguf}.bias"),
                &experts("gate_up_proj_bias"),
                start,
                2,
            )?;
        }
        v.experts_transposed(
            &format!("{p}.ffn_down_exps.weight"),
            &experts("down_proj"),
            0,
            1,
        )?;
        v.tensor(
            &format!("{p}.ffn_down_exps.bias"),
            &experts("down_proj_bias"),
        )?;
    }
    Ok(())
}
