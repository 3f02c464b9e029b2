//! Each family's Hugging Face layout mapped onto the GGUF view our decoder reads, as llama.cpp's
//! `convert_hf_to_gguf.py` maps it: `config.json` keys to `{arch}.*` metadata, tensor names to
//! llama.cpp's, and what the converter changes (the q/k row permutation for interleaved rotary
//! in the Llama layout, Gemma's `1 +` in its norms, experts stacked per block). Settings the
//! decoder's family files fix (Gemma 3's sliding-window pattern, SmolLM3's NoPE step, routing
//! rules) are checked against `config.json`, and a model that differs is a clear 400.

use super::config::Cfg;
use super::gguf_view::View;
use crate::{Error, Result};
use serde_json::Value;

#[path = "families_moe.rs"]
mod moe;
use moe::{glm4moe, gpt_oss, qwen3moe};
#[path = "families_hybrid.rs"]
mod hybrid;
use hybrid::{qwen35, qwen35moe};
#[path = "families_gemma4.rs"]
mod gemma4;
use gemma4::gemma4;

/// The `model_type`s this build loads from safetensors, with the GGUF architecture each runs as.
pub(super) const FAMILIES: &[(&str, &str)] = &[
    ("llama", "llama"),
    ("mistral", "llama"),
    ("qwen2", "qwen2"),
    ("qwen3", "qwen3"),
    ("gemma3_text", "gemma3"),
    ("gemma4_text", "gemma4"),
    ("gemma4_unified_text", "gemma4"),
    ("smollm3", "smollm3"),
    ("phi3", "phi3"),
    ("glm4", "glm4"),
    ("qwen3_moe", "qwen3moe"),
    ("glm4_moe", "glm4moe"),
    ("gpt_oss", "gpt-oss"),
    ("qwen3_5_text", "qwen35"),
    ("qwen3_5_moe_text", "qwen35moe"),
];

/// The attention shape of `config.json`, also written as the view's metadata.
struct Common {
    layers: usize,
    hidden: usize,
    heads: usize,
    kv: usize,
    head_dim: usize,
}

/// The tensor of layer `i`: `model.layers.{i}.{name}`.
fn hf(i: usize, name: &str) -> String {
    format!("model.layers.{i}.{name}")
}

/// Checks that the checkpoint's `name` has the shape `config.json` implies.
fn expect(v: &View, name: &str, shape: &[usize]) -> Result<()> {
    let s = v.stored(name)?;
    if s.shape != shape {
        return Err(Error::bad_request(format!(
            "the weights do not match its config.json: tensor `{name}` has shape {:?}, \
             config.json implies {shape:?}",
            s.shape
        )));
    }
    Ok(())
}

/// The 400 for a setting the decoder does not run.
fn unsupported(what: &str, family: &str) -> Error {
    Error::bad_request(format!(
        "config.json: {what} is not supported for {family} as safetensors yet"
    ))
}

/// `partial_rotary_factor` (top level or in `rope_parameters`), else `default`.
fn partial_rotary(cfg: &Cfg, default: f64) -> Result<f64> {
    if let Some(p) = cfg
        .0
        .get("rope_parameters")
        .and_then(|p| p.get("partial_rotary_factor"))
        .and_then(Value::as_f64)
    {
        return Ok(p);
    }
    cfg.f64_or("partial_rotary_factor", default)
}

/// The shape, the token table, the final norm (plus `norm_shift`) and the output layer (unless
/// tied): what every family has. `rope_default` is the family's default `rope_theta`.
fn common(
    v: &mut View,
    cfg: &Cfg,
    arch: &str,
    norm_shift: f32,
    rope_default: f64,
) -> Result<Common> {
    let hidden = cfg.usize("hidden_size")?;
    let (heads, kv) = cfg.heads(hidden, false)?;
    let head_dim = match cfg.opt_usize("head_dim")? {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => return Err(cfg.invalid("head_dim", "given when hidden_size / heads is not whole")),
    };
    let layers = cfg.usize("num_hidden_layers")?;
    let vocab = cfg.usize("vocab_size")?;
    let m = |key: &str| format!("{arch}.{key}");
    v.u32(&m("block_count"), layers);
    v.u32(&m("context_length"), cfg.usize("max_position_embeddings")?);
    v.u32(&m("embedding_length"), hidden);
    v.u32(
        &m("feed_forward_length"),
        cfg.opt_usize("intermediate_size")?.unwrap_or(0),
    );
    v.u32(&m("attention.head_count"), heads);
    v.u32(&m("attention.head_count_kv"), kv);
    v.u32(&m("attention.key_length"), head_dim);
    v.u32(&m("attention.value_length"), head_dim);
    v.f32(
        &m("attention.layer_norm_rms_epsilon"),
        cfg.f64_or("rms_norm_eps", 1e-6)?,
    );
    let (theta, _) = cfg.rope(rope_default)?;
    v.f32(&m("rope.freq_base"), theta);
    expect(v, "model.embed_tokens.weight", &[vocab, hidden])?;
    v.tensor("token_embd.weight", "model.embed_tokens.weight")?;
    v.norm("output_norm.weight", "model.norm.weight", norm_shift)?;
    // A checkpoint without lm_head.weight can only mean tied embeddings.
    if v.has("lm_head.weight") && !cfg.bool_or("tie_word_embeddings", false)? {
        expect(v, "lm_head.weight", &[vocab, hidden])?;
        v.tensor("output.weight", "lm_head.weight")?;
    }
    Ok(Common {
        layers,
        hidden,
        heads,
        kv,
        head_dim,
    })
}

/// Layer `i`'s q/k/v/o projections (shapes checked; biases where the checkpoint has them;
/// q and k rows permuted for interleaved rotary when `permute`).
fn attention(v: &mut View, c: &Common, i: usize, permute: bool) -> Result<()> {
    let (q, kv) = (c.heads * c.head_dim, c.kv * c.head_dim);
    for (proj, rows, cols) in [
        ("q_proj", q, c.hidden),
        ("k_proj", kv, c.hidden),
        ("v_proj", kv, c.hidden),
        ("o_proj", c.hidden, q),
    ] {
        expect(
            v,
            &hf(i, &format!("self_attn.{proj}.weight")),
            &[rows, cols],
        )?;
    }
    let p = format!("blk.{i}");
    for (gguf, proj, heads) in [
        ("attn_q", "q_proj", Some(c.heads)),
        ("attn_k", "k_proj", Some(c.kv)),
        ("attn_v", "v_proj", None),
        ("attn_output", "o_proj", None),
    ] {
        for part in ["weight", "bias"] {
            let name = hf(i, &format!("self_attn.{proj}.{part}"));
            if part == "bias" && !v.has(&name) {
                continue;
            }
            let target = format!("{p}.{gguf}.{part}");
            match heads {
                Some(h) if permute => v.permuted(&target, &name, h)?,
                _ => v.tensor(&target, &name)?,
            }
        }
    }
    Ok(())
}

/// Layer `i`'s gated feed-forward of `intermediate` rows under `mlp.` (`{gate,up,down}_proj`).
fn feed_forward(v: &mut View, c: &Common, i: usize, intermediate: usize) -> Result<()> {
    let p = format!("blk.{i}");
    for (gguf, proj, shape) in [
        ("ffn_gate", "gate_proj", [intermediate, c.hidden]),
        ("ffn_up", "up_proj", [intermediate, c.hidden]),
        ("ffn_down", "down_proj", [c.hidden, intermediate]),
    ] {
        let name = hf(i, &format!("mlp.{proj}.weight"));
        expect(v, &name, &shape)?;
        v.tensor(&format!("{p}.{gguf}.weight"), &name)?;
    }
    Ok(())
}

/// The GGUF view of a checkpoint of family `model_type` (one of [`FAMILIES`]).
pub(super) fn convert(v: &mut View, cfg: &Cfg, model_type: &str) -> Result<()> {
    match model_type {
        "llama" | "mistral" => llama(v, cfg, model_type),
        "qwen2" => qwen2(v, cfg),
        "qwen3" => qwen3(v, cfg),
        "gemma3_text" => gemma3(v, cfg),
        "gemma4_text" | "gemma4_unified_text" => gemma4(v, cfg),
        "smollm3" => smollm3(v, cfg),
        "phi3" => phi3(v, cfg),
        "glm4" => glm4(v, cfg),
        "qwen3_moe" => qwen3moe(v, cfg),
        "glm4_moe" => glm4moe(v, cfg),
        "gpt_oss" => gpt_oss(v, cfg),
        "qwen3_5_text" => qwen35(v, cfg),
        "qwen3_5_moe_text" => qwen35moe(v, cfg),
        other => Err(Error::bad_request(format!(
            "model_type {other} cannot be run as safetensors"
        ))),
    }
}

/// The plain pre-norm block: attention, SwiGLU feed-forward, their two norms.
fn plain_layers(v: &mut View, c: &Common, cfg: &Cfg, permute: bool) -> Result<()> {
    let intermediate = cfg.usize("intermediate_size")?;
    for i in 0..c.layers {
        attention(v, c, i, permute)?;
        feed_forward(v, c, i, intermediate)?;
        v.norm(
            &format!("blk.{i}.attn_norm.weight"),
            &hf(i, "input_layernorm.weight"),
            0.0,
        )?;
        v.norm(
            &format!("blk.{i}.ffn_norm.weight"),
            &hf(i, "post_attention_layernorm.weight"),
            0.0,
        )?;
    }
    Ok(())
}

/// `layer_types` of `config.json` as one flag per layer: whether it is `flagged` (the other
/// kind is `full_attention`); `None` when the config has no `layer_types`.
fn layer_flags(cfg: &Cfg, layers: usize, flagged: &str, family: &str) -> Result<Option<Vec<bool>>> {
    let Some(types) = cfg.0.get("layer_types").and_then(Value::as_array) else {
        return Ok(None);
    };
    if types.len() != layers {
        return Err(cfg.invalid("layer_types", "one entry per layer"));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            Some(kind) if kind == flagged => Ok(true),
            Some("full_attention") => Ok(false),
            _ => Err(unsupported(&format!("layer type {t}"), family)),
        })
        .collect::<Result<Vec<bool>>>()
        .map(Some)
}

/// Refuses a SiLU-gated family configured with another activation.
fn silu_only(cfg: &Cfg, family: &str) -> Result<()> {
    match cfg.0.get("hidden_act").and_then(Value::as_str) {
        None | Some("silu" | "swish") => Ok(()),
        Some(other) => Err(unsupported(&format!("hidden_act `{other}`"), family)),
    }
}

/// Refuses a sliding window that hides positions within the context (the family's decoder
/// attends to all of them).
fn no_sliding_window(cfg: &Cfg, family: &str) -> Result<()> {
    let context = cfg.usize("max_position_embeddings")?;
    let layers = cfg.usize("num_hidden_layers")?;
    let window = cfg.opt_usize("sliding_window")?;
    let from = cfg.opt_usize("max_window_layers")?.unwrap_or(0);
    let used = match cfg.0.get("use_sliding_window") {
        Some(Value::Bool(b)) => *b && from < layers,
        _ => true,
    };
    match window {
        Some(w) if used && w < context => Err(unsupported(
            "sliding-window attention (use_sliding_window)",
            family,
        )),
        _ => Ok(()),
    }
}

/// Llama, Mistral (and SmolLM2, Llama 3.x, DeepSeek-R1-Distill-Llama): q/k permuted for the
/// interleaved rotary; Llama 3's rotary scaling as the frequency factors `rope_freqs.weight`.
fn llama(v: &mut View, cfg: &Cfg, family: &str) -> Result<()> {
    for key in ["attention_bias", "mlp_bias"] {
        if cfg.bool_or(key, false)? {
            return Err(unsupported(&format!("`{key}: true`"), family));
        }
    }
    silu_only(cfg, family)?;
    no_sliding_window(cfg, family)?;
    let c = common(v, cfg, "llama", 0.0, 10_000.0)?;
    let (theta, scaling) = cfg.rope(10_000.0)?;
    if let Some(s) = scaling {
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Value::as_str);
        if kind != Some("llama3") {
            return cfg.no_rope_scaling(Some(s), family);
        }
        let num = |k: &str, default: f64| s.get(k).and_then(Value::as_f64).unwrap_or(default);
        let factors = llama3_factors(
            c.head_dim,
            theta,
            num("factor", 8.0),
            num("low_freq_factor", 1.0),
            num("high_freq_factor", 4.0),
            num("original_max_position_embeddings", 8192.0),
        );
        v.owned_f32("rope_freqs.weight", vec![factors.len()], &factors);
    }
    plain_layers(v, &c, cfg, true)
}

/// Llama 3's per-frequency divisors (convert_hf_to_gguf's `rope_freqs`).
fn llama3_factors(dim: usize, base: f64, factor: f64, low: f64, high: f64, old: f64) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    (0..dim)
        .step_by(2)
        .map(|i| {
            let freq = 1.0 / base.powf(i as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// Qwen2 / Qwen2.5 (DeepSeek-R1-Distill-Qwen, QwQ): q/k/v biases, NEOX rotary.
fn qwen2(v: &mut View, cfg: &Cfg) -> Result<()> {
    silu_only(cfg, "qwen2")?;
    no_sliding_window(cfg, "qwen2")?;
    let (_, scaling) = cfg.rope(10_000.0)?;
    cfg.no_rope_scaling(scaling, "qwen2")?;
    let c = common(v, cfg, "qwen2", 0.0, 10_000.0)?;
    for i in 0..c.layers {
        for proj in ["q_proj", "k_proj", "v_proj"] {
            let rows = if proj == "q_proj" { c.heads } else { c.kv } * c.head_dim;
            expect(v, &hf(i, &format!("self_attn.{proj}.bias")), &[rows])?;
        }
    }
    plain_layers(v, &c, cfg, false)
}

/// Qwen3 layer norms of each query and key head.
fn qk_norms(v: &mut View, i: usize, shift: f32) -> Result<()> {
    v.norm(
        &format!("blk.{i}.attn_q_norm.weight"),
        &hf(i, "self_attn.q_norm.weight"),
        shift,
    )?;
    v.norm(
        &format!("blk.{i}.attn_k_norm.weight"),
        &hf(i, "self_attn.k_norm.weight"),
        shift,
    )
}

/// Qwen3: per-head q/k norms, NEOX rotary, no biases.
fn qwen3(v: &mut View, cfg: &Cfg) -> Result<()> {
    silu_only(cfg, "qwen3")?;
    no_sliding_window(cfg, "qwen3")?;
    if cfg.bool_or("attention_bias", false)? {
        return Err(unsupported("`attention_bias: true`", "qwen3"));
    }
    let (_, scaling) = cfg.rope(1_000_000.0)?;
    cfg.no_rope_scaling(scaling, "qwen3")?;
    let c = common(v, cfg, "qwen3", 0.0, 1_000_000.0)?;
    plain_layers(v, &c, cfg, false)?;
    for i in 0..c.layers {
        expect(v, &hf(i, "self_attn.q_norm.weight"), &[c.head_dim])?;
        qk_norms(v, i, 0.0)?;
    }
    Ok(())
}

/// Gemma 3 (text): norms stored as `w` for `1 + w`, four norms per block, q/k norms, sliding
/// windows on five layers of six, the local and global rotary bases.
fn gemma3(v: &mut View, cfg: &Cfg) -> Result<()> {
    const FAMILY: &str = "gemma3";
    match cfg.0.get("hidden_activation").and_then(Value::as_str) {
        None | Some("gelu_pytorch_tanh") => {}
        Some(other) => return Err(unsupported(&format!("hidden_activation `{other}`"), FAMILY)),
    }
    if cfg
        .0
        .get("attn_logit_softcapping")
        .is_some_and(|v| !v.is_null())
    {
        return Err(unsupported("attn_logit_softcapping", FAMILY));
    }
    let c = common(v, cfg, FAMILY, 1.0, 1_000_000.0)?;
    // The decoder's pattern: every sixth layer global, the others sliding.
    if let Some(types) = cfg.0.get("layer_types").and_then(Value::as_array) {
        for (i, t) in types.iter().enumerate() {
            let sliding = (i + 1) % 6 != 0;
            let want = if sliding {
                "sliding_attention"
            } else {
                "full_attention"
            };
            if t.as_str() != Some(want) {
                return Err(unsupported(
                    &format!("layer_types other than five sliding layers then one full ({i}: {t})"),
                    FAMILY,
                ));
            }
        }
    }
    let scalar = cfg
        .opt_usize("query_pre_attn_scalar")?
        .unwrap_or(c.head_dim);
    let expected = if c.layers == 62 {
        c.hidden / c.heads
    } else {
        c.head_dim
    };
    if scalar != expected {
        return Err(unsupported(
            &format!("query_pre_attn_scalar {scalar}"),
            FAMILY,
        ));
    }
    if let Some(w) = cfg.opt_usize("sliding_window")? {
        v.u32("gemma3.attention.sliding_window", w);
    }
    // Rotary: Transformers 5's `rope_parameters` per layer type, or the older flat keys.
    let params = cfg.0.get("rope_parameters");
    let (full, local) = match params.and_then(|p| p.get("full_attention")) {
        Some(full) => (
            Some(full.clone()),
            params
                .and_then(|p| p.get("sliding_attention"))
                .and_then(|s| s.get("rope_theta"))
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
        ),
        None => (
            cfg.rope(1_000_000.0)?.1,
            cfg.f64_or("rope_local_base_freq", 10_000.0)?,
        ),
    };
    if let Some(full) = full {
        if let Some(theta) = full.get("rope_theta").and_then(Value::as_f64) {
            v.f32("gemma3.rope.freq_base", theta);
        }
        match full
            .get("rope_type")
            .or_else(|| full.get("type"))
            .and_then(Value::as_str)
        {
            None | Some("default") => {}
            Some("linear") => {
                let factor = full.get("factor").and_then(Value::as_f64).unwrap_or(1.0);
                v.f32("gemma3.rope.scaling.factor", factor);
            }
            Some(other) => return Err(unsupported(&format!("RoPE scaling `{other}`"), FAMILY)),
        }
    }
    v.f32("gemma3.rope.freq_base_swa", local);
    if let Some(cap) = cfg.0.get("final_logit_softcapping").and_then(Value::as_f64) {
        v.f32("gemma3.final_logit_softcapping", cap);
    }
    let intermediate = cfg.usize("intermediate_size")?;
    for i in 0..c.layers {
        attention(v, &c, i, false)?;
        feed_forward(v, &c, i, intermediate)?;
        qk_norms(v, i, 1.0)?;
        for (gguf, name) in [
            ("attn_norm", "input_layernorm"),
            ("post_attention_norm", "post_attention_layernorm"),
            ("ffn_norm", "pre_feedforward_layernorm"),
            ("post_ffw_norm", "post_feedforward_layernorm"),
        ] {
            v.norm(
                &format!("blk.{i}.{gguf}.weight"),
                &hf(i, &format!("{name}.weight")),
                1.0,
            )?;
        }
    }
    Ok(())
}

/// SmolLM3: the Llama layout (q/k permuted) with every fourth layer without rotary.
fn smollm3(v: &mut View, cfg: &Cfg) -> Result<()> {
    silu_only(cfg, "smollm3")?;
    no_sliding_window(cfg, "smollm3")?;
    let layers = cfg.usize("num_hidden_layers")?;
    if let Some(flags) = cfg.0.get("no_rope_layers").and_then(Value::as_array) {
        for (i, f) in flags.iter().enumerate().take(layers) {
            let rope = (i + 1) % 4 != 0;
            if f.as_u64() != Some(u64::from(rope)) {
                return Err(unsupported(
                    "no_rope_layers other than every fourth layer",
                    "smollm3",
                ));
            }
        }
    }
    let (_, scaling) = cfg.rope(5_000_000.0)?;
    cfg.no_rope_scaling(scaling, "smollm3")?;
    let c = common(v, cfg, "smollm3", 0.0, 5_000_000.0)?;
    plain_layers(v, &c, cfg, true)
}

/// Phi-3: fused `qkv_proj` and `gate_up_proj` (as llama.cpp stores them), NEOX rotary over
/// `partial_rotary_factor` of each head.
fn phi3(v: &mut View, cfg: &Cfg) -> Result<()> {
    silu_only(cfg, "phi3")?;
    let (_, scaling) = cfg.rope(10_000.0)?;
    cfg.no_rope_scaling(scaling, "phi3")?;
    let c = common(v, cfg, "phi3", 0.0, 10_000.0)?;
    let rotated = (c.head_dim as f64 * partial_rotary(cfg, 1.0)?) as usize;
    v.u32("phi3.rope.dimension_count", rotated);
    let intermediate = cfg.usize("intermediate_size")?;
    let (q, kv) = (c.heads * c.head_dim, c.kv * c.head_dim);
    for i in 0..c.layers {
        let p = format!("blk.{i}");
        for (gguf, name, shape) in [
            ("attn_qkv", "self_attn.qkv_proj", [q + 2 * kv, c.hidden]),
            ("attn_output", "self_attn.o_proj", [c.hidden, q]),
            ("ffn_up", "mlp.gate_up_proj", [2 * intermediate, c.hidden]),
            ("ffn_down", "mlp.down_proj", [c.hidden, intermediate]),
        ] {
            let name = hf(i, &format!("{name}.weight"));
            expect(v, &name, &shape)?;
            v.tensor(&format!("{p}.{gguf}.weight"), &name)?;
        }
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

/// GLM-4 (0414): q/k/v biases, interleaved rotary over half of each head, a fused
/// `gate_up_proj`, norms after attention and after the feed-forward.
fn glm4(v: &mut View, cfg: &Cfg) -> Result<()> {
    silu_only(cfg, "glm4")?;
    let (_, scaling) = cfg.rope(10_000.0)?;
    cfg.no_rope_scaling(scaling, "glm4")?;
    let c = common(v, cfg, "glm4", 0.0, 10_000.0)?;
    let rotated = (c.head_dim as f64 * partial_rotary(cfg, 0.5)?) as usize;
    v.u32("glm4.rope.dimension_count", rotated);
    let intermediate = cfg.usize("intermediate_size")?;
    for i in 0..c.layers {
        let p = format!("blk.{i}");
        attention(v, &c, i, false)?;
        let up = hf(i, "mlp.gate_up_proj.weight");
        expect(v, &up, &[2 * intermediate, c.hidden])?;
        v.tensor(&format!("{p}.ffn_up.weight"), &up)?;
        let down = hf(i, "mlp.down_proj.weight");
        expect(v, &down, &[c.hidden, intermediate])?;
        v.tensor(&format!("{p}.ffn_down.weight"), &down)?;
        for (gguf, name) in [
            ("attn_norm", "input_layernorm"),
            ("post_attention_norm", "post_self_attn_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
            ("post_ffw_norm", "post_mlp_layernorm"),
        ] {
            v.norm(
                &format!("{p}.{gguf}.weight"),
                &hf(i, &format!("{name}.weight")),
                0.0,
            )?;
        }
    }
    Ok(())
}
