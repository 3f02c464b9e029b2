//! The UNet and VAE settings of a diffusers folder, built from their `config.json` (never from
//! presets), with a clear 400 for what the candle blocks cannot run.

use crate::{Error, Result};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use serde_json::Value;

pub(crate) use crate::files::read_json;

fn usize_of(v: &Value, key: &str, default: usize) -> Result<usize> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| Error::bad_request(format!("config key {key} must be an integer"))),
    }
}

fn f64_of(v: &Value, key: &str, default: f64) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(default)
}

fn bool_of(v: &Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// An integer or one integer per block.
fn per_block(v: &Value, key: &str, blocks: usize, default: usize) -> Result<Vec<usize>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(vec![default; blocks]),
        Some(Value::Number(n)) => Ok(vec![n.as_u64().unwrap_or(default as u64) as usize; blocks]),
        Some(Value::Array(items)) if items.len() == blocks => items
            .iter()
            .map(|i| {
                i.as_u64().map(|x| x as usize).ok_or_else(|| {
                    Error::bad_request(format!(
                        "{key} must hold integers (nested lists are not supported)"
                    ))
                })
            })
            .collect(),
        Some(other) => Err(Error::bad_request(format!(
            "{key} must be an integer or a list of {blocks}, not {other}"
        ))),
    }
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .ok_or_else(|| Error::bad_request(format!("unet config has no {key} list")))
}

/// The UNet's settings.
#[derive(Debug, Clone)]
pub struct UNetSettings {
    /// candle's UNet config.
    pub config: UNet2DConditionModelConfig,
    /// Latent channels in.
    pub in_channels: usize,
    /// Channels out.
    pub out_channels: usize,
    /// Latent side the model was trained at.
    pub sample_size: usize,
    /// SDXL's `text_time` added conditioning, when the config asks for it.
    pub text_time: Option<TextTimeSettings>,
}

/// SDXL's `addition_embed_type: "text_time"`: the pooled text embedding and the sinusoidal
/// embeddings of the time ids, concatenated, through `add_embedding` into the time embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTimeSettings {
    /// `addition_time_embed_dim`: sinusoidal channels per time id.
    pub time_embed_dim: usize,
    /// `projection_class_embeddings_input_dim`: pooled text width + 6 x `time_embed_dim`.
    pub input_dim: usize,
}

impl UNetSettings {
    /// From `unet/config.json`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let text_time = text_time_settings(v)?;
        reject_unsupported_features(v)?;
        let channels = block_out_channels(v, "unet")?;
        let blocks = unet_blocks(v, &channels)?;
        let cross_attention_dim = cross_attention_dim(v)?;
        let groups = usize_of(v, "norm_num_groups", 32)?;
        if groups == 0 || channels.iter().any(|c| c % groups != 0) {
            return Err(Error::bad_request(format!(
                "unet config: norm_num_groups {groups} does not divide every block's channels"
            )));
        }
        let config = UNet2DConditionModelConfig {
            center_input_sample: bool_of(v, "center_input_sample", false),
            flip_sin_to_cos: bool_of(v, "flip_sin_to_cos", true),
            freq_shift: f64_of(v, "freq_shift", 0.0),
            blocks,
            layers_per_block: usize_of(v, "layers_per_block", 2)?,
            downsample_padding: usize_of(v, "downsample_padding", 1)?,
            mid_block_scale_factor: f64_of(v, "mid_block_scale_factor", 1.0),
            norm_num_groups: groups,
            norm_eps: f64_of(v, "norm_eps", 1e-5),
            cross_attention_dim,
            sliced_attention_size: None,
            use_linear_projection: bool_of(v, "use_linear_projection", false),
        };
        if bool_of(v, "class_embeddings_concat", false) || bool_of(v, "resnet_skip_time_act", false)
        {
            return Err(unsupported(
                "class_embeddings_concat or resnet_skip_time_act",
            ));
        }
        for key in ["conv_in_kernel", "conv_out_kernel"] {
            if usize_of(v, key, 3)? != 3 {
                return Err(unsupported(&format!("{key} other than 3")));
            }
        }
        Ok(UNetSettings {
            config,
            text_time,
            in_channels: usize_of(v, "in_channels", 4)?,
            out_channels: usize_of(v, "out_channels", 4)?,
            sample_size: usize_of(v, "sample_size", 64)?,
        })
    }
}

/// The 400 for a UNet feature the candle blocks cannot run.
fn unsupported(what: &str) -> Error {
    Error::bad_request(format!(
        "this UNet uses {what}, which this build does not support yet"
    ))
}

/// SDXL's `text_time` added conditioning, when `addition_embed_type` asks for it (any other
/// added conditioning is a 400).
fn text_time_settings(v: &Value) -> Result<Option<TextTimeSettings>> {
    match v.get("addition_embed_type") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if t == "text_time" => Ok(Some(TextTimeSettings {
            time_embed_dim: usize_of(v, "addition_time_embed_dim", 256)?,
            input_dim: usize_of(v, "projection_class_embeddings_input_dim", 0)?,
        })),
        Some(other) => Err(unsupported(&format!(
            "added conditioning {other} (only SDXL's text_time is supported)"
        ))),
    }
}

/// A 400 for the time-embedding, activation and attention options the candle UNet lacks.
fn reject_unsupported_features(v: &Value) -> Result<()> {
    for key in [
        "class_embed_type",
        "time_cond_proj_dim",
        "encoder_hid_dim",
        "time_embedding_act_fn",
        "timestep_post_act",
        "time_embedding_dim",
        "mid_block_only_cross_attention",
    ] {
        if !v.get(key).is_none_or(Value::is_null) {
            return Err(unsupported(key));
        }
    }
    if v.get("time_embedding_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "positional")
    {
        return Err(unsupported("a non-positional time embedding"));
    }
    if v.get("resnet_time_scale_shift")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "default")
    {
        return Err(unsupported("resnet_time_scale_shift other than default"));
    }
    if v.get("act_fn")
        .and_then(Value::as_str)
        .is_some_and(|a| a != "silu")
    {
        return Err(unsupported("an activation other than silu"));
    }
    if bool_of(v, "only_cross_attention", false) || bool_of(v, "dual_cross_attention", false) {
        return Err(unsupported("only/dual cross attention"));
    }
    Ok(())
}

/// candle's block configs from the down, mid and up block types, heads and transformer depth
/// (the up path must mirror the down path).
fn unet_blocks(v: &Value, channels: &[usize]) -> Result<Vec<BlockConfig>> {
    let n = channels.len();
    let down = strings(v, "down_block_types")?;
    let up = strings(v, "up_block_types")?;
    if down.len() != n || up.len() != n {
        return Err(Error::bad_request(
            "unet config: down_block_types, up_block_types and block_out_channels differ in length",
        ));
    }
    let mid = v
        .get("mid_block_type")
        .and_then(Value::as_str)
        .unwrap_or("UNetMidBlock2DCrossAttn");
    if mid != "UNetMidBlock2DCrossAttn" {
        return Err(unsupported(&format!("mid block {mid}")));
    }
    // diffusers' naming quirk: attention_head_dim holds the number of heads unless
    // num_attention_heads is given.
    let heads_key = if v.get("num_attention_heads").is_some_and(|h| !h.is_null()) {
        "num_attention_heads"
    } else {
        "attention_head_dim"
    };
    let heads = per_block(v, heads_key, n, 8)?;
    let depth = per_block(v, "transformer_layers_per_block", n, 1)?;
    let mut blocks = Vec::with_capacity(n);
    for i in 0..n {
        let cross = match down[i].as_str() {
            "CrossAttnDownBlock2D" => true,
            "DownBlock2D" => false,
            other => return Err(unsupported(&format!("down block {other}"))),
        };
        let mirrored = &up[n - 1 - i];
        let expected = if cross {
            "CrossAttnUpBlock2D"
        } else {
            "UpBlock2D"
        };
        if mirrored != expected {
            return Err(unsupported(&format!(
                "up block {mirrored} where {expected} mirrors the down path"
            )));
        }
        blocks.push(BlockConfig {
            out_channels: channels[i],
            use_cross_attn: cross.then_some(depth[i]),
            attention_head_dim: heads[i],
        });
    }
    Ok(blocks)
}

/// The config's `cross_attention_dim` (1280 when absent; per-block values are a 400).
fn cross_attention_dim(v: &Value) -> Result<usize> {
    match v.get("cross_attention_dim") {
        Some(Value::Number(x)) => Ok(x.as_u64().unwrap_or(768) as usize),
        None | Some(Value::Null) => Ok(1280),
        Some(other) => Err(unsupported(&format!(
            "cross_attention_dim {other} (per-block values)"
        ))),
    }
}

/// The VAE's settings.
#[derive(Debug, Clone)]
pub struct VaeSettings {
    /// candle's AutoencoderKL config.
    pub config: AutoEncoderKLConfig,
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Latents are multiplied by this after encoding (0.18215 for SD 1.x/2.x).
    pub scaling_factor: f64,
    /// Subtracted before scaling (SD 3 style VAEs; 0 otherwise).
    pub shift_factor: f64,
    /// The mid-blocks have their attention (`mid_block_add_attention`, default true).
    pub mid_attention: bool,
}

impl VaeSettings {
    /// From `vae/config.json`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let channels = block_out_channels(v, "vae")?;
        Ok(VaeSettings {
            config: AutoEncoderKLConfig {
                block_out_channels: channels,
                layers_per_block: usize_of(v, "layers_per_block", 1)?,
                latent_channels: usize_of(v, "latent_channels", 4)?,
                norm_num_groups: usize_of(v, "norm_num_groups", 32)?,
                use_quant_conv: bool_of(v, "use_quant_conv", true),
                use_post_quant_conv: bool_of(v, "use_post_quant_conv", true),
            },
            in_channels: usize_of(v, "in_channels", 3)?,
            out_channels: usize_of(v, "out_channels", 3)?,
            scaling_factor: f64_of(v, "scaling_factor", 0.18215),
            shift_factor: f64_of(v, "shift_factor", 0.0),
            mid_attention: bool_of(v, "mid_block_add_attention", true),
        })
    }
}

/// `block_out_channels` of a UNet or VAE config: a non-empty list, or a 400 naming `part`.
fn block_out_channels(v: &Value, part: &str) -> Result<Vec<usize>> {
    v.get("block_out_channels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|c| c as usize)
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::bad_request(format!("{part} config has no block_out_channels")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sdxl_like() -> Value {
        json!({
            "block_out_channels": [32, 64],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "attention_head_dim": [2, 4],
            "transformer_layers_per_block": [1, 2],
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 72,
            "cross_attention_dim": 64,
            "norm_num_groups": 8,
            "use_linear_projection": true,
        })
    }

    #[test]
    fn sdxl_settings_are_read_from_the_config() {
        let s = UNetSettings::from_json(&sdxl_like()).unwrap();
        assert_eq!(
            s.text_time,
            Some(TextTimeSettings {
                time_embed_dim: 8,
                input_dim: 72
            })
        );
        assert_eq!(s.config.norm_num_groups, 8);
        assert_eq!(s.config.blocks[0].use_cross_attn, None);
        assert_eq!(s.config.blocks[1].use_cross_attn, Some(2));
        assert_eq!(s.config.blocks[1].attention_head_dim, 4);
        assert!(s.config.use_linear_projection);
    }

    #[test]
    fn unsupported_unet_configs_are_a_400() {
        for (key, value) in [
            ("addition_embed_type", json!("image")),
            ("norm_num_groups", json!(12)),
            ("class_embed_type", json!("timestep")),
            ("time_embedding_act_fn", json!("silu")),
        ] {
            let mut v = sdxl_like();
            v[key] = value;
            let e = UNetSettings::from_json(&v).unwrap_err();
            assert_eq!(e.kind().http_status(), 400, "{key}: {e:?}");
        }
    }
}
