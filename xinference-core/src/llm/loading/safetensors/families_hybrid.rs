//! Qwen3.5 (text, `qwen3_5_text`: `Qwen3_5ForCausalLM`) and Qwen3.5 MoE (`qwen3_5_moe_text`)
//! mapped onto the `qwen35` / `qwen35moe` GGUF views, as
//! llama.cpp's converter maps it (`Qwen3NextModel` and `_LinearAttentionVReorderBase`): which
//! blocks are DeltaNet from `layer_types` (`attention.recurrent_layers`),
//! Gated DeltaNet blocks (`linear_attn.*`) and gated full-attention blocks (`self_attn.*`, the
//! query projection giving each head's query then its output gate), norms stored as `w` for
//! `1 + w` except the DeltaNet's gated output norm, `A_log` as `-exp(A_log)`, the convolution
//! squeezed to `[channels, taps]`, and, when there are more value heads than key heads, the
//! value heads reordered from grouped by key head to tiled (the order the decoder, as ggml,
//! broadcasts the key heads in).

use super::*;

const FAMILY: &str = "qwen3_5_text";

/// The DeltaNet sizes of `config.json`.
struct Net {
    key_heads: usize,
    value_heads: usize,
    head_dim: usize,
}

impl Net {
    /// The index each of `heads * dim` values grouped by key head (`[key][value per key][dim]`)
    /// goes to in the tiled order (`[value per key][key][dim]`): `from[to]`.
    fn tiled(&self, dim: usize) -> Vec<usize> {
        let per_key = self.value_heads / self.key_heads;
        let mut from = Vec::with_capacity(self.value_heads * dim);
        for r in 0..per_key {
            for k in 0..self.key_heads {
                from.extend((0..dim).map(|d| (k * per_key + r) * dim + d));
            }
        }
        from
    }
}

/// `values` (`rows` rows of `cols`) with rows `start..` reordered by `from` (relative to
/// `start`).
fn reorder_rows(values: &[f32], cols: usize, start: usize, from: &[usize]) -> Vec<f32> {
    let mut out = values[..start * cols].to_vec();
    for &f in from {
        out.extend_from_slice(&values[(start + f) * cols..(start + f + 1) * cols]);
    }
    out
}

/// The checkpoint's `name`, in f32 with its rows from `start` on reordered by `from`, under the
/// name `gguf` in the shape `shape`.
fn reordered(
    v: &mut View,
    gguf: &str,
    name: &str,
    shape: Vec<usize>,
    start: usize,
    from: &[usize],
) -> Result<()> {
    let values = v.stored(name)?.to_f32();
    let cols = shape.get(1).copied().unwrap_or(1);
    if values.len() != shape.iter().product::<usize>()
        || (start + from.len()) * cols != values.len()
    {
        return Err(Error::bad_request(format!(
            "the weights do not match its config.json: tensor `{name}` has {} values, \
             config.json implies {shape:?}",
            values.len()
        )));
    }
    v.owned_f32(gguf, shape, &reorder_rows(&values, cols, start, from));
    Ok(())
}

/// Qwen3.5 (text): Gated DeltaNet and gated full-attention blocks, SwiGLU feed-forwards.
pub(super) fn qwen35(v: &mut View, cfg: &Cfg) -> Result<()> {
    let intermediate = cfg.usize("intermediate_size")?;
    hybrid_blocks(v, cfg, FAMILY, "qwen35", |v, c, i| {
        feed_forward(v, c, i, intermediate)
    })
}

/// Qwen3.5 MoE (text, `qwen3_5_moe_text`: Qwen3.5-35B-A3B and up, Qwen3.6's MoE): Qwen3.5's
/// hybrid blocks, each with softmax-routed SwiGLU experts (gate and up fused per expert, split
/// as the converter splits them) and a sigmoid-gated shared expert.
pub(super) fn qwen35moe(v: &mut View, cfg: &Cfg) -> Result<()> {
    const MOE_FAMILY: &str = "qwen3_5_moe_text";
    let count = cfg.usize("num_experts")?;
    let used = cfg.usize("num_experts_per_tok")?;
    let ff = cfg.usize("moe_intermediate_size")?;
    let shared_ff = cfg.usize("shared_expert_intermediate_size")?;
    if count == 0 || used == 0 || used > count {
        return Err(cfg.invalid("num_experts_per_tok", "between 1 and num_experts"));
    }
    if !cfg.bool_or("norm_topk_prob", true)? {
        return Err(unsupported("`norm_topk_prob: false`", MOE_FAMILY));
    }
    v.u32("qwen35moe.expert_count", count);
    v.u32("qwen35moe.expert_used_count", used);
    v.u32("qwen35moe.expert_feed_forward_length", ff);
    v.u32("qwen35moe.expert_shared_feed_forward_length", shared_ff);
    hybrid_blocks(v, cfg, MOE_FAMILY, "qwen35moe", |v, c, i| {
        moe_block(v, c, i, (count, ff, shared_ff))
    })
}

/// Block `i`'s experts (`count` of `ff` rows), router and shared expert (`shared_ff` rows).
fn moe_block(
    v: &mut View,
    c: &Common,
    i: usize,
    (count, ff, shared_ff): (usize, usize, usize),
) -> Result<()> {
    let p = format!("blk.{i}");
    let mlp = |name: &str| hf(i, &format!("mlp.{name}"));
    expect(v, &mlp("gate.weight"), &[count, c.hidden])?;
    v.tensor(&format!("{p}.ffn_gate_inp.weight"), &mlp("gate.weight"))?;
    // Released checkpoints keep each expert's matrices (`experts.{e}.gate_proj`, ...);
    // transformers' in-memory layout fuses them (`experts.gate_up_proj`, `experts.down_proj`).
    if v.has(&mlp("experts.gate_up_proj")) {
        let (gate_up, down) = (mlp("experts.gate_up_proj"), mlp("experts.down_proj"));
        expect(v, &gate_up, &[count, 2 * ff, c.hidden])?;
        v.expert_rows_part(&format!("{p}.ffn_gate_exps.weight"), &gate_up, 0, 2)?;
        v.expert_rows_part(&format!("{p}.ffn_up_exps.weight"), &gate_up, 1, 2)?;
        expect(v, &down, &[count, c.hidden, ff])?;
        v.tensor(&format!("{p}.ffn_down_exps.weight"), &down)?;
    } else {
        moe::experts(v, c, i, count, ff)?;
    }
    for (gguf, proj, shape) in [
        ("ffn_gate_shexp", "gate_proj", [shared_ff, c.hidden]),
        ("ffn_up_shexp", "up_proj", [shared_ff, c.hidden]),
        ("ffn_down_shexp", "down_proj", [c.hidden, shared_ff]),
    ] {
        let name = mlp(&format!("shared_expert.{proj}.weight"));
        expect(v, &name, &shape)?;
        v.tensor(&format!("{p}.{gguf}.weight"), &name)?;
    }
    expect(v, &mlp("shared_expert_gate.weight"), &[1, c.hidden])?;
    v.tensor(
        &format!("{p}.ffn_gate_inp_shexp.weight"),
        &mlp("shared_expert_gate.weight"),
    )
}

/// The hybrid blocks of Qwen3.5 (`arch` `qwen35` or `qwen35moe`, `family` its `model_type`):
/// Gated DeltaNet and gated full attention, each followed by the feed-forward `ffn` writes.
fn hybrid_blocks(
    v: &mut View,
    cfg: &Cfg,
    family: &str,
    arch: &str,
    mut ffn: impl FnMut(&mut View, &Common, usize) -> Result<()>,
) -> Result<()> {
    silu_only(cfg, family)?;
    let (_, scaling) = cfg.rope(10_000_000.0)?;
    // Text positions fill M-RoPE's sections alike: plain rotary (no other scaling).
    if let Some(kind) = scaling
        .as_ref()
        .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
        .and_then(Value::as_str)
    {
        return Err(unsupported(&format!("RoPE type `{kind}`"), family));
    }
    let c = common(v, cfg, arch, 1.0, 10_000_000.0)?;
    let net = Net {
        key_heads: cfg.usize("linear_num_key_heads")?,
        value_heads: cfg.usize("linear_num_value_heads")?,
        head_dim: cfg.usize("linear_key_head_dim")?,
    };
    if cfg.usize("linear_value_head_dim")? != net.head_dim {
        return Err(unsupported(
            "linear_value_head_dim other than linear_key_head_dim",
            family,
        ));
    }
    if net.key_heads == 0 || !net.value_heads.is_multiple_of(net.key_heads) {
        return Err(cfg.invalid(
            "linear_num_value_heads",
            "a multiple of linear_num_key_heads",
        ));
    }
    let taps = cfg.usize("linear_conv_kernel_dim")?;
    // Which blocks are DeltaNet: `layer_types`, else every `full_attention_interval`-th block
    // (Transformers' default 4) is full attention.
    let recurrent: Vec<bool> = match layer_flags(cfg, c.layers, "linear_attention", family)? {
        Some(flags) => flags,
        None => {
            let interval = cfg
                .opt_usize("full_attention_interval")?
                .unwrap_or(4)
                .max(1);
            (0..c.layers).map(|i| (i + 1) % interval != 0).collect()
        }
    };
    let m = |key: &str| format!("{arch}.{key}");
    v.u32(&m("ssm.conv_kernel"), taps);
    v.u32(&m("ssm.state_size"), net.head_dim);
    v.u32(&m("ssm.group_count"), net.key_heads);
    v.u32(&m("ssm.time_step_rank"), net.value_heads);
    v.u32(&m("ssm.inner_size"), net.head_dim * net.value_heads);
    v.bools(&m("attention.recurrent_layers"), &recurrent);
    let rotated = (c.head_dim as f64 * partial_rotary(cfg, 0.25)?).round() as usize;
    v.u32(&m("rope.dimension_count"), rotated);
    for (i, &is_recurrent) in recurrent.iter().enumerate() {
        let p = format!("blk.{i}");
        ffn(v, &c, i)?;
        v.norm(
            &format!("{p}.attn_norm.weight"),
            &hf(i, "input_layernorm.weight"),
            1.0,
        )?;
        v.norm(
            &format!("{p}.post_attention_norm.weight"),
            &hf(i, "post_attention_layernorm.weight"),
            1.0,
        )?;
        if is_recurrent {
            delta_net(v, &net, c.hidden, taps, i)?;
        } else {
            gated_attention(v, &c, i)?;
        }
    }
    Ok(())
}

/// Block `i`'s Gated DeltaNet.
fn delta_net(v: &mut View, net: &Net, hidden: usize, taps: usize, i: usize) -> Result<()> {
    let p = format!("blk.{i}");
    let at = |name: &str| hf(i, &format!("linear_attn.{name}"));
    let keys = net.key_heads * net.head_dim;
    let values = net.value_heads * net.head_dim;
    let channels = 2 * keys + values;
    let by_head = net.tiled(net.head_dim);
    let by_value_head = net.tiled(1);
    // q and k stay; the value rows (and the value channels of the convolution) are tiled.
    reordered(
        v,
        &format!("{p}.attn_qkv.weight"),
        &at("in_proj_qkv.weight"),
        vec![channels, hidden],
        2 * keys,
        &by_head,
    )?;
    reordered(
        v,
        &format!("{p}.ssm_conv1d.weight"),
        &at("conv1d.weight"),
        vec![channels, taps],
        2 * keys,
        &by_head,
    )?;
    reordered(
        v,
        &format!("{p}.attn_gate.weight"),
        &at("in_proj_z.weight"),
        vec![values, hidden],
        0,
        &by_head,
    )?;
    for (gguf, name) in [("ssm_beta", "in_proj_b"), ("ssm_alpha", "in_proj_a")] {
        reordered(
            v,
            &format!("{p}.{gguf}.weight"),
            &at(&format!("{name}.weight")),
            vec![net.value_heads, hidden],
            0,
            &by_value_head,
        )?;
    }
    reordered(
        v,
        &format!("{p}.ssm_dt.bias"),
        &at("dt_bias"),
        vec![net.value_heads],
        0,
        &by_value_head,
    )?;
    let a: Vec<f32> = v
        .stored(&at("A_log"))?
        .to_f32()
        .iter()
        .map(|x| -x.exp())
        .collect();
    if a.len() != net.value_heads {
        return Err(cfg_mismatch(&at("A_log"), a.len(), net.value_heads));
    }
    let a = reorder_rows(&a, 1, 0, &by_value_head);
    v.owned_f32(&format!("{p}.ssm_a"), vec![net.value_heads], &a);
    expect(v, &at("norm.weight"), &[net.head_dim])?;
    v.norm(&format!("{p}.ssm_norm.weight"), &at("norm.weight"), 0.0)?;
    // The output projection's columns follow the tiled value heads.
    let out = v.stored(&at("out_proj.weight"))?.to_f32();
    if out.len() != hidden * values {
        return Err(cfg_mismatch(
            &at("out_proj.weight"),
            out.len(),
            hidden * values,
        ));
    }
    let mut tiled = Vec::with_capacity(out.len());
    for row in out.chunks_exact(values) {
        tiled.extend(by_head.iter().map(|&f| row[f]));
    }
    v.owned_f32(&format!("{p}.ssm_out.weight"), vec![hidden, values], &tiled);
    Ok(())
}

/// Block `i`'s gated full attention: `q_proj` gives `[query, gate]` per head (kept as stored),
/// q/k norms stored as `w` for `1 + w`.
fn gated_attention(v: &mut View, c: &Common, i: usize) -> Result<()> {
    let p = format!("blk.{i}");
    let (q, kv) = (c.heads * c.head_dim, c.kv * c.head_dim);
    for (gguf, proj, shape) in [
        ("attn_q", "q_proj", [2 * q, c.hidden]),
        ("attn_k", "k_proj", [kv, c.hidden]),
        ("attn_v", "v_proj", [kv, c.hidden]),
        ("attn_output", "o_proj", [c.hidden, q]),
    ] {
        let name = hf(i, &format!("self_attn.{proj}.weight"));
        expect(v, &name, &shape)?;
        v.tensor(&format!("{p}.{gguf}.weight"), &name)?;
    }
    for (gguf, norm) in [("attn_q_norm", "q_norm"), ("attn_k_norm", "k_norm")] {
        let name = hf(i, &format!("self_attn.{norm}.weight"));
        expect(v, &name, &[c.head_dim])?;
        v.norm(&format!("{p}.{gguf}.weight"), &name, 1.0)?;
    }
    Ok(())
}

/// The 400 for a tensor of another size than `config.json` implies.
fn cfg_mismatch(name: &str, has: usize, want: usize) -> Error {
    Error::bad_request(format!(
        "the weights do not match its config.json: tensor `{name}` has {has} values, \
         config.json implies {want}"
    ))
}
