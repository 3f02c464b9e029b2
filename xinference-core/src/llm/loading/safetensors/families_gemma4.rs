//! Gemma 4's Hugging Face layout (`gemma4_text`: `Gemma4ForCausalLM`, and the text model of
//! `Gemma4ForConditionalGeneration`; `gemma4_unified_text`, the same blocks without per-layer
//! embeddings or experts) mapped onto the GGUF view, as llama.cpp's converter
//! (`conversion/gemma.py`, `Gemma4Model`) writes it: per-layer head sizes and key/value heads
//! (`global_head_dim` / `num_global_key_value_heads`, or transformers 5's `per_layer_config`),
//! the sliding-window pattern, the "proportional" rotary of the global layers as frequency
//! factors (`rope_freqs`: the unrotated pairs divided by 1e30), per-layer embeddings, key/value
//! sharing, and the 26B-A4B experts beside the dense feed-forward. Norms are stored as used
//! (no Gemma 3 `1 +`).

use super::*;

const FAMILY: &str = "gemma4";

/// One layer's attention shape.
#[derive(Clone, Copy, PartialEq)]
struct LayerShape {
    head_dim: usize,
    kv_heads: usize,
}

/// Whether each layer slides (`layer_types`, which Gemma 4's configs always have).
fn sliding_layers(cfg: &Cfg, layers: usize) -> Result<Vec<bool>> {
    layer_flags(cfg, layers, "sliding_attention", FAMILY)?
        .ok_or_else(|| cfg.invalid("layer_types", "a list of the layers' attention types"))
}

/// Each layer's head size and key/value heads: `head_dim` / `num_key_value_heads` on the
/// sliding layers and `global_head_dim` / `num_global_key_value_heads` (falling back to the
/// former) on the global ones, then what `per_layer_config` (transformers 5) says for a layer
/// (keyed by its index) or a layer type.
fn layer_shapes(cfg: &Cfg, sliding: &[bool]) -> Result<Vec<LayerShape>> {
    let head_dim = cfg.usize("head_dim")?;
    let kv_heads = cfg.usize("num_key_value_heads")?;
    let global = LayerShape {
        head_dim: cfg.opt_usize("global_head_dim")?.unwrap_or(head_dim),
        kv_heads: cfg
            .opt_usize("num_global_key_value_heads")?
            .unwrap_or(kv_heads),
    };
    let mut shapes: Vec<LayerShape> = sliding
        .iter()
        .map(|&s| {
            if s {
                LayerShape { head_dim, kv_heads }
            } else {
                global
            }
        })
        .collect();
    let per_layer = cfg.0.get("per_layer_config").and_then(Value::as_object);
    for (key, own) in per_layer.into_iter().flatten() {
        let layers: Vec<usize> = match (key.as_str(), key.parse::<usize>()) {
            (_, Ok(i)) if i < sliding.len() => vec![i],
            ("sliding_attention" | "full_attention", _) => {
                let slides = key == "sliding_attention";
                (0..sliding.len())
                    .filter(|&i| sliding[i] == slides)
                    .collect()
            }
            _ => {
                return Err(unsupported(
                    &format!("per_layer_config key `{key}`"),
                    FAMILY,
                ))
            }
        };
        for (setting, value) in own.as_object().into_iter().flatten() {
            let n = value.as_u64().map(|n| n as usize);
            for &i in &layers {
                match (setting.as_str(), n) {
                    ("head_dim", Some(n)) => shapes[i].head_dim = n,
                    ("num_key_value_heads", Some(n)) => shapes[i].kv_heads = n,
                    _ => {
                        return Err(unsupported(
                            &format!("per_layer_config {key}: `{setting}: {value}`"),
                            FAMILY,
                        ))
                    }
                }
            }
        }
    }
    Ok(shapes)
}

/// The one head size of the layers of a kind (the decoder has one per kind).
fn head_dim_of(shapes: &[LayerShape], sliding: &[bool], kind: bool) -> Result<Option<usize>> {
    let mut dims = shapes
        .iter()
        .zip(sliding)
        .filter(|(_, &s)| s == kind)
        .map(|(shape, _)| shape.head_dim);
    let first = dims.next();
    if dims.any(|d| Some(d) != first) {
        return Err(unsupported(
            "head sizes that differ between layers of one attention type",
            FAMILY,
        ));
    }
    Ok(first)
}

/// The rotary settings of one layer type in `rope_parameters`: its base and, for the global
/// layers' "proportional" rotary, the fraction of each head it turns.
fn rope_of(cfg: &Cfg, kind: &str, default_theta: f64) -> Result<(f64, f64)> {
    let params = cfg.0.get("rope_parameters").and_then(|p| p.get(kind));
    let num = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_f64);
    let theta = num("rope_theta").unwrap_or(default_theta);
    let partial = num("partial_rotary_factor").unwrap_or(1.0);
    if num("factor").is_some_and(|f| f != 1.0) {
        return Err(unsupported(&format!("{kind} rotary scaling"), FAMILY));
    }
    match params
        .and_then(|p| p.get("rope_type"))
        .and_then(Value::as_str)
    {
        None | Some("default") if partial == 1.0 => Ok((theta, 1.0)),
        Some("proportional") if kind == "full_attention" => Ok((theta, partial)),
        other => Err(unsupported(
            &format!("{kind} rotary {other:?} over {partial} of each head"),
            FAMILY,
        )),
    }
}

/// The settings the decoder fixes, checked.
fn check_supported(cfg: &Cfg) -> Result<()> {
    match cfg.0.get("hidden_activation").and_then(Value::as_str) {
        None | Some("gelu_pytorch_tanh") => {}
        Some(other) => return Err(unsupported(&format!("hidden_activation `{other}`"), FAMILY)),
    }
    if cfg.bool_or("attention_bias", false)? {
        return Err(unsupported("`attention_bias: true`", FAMILY));
    }
    match cfg.0.get("use_bidirectional_attention") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        // Bidirectional attention among image tokens only: the text path is causal.
        Some(Value::String(s)) if s == "vision" => {}
        Some(other) => {
            return Err(unsupported(
                &format!("use_bidirectional_attention {other}"),
                FAMILY,
            ))
        }
    }
    Ok(())
}

/// Gemma 4 (text).
pub(super) fn gemma4(v: &mut View, cfg: &Cfg) -> Result<()> {
    check_supported(cfg)?;
    let c = common(v, cfg, FAMILY, 0.0, 1_000_000.0)?;
    let sliding = sliding_layers(cfg, c.layers)?;
    let shapes = layer_shapes(cfg, &sliding)?;
    let global_dim = head_dim_of(&shapes, &sliding, false)?.unwrap_or(c.head_dim);
    let sliding_dim = head_dim_of(&shapes, &sliding, true)?.unwrap_or(c.head_dim);
    let m = |key: &str| format!("{FAMILY}.{key}");
    v.bools(&m("attention.sliding_window_pattern"), &sliding);
    v.u32(&m("attention.key_length"), global_dim);
    v.u32(&m("attention.value_length"), global_dim);
    v.u32(&m("attention.key_length_swa"), sliding_dim);
    v.u32(&m("attention.value_length_swa"), sliding_dim);
    let kv: Vec<usize> = shapes.iter().map(|s| s.kv_heads).collect();
    v.u32s(&m("attention.head_count_kv"), &kv);
    if let Some(w) = cfg.opt_usize("sliding_window")? {
        v.u32(&m("attention.sliding_window"), w);
    }
    let shared = cfg.opt_usize("num_kv_shared_layers")?.unwrap_or(0);
    v.u32(&m("attention.shared_kv_layers"), shared);
    let width = cfg.opt_usize("hidden_size_per_layer_input")?.unwrap_or(0);
    v.u32(&m("embedding_length_per_layer_input"), width);
    if let Some(cap) = cfg.0.get("final_logit_softcapping").and_then(Value::as_f64) {
        v.f32(&m("final_logit_softcapping"), cap);
    }
    let (local_theta, _) = rope_of(cfg, "sliding_attention", 10_000.0)?;
    let (global_theta, partial) = rope_of(cfg, "full_attention", 1_000_000.0)?;
    v.f32(&m("rope.freq_base"), global_theta);
    v.f32(&m("rope.freq_base_swa"), local_theta);
    // convert_hf_to_gguf: the turned pairs keep their frequency, the others are divided by 1e30.
    let turned = (global_dim as f64 * partial / 2.0) as usize;
    let factors: Vec<f32> = (0..global_dim / 2)
        .map(|j| if j < turned { 1.0 } else { 1e30 })
        .collect();
    v.owned_f32("rope_freqs.weight", vec![factors.len()], &factors);
    if width > 0 {
        per_layer_inputs(v, cfg, &c, width)?;
    }
    if cfg.bool_or("enable_moe_block", false)? {
        v.u32(&m("expert_count"), cfg.usize("num_experts")?);
        v.u32(&m("expert_used_count"), cfg.usize("top_k_experts")?);
    }
    for (i, shape) in shapes.iter().enumerate() {
        block(v, &c, i, *shape, width > 0)?;
    }
    Ok(())
}

/// The per-layer embedding inputs (E2B / E4B): a second token table, the projection of the
/// embeddings and its norm.
fn per_layer_inputs(v: &mut View, cfg: &Cfg, c: &Common, width: usize) -> Result<()> {
    let vocab = cfg
        .opt_usize("vocab_size_per_layer_input")?
        .unwrap_or(cfg.usize("vocab_size")?);
    let all = c.layers * width;
    expect(v, "model.embed_tokens_per_layer.weight", &[vocab, all])?;
    v.tensor(
        "per_layer_token_embd.weight",
        "model.embed_tokens_per_layer.weight",
    )?;
    expect(
        v,
        "model.per_layer_model_projection.weight",
        &[all, c.hidden],
    )?;
    v.tensor(
        "per_layer_model_proj.weight",
        "model.per_layer_model_projection.weight",
    )?;
    v.norm(
        "per_layer_proj_norm.weight",
        "model.per_layer_projection_norm.weight",
        0.0,
    )
}

/// Layer `i`: attention (keys and values unless it shares another layer's), the dense
/// feed-forward, the experts where it has a router, the per-layer input and the output scale.
fn block(v: &mut View, c: &Common, i: usize, shape: LayerShape, per_layer: bool) -> Result<()> {
    let p = format!("blk.{i}");
    let (q, kv) = (c.heads * shape.head_dim, shape.kv_heads * shape.head_dim);
    expect(v, &hf(i, "self_attn.q_proj.weight"), &[q, c.hidden])?;
    expect(v, &hf(i, "self_attn.o_proj.weight"), &[c.hidden, q])?;
    let mut tensors = vec![
        ("attn_q", "self_attn.q_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    let mut norms = vec![
        ("attn_norm", "input_layernorm"),
        ("attn_q_norm", "self_attn.q_norm"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("ffn_norm", "pre_feedforward_layernorm"),
        ("post_ffw_norm", "post_feedforward_layernorm"),
    ];
    // The sharing layers have no key projection; a layer without `v_proj` uses its keys.
    if v.has(&hf(i, "self_attn.k_proj.weight")) {
        expect(v, &hf(i, "self_attn.k_proj.weight"), &[kv, c.hidden])?;
        tensors.push(("attn_k", "self_attn.k_proj"));
        norms.push(("attn_k_norm", "self_attn.k_norm"));
        if v.has(&hf(i, "self_attn.v_proj.weight")) {
            expect(v, &hf(i, "self_attn.v_proj.weight"), &[kv, c.hidden])?;
            tensors.push(("attn_v", "self_attn.v_proj"));
        }
    }
    if per_layer {
        tensors.push(("inp_gate", "per_layer_input_gate"));
        tensors.push(("proj", "per_layer_projection"));
        norms.push(("post_norm", "post_per_layer_input_norm"));
    }
    if v.has(&hf(i, "router.proj.weight")) {
        tensors.push(("ffn_gate_inp", "router.proj"));
        norms.extend([
            ("pre_ffw_norm_2", "pre_feedforward_layernorm_2"),
            ("post_ffw_norm_1", "post_feedforward_layernorm_1"),
            ("post_ffw_norm_2", "post_feedforward_layernorm_2"),
        ]);
        experts(v, i)?;
    }
    for (gguf, name) in tensors {
        v.tensor(
            &format!("{p}.{gguf}.weight"),
            &hf(i, &format!("{name}.weight")),
        )?;
    }
    for (gguf, name) in norms {
        v.norm(
            &format!("{p}.{gguf}.weight"),
            &hf(i, &format!("{name}.weight")),
            0.0,
        )?;
    }
    if v.has(&hf(i, "layer_scalar")) {
        v.norm(
            &format!("{p}.layer_output_scale.weight"),
            &hf(i, "layer_scalar"),
            0.0,
        )?;
    }
    Ok(())
}

/// Layer `i`'s routed experts, stored as llama.cpp keeps them: gate and up fused
/// (`[experts, 2 * ff, hidden]`), down (`[experts, hidden, ff]`), the router's input scale and
/// the per-expert output scales.
fn experts(v: &mut View, i: usize) -> Result<()> {
    let p = format!("blk.{i}");
    let gate_up = v.stored(&hf(i, "experts.gate_up_proj"))?.shape;
    let down = v.stored(&hf(i, "experts.down_proj"))?.shape;
    match (&gate_up[..], &down[..]) {
        ([e, two_ff, h], [e2, h2, ff]) if e == e2 && h == h2 && *two_ff == 2 * ff => {}
        _ => {
            return Err(Error::bad_request(format!(
                "Gemma 4 layer {i}: experts of shapes {gate_up:?} (gate/up) and {down:?} (down) \
                 do not fit together"
            )))
        }
    }
    for (gguf, name) in [
        ("ffn_gate_up_exps.weight", "experts.gate_up_proj"),
        ("ffn_down_exps.weight", "experts.down_proj"),
    ] {
        v.tensor(&format!("{p}.{gguf}"), &hf(i, name))?;
    }
    for (gguf, name) in [
        ("ffn_gate_inp.scale", "router.scale"),
        ("ffn_down_exps.scale", "router.per_expert_scale"),
    ] {
        v.norm(&format!("{p}.{gguf}"), &hf(i, name), 0.0)?;
    }
    Ok(())
}
