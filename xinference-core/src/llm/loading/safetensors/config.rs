//! Typed reads of a safetensors model's `config.json`: candle's configuration of each family,
//! and the tensor shapes it implies, checked before loading.

use crate::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_nn::Activation;
use candle_transformers::models::{llama, qwen2, qwen3};
use serde_json::Value;

/// Typed reads of `config.json` with 400s that name the field.
pub(super) struct Cfg<'a>(pub(super) &'a Value);

impl Cfg<'_> {
    pub(super) fn invalid(&self, key: &str, want: &str) -> Error {
        Error::bad_request(format!(
            "config.json: `{key}` must be {want} (found {})",
            self.0.get(key).unwrap_or(&Value::Null)
        ))
    }

    pub(super) fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.invalid(key, "a non-negative integer"))
    }

    pub(super) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.invalid(key, "a non-negative integer")),
        }
    }

    pub(super) fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.invalid(key, "a number")),
        }
    }

    pub(super) fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.invalid(key, "true or false")),
        }
    }

    pub(super) fn activation(&self) -> Result<Activation> {
        let v = self
            .0
            .get("hidden_act")
            .cloned()
            .unwrap_or(Value::from("silu"));
        serde_json::from_value(v).map_err(|_| self.invalid("hidden_act", "a known activation"))
    }

    /// Heads: `(num_attention_heads, num_key_value_heads)`, checked against each other and
    /// against `hidden_size` when the family derives its head size from it.
    pub(super) fn heads(
        &self,
        hidden: usize,
        head_dim_from_hidden: bool,
    ) -> Result<(usize, usize)> {
        let heads = self.usize("num_attention_heads")?;
        let kv = self.opt_usize("num_key_value_heads")?.unwrap_or(heads);
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            return Err(Error::bad_request(format!(
                "config.json: num_attention_heads ({heads}) must be a positive multiple of \
                 num_key_value_heads ({kv})"
            )));
        }
        if head_dim_from_hidden {
            if !hidden.is_multiple_of(heads) {
                return Err(Error::bad_request(format!(
                    "config.json: hidden_size ({hidden}) is not a multiple of \
                     num_attention_heads ({heads})"
                )));
            }
            if let Some(d) = self.opt_usize("head_dim")? {
                if d != hidden / heads {
                    return Err(Error::bad_request(format!(
                        "config.json: head_dim {d} differs from hidden_size / num_attention_heads \
                         ({}); this build cannot run such a model as safetensors yet",
                        hidden / heads
                    )));
                }
            }
        }
        Ok((heads, kv))
    }

    /// RoPE settings: `rope_theta` (top level, or inside Transformers 5's `rope_parameters`)
    /// and the scaling block (`rope_scaling`, or `rope_parameters` when its type is not
    /// `default`).
    pub(super) fn rope(&self, default_theta: f64) -> Result<(f64, Option<Value>)> {
        let params = self.0.get("rope_parameters").filter(|v| v.is_object());
        let theta = match (self.0.get("rope_theta"), params) {
            (Some(v), _) if !v.is_null() => v
                .as_f64()
                .ok_or_else(|| self.invalid("rope_theta", "a number"))?,
            (_, Some(p)) => p
                .get("rope_theta")
                .and_then(Value::as_f64)
                .unwrap_or(default_theta),
            _ => default_theta,
        };
        let scaling = self
            .0
            .get("rope_scaling")
            .filter(|v| v.is_object())
            .or(params)
            .filter(|s| {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str);
                !matches!(kind, None | Some("default"))
            })
            .cloned();
        Ok((theta, scaling))
    }

    pub(super) fn no_rope_scaling(&self, scaling: Option<Value>, family: &str) -> Result<()> {
        match scaling {
            None => Ok(()),
            Some(s) => Err(Error::bad_request(format!(
                "config.json: RoPE scaling {s} is not supported for {family} as safetensors yet"
            ))),
        }
    }
}

pub(super) fn llama_config(cfg: &Cfg, has_lm_head: bool) -> Result<llama::Config> {
    let hidden = cfg.usize("hidden_size")?;
    let (heads, kv) = cfg.heads(hidden, true)?;
    for key in ["attention_bias", "mlp_bias"] {
        if cfg.bool_or(key, false)? {
            return Err(Error::bad_request(format!(
                "config.json: `{key}: true` is not supported for llama as safetensors yet"
            )));
        }
    }
    if cfg.activation()? != Activation::Silu {
        return Err(cfg.invalid("hidden_act", "silu for llama"));
    }
    let (theta, scaling) = cfg.rope(10_000.0)?;
    let rope_scaling = match scaling {
        None => None,
        Some(s)
            if s.get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str)
                == Some("llama3") =>
        {
            let num = |k: &str| {
                s.get(k).and_then(Value::as_f64).ok_or_else(|| {
                    Error::bad_request(format!("config.json: llama3 RoPE scaling needs `{k}`"))
                })
            };
            Some(llama::Llama3RopeConfig {
                factor: num("factor")? as f32,
                low_freq_factor: num("low_freq_factor")? as f32,
                high_freq_factor: num("high_freq_factor")? as f32,
                original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
                rope_type: llama::Llama3RopeType::Llama3,
            })
        }
        s => {
            cfg.no_rope_scaling(s, "llama")?;
            None
        }
    };
    Ok(llama::Config {
        hidden_size: hidden,
        intermediate_size: cfg.usize("intermediate_size")?,
        vocab_size: cfg.usize("vocab_size")?,
        num_hidden_layers: cfg.usize("num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        use_flash_attn: false,
        rms_norm_eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
        rope_theta: theta as f32,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling,
        max_position_embeddings: cfg.usize("max_position_embeddings")?,
        // A checkpoint without lm_head.weight can only mean tied embeddings.
        tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)? || !has_lm_head,
    })
}

pub(super) fn qwen2_config(cfg: &Cfg) -> Result<qwen2::Config> {
    let hidden = cfg.usize("hidden_size")?;
    let (heads, kv) = cfg.heads(hidden, true)?;
    let (theta, scaling) = cfg.rope(10_000.0)?;
    cfg.no_rope_scaling(scaling, "qwen2")?;
    let layers = cfg.usize("num_hidden_layers")?;
    let max_position = cfg.usize("max_position_embeddings")?;
    let max_window_layers = cfg.opt_usize("max_window_layers")?.unwrap_or(layers);
    // Transformers slides the window only in layers from `max_window_layers` on; candle would
    // slide it in every layer, so only a model whose layers all attend fully can run.
    if cfg.bool_or("use_sliding_window", false)? && max_window_layers < layers {
        return Err(Error::bad_request(
            "config.json: sliding-window attention (use_sliding_window) is not supported for \
             qwen2 as safetensors yet",
        ));
    }
    Ok(qwen2::Config {
        vocab_size: cfg.usize("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: cfg.usize("intermediate_size")?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        max_position_embeddings: max_position,
        // A window as long as the context never hides anything.
        sliding_window: max_position,
        max_window_layers,
        tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)?,
        rope_theta: theta,
        rms_norm_eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
        use_sliding_window: false,
        hidden_act: cfg.activation()?,
    })
}

pub(super) fn qwen3_config(cfg: &Cfg, has_lm_head: bool) -> Result<qwen3::Config> {
    let hidden = cfg.usize("hidden_size")?;
    let (heads, kv) = cfg.heads(hidden, false)?;
    let head_dim = match cfg.opt_usize("head_dim")? {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => return Err(cfg.invalid("head_dim", "given when hidden_size / heads is not whole")),
    };
    let (theta, scaling) = cfg.rope(10_000.0)?;
    cfg.no_rope_scaling(scaling, "qwen3")?;
    if cfg.bool_or("use_sliding_window", false)? {
        return Err(Error::bad_request(
            "config.json: sliding-window attention (use_sliding_window) is not supported for \
             qwen3 as safetensors yet",
        ));
    }
    let layers = cfg.usize("num_hidden_layers")?;
    Ok(qwen3::Config {
        vocab_size: cfg.usize("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: cfg.usize("intermediate_size")?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        head_dim,
        attention_bias: cfg.bool_or("attention_bias", false)?,
        num_key_value_heads: kv,
        max_position_embeddings: cfg.usize("max_position_embeddings")?,
        sliding_window: None,
        max_window_layers: cfg.opt_usize("max_window_layers")?.unwrap_or(layers),
        // A checkpoint without lm_head.weight can only mean tied embeddings.
        tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)? || !has_lm_head,
        rope_theta: theta,
        rms_norm_eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
        use_sliding_window: false,
        hidden_act: cfg.activation()?,
    })
}

/// The tensor shapes a configuration implies.
pub(super) struct Dims {
    pub(super) vocab: usize,
    pub(super) hidden: usize,
    pub(super) intermediate: usize,
    pub(super) layers: usize,
    /// Rows of q_proj: heads x head size.
    pub(super) q: usize,
    /// Rows of k_proj and v_proj: key-value heads x head size.
    pub(super) kv: usize,
    pub(super) qkv_bias: bool,
    pub(super) o_bias: bool,
    /// The head size, for families with per-head q/k RMS norms (Qwen3).
    pub(super) qk_norm: Option<usize>,
    pub(super) lm_head: bool,
}

/// Checks from the safetensors headers (nothing is read yet) that every tensor the
/// configuration implies is there with its shape, so that a truncated or mismatched checkpoint
/// is a clear 400 (candle's Llama loader would panic on it).
pub(super) fn check_tensors(st: &MmapedSafetensors, d: &Dims) -> Result<()> {
    let mut want: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![d.vocab, d.hidden]),
        ("model.norm.weight".into(), vec![d.hidden]),
    ];
    if d.lm_head {
        want.push(("lm_head.weight".into(), vec![d.vocab, d.hidden]));
    }
    for i in 0..d.layers {
        let mut layer: Vec<(&str, Vec<usize>)> = vec![
            ("self_attn.q_proj.weight", vec![d.q, d.hidden]),
            ("self_attn.k_proj.weight", vec![d.kv, d.hidden]),
            ("self_attn.v_proj.weight", vec![d.kv, d.hidden]),
            ("self_attn.o_proj.weight", vec![d.hidden, d.q]),
            ("mlp.gate_proj.weight", vec![d.intermediate, d.hidden]),
            ("mlp.up_proj.weight", vec![d.intermediate, d.hidden]),
            ("mlp.down_proj.weight", vec![d.hidden, d.intermediate]),
            ("input_layernorm.weight", vec![d.hidden]),
            ("post_attention_layernorm.weight", vec![d.hidden]),
        ];
        if d.qkv_bias {
            layer.extend([
                ("self_attn.q_proj.bias", vec![d.q]),
                ("self_attn.k_proj.bias", vec![d.kv]),
                ("self_attn.v_proj.bias", vec![d.kv]),
            ]);
        }
        if d.o_bias {
            layer.push(("self_attn.o_proj.bias", vec![d.hidden]));
        }
        if let Some(head) = d.qk_norm {
            layer.extend([
                ("self_attn.q_norm.weight", vec![head]),
                ("self_attn.k_norm.weight", vec![head]),
            ]);
        }
        want.extend(
            layer
                .into_iter()
                .map(|(n, shape)| (format!("model.layers.{i}.{n}"), shape)),
        );
    }
    for (name, shape) in &want {
        let view = st.get(name).map_err(|_| {
            Error::bad_request(format!(
                "the safetensors weights have no tensor `{name}` (config.json asks for {} layers)",
                d.layers
            ))
        })?;
        if view.shape() != shape.as_slice() {
            return Err(Error::bad_request(format!(
                "the weights do not match its config.json: tensor `{name}` has shape {:?}, \
                 config.json implies {shape:?}",
                view.shape()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rope_settings_in_both_config_layouts() {
        let old =
            json!({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}});
        let (theta, scaling) = Cfg(&old).rope(1.0).unwrap();
        assert_eq!(theta, 500000.0);
        assert_eq!(scaling.unwrap()["factor"], 8.0);
        let new = json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}});
        assert_eq!(Cfg(&new).rope(1.0).unwrap(), (1e6, None));
        let none = json!({"rope_scaling": null});
        assert_eq!(Cfg(&none).rope(10.0).unwrap(), (10.0, None));
    }
}
