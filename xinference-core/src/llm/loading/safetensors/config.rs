//! Typed reads of a safetensors model's `config.json`, with 400s that name the field.

use crate::{Error, Result};
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
