//! Pooling and normalisation as sentence-transformers declares them: `modules.json` lists the
//! modules (a `Normalize` module may be declared with no folder of its own) and
//! `1_Pooling/config.json` names the pooling mode.

use crate::Result;
use candle_core::{DType, Tensor};
use serde_json::Value;
use std::path::Path;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's vector (BGE, GTE).
    Cls,
    /// The mask-weighted mean (MiniLM, E5).
    Mean,
    /// The element-wise maximum over real tokens.
    Max,
    /// The last real token (decoder-based embedders).
    LastToken,
}

/// Pooling mode and whether vectors are L2-normalised afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolingConfig {
    /// The pooling mode.
    pub pooling: Pooling,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
}

impl PoolingConfig {
    /// Reads the sentence-transformers files in `dir`. Without them: mean pooling, no
    /// normalisation (what sentence-transformers does for a plain transformers folder).
    pub fn from_dir(dir: &Path) -> Self {
        let modules: Vec<Value> = std::fs::read_to_string(dir.join("modules.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let module_of = |kind: &str| {
            modules.iter().find(|m| {
                m["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&format!(".{kind}")) || t == kind)
            })
        };
        let normalize = module_of("Normalize").is_some();
        let pooling_dir = module_of("Pooling")
            .and_then(|m| m["path"].as_str())
            .unwrap_or("1_Pooling");
        let pooling = std::fs::read_to_string(dir.join(pooling_dir).join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|c| pooling_mode(&c))
            .unwrap_or(Pooling::Mean);
        PoolingConfig { pooling, normalize }
    }

    /// Pools the token vectors of one sequence (`rows`: `tokens × width`, row-major, no
    /// padding), normalising when configured.
    pub fn pool(&self, rows: &[f32], width: usize) -> Vec<f32> {
        let tokens = rows.len() / width.max(1);
        let mut pooled = match self.pooling {
            Pooling::Cls => rows[..width].to_vec(),
            Pooling::LastToken => rows[(tokens - 1) * width..].to_vec(),
            Pooling::Mean => {
                let mut sum = vec![0f32; width];
                for row in rows.chunks_exact(width) {
                    sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                }
                let count = (tokens as f32).max(1e-9);
                sum.iter_mut().for_each(|s| *s /= count);
                sum
            }
            Pooling::Max => {
                let mut max = vec![f32::NEG_INFINITY; width];
                for row in rows.chunks_exact(width) {
                    max.iter_mut().zip(row).for_each(|(m, x)| *m = m.max(*x));
                }
                max
            }
        };
        if self.normalize {
            let norm = pooled.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|x| *x /= norm);
        }
        pooled
    }

    /// Pools a right-padded batch: `hidden` `[batch, seq, width]`, where sequence `i` has
    /// `lens[i]` real tokens. One vector per sequence, by [`PoolingConfig::pool`].
    pub fn pool_padded(&self, hidden: &Tensor, lens: &[usize]) -> Result<Vec<Vec<f32>>> {
        let width = hidden.dim(2)?;
        let rows: Vec<Vec<Vec<f32>>> = hidden.to_dtype(DType::F32)?.to_vec3()?;
        Ok(rows
            .iter()
            .zip(lens)
            .map(|(seq, &len)| self.pool(&seq[..len].concat(), width))
            .collect())
    }
}

/// The mode of a `1_Pooling/config.json`: sentence-transformers 5+ writes
/// `"pooling_mode": "cls"`, earlier versions one `pooling_mode_*` flag per mode.
fn pooling_mode(c: &Value) -> Pooling {
    let on = |k: &str| c[k].as_bool().unwrap_or(false);
    match c["pooling_mode"].as_str() {
        Some("cls") => Pooling::Cls,
        Some("max") => Pooling::Max,
        Some("lasttoken") => Pooling::LastToken,
        Some("mean") => Pooling::Mean,
        Some(other) => {
            tracing::warn!("pooling mode {other} is not supported; using mean pooling");
            Pooling::Mean
        }
        None if on("pooling_mode_cls_token") => Pooling::Cls,
        None if on("pooling_mode_max_tokens") => Pooling::Max,
        None if on("pooling_mode_lasttoken") => Pooling::LastToken,
        None => Pooling::Mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn hidden() -> (Tensor, Vec<usize>) {
        // Two sequences of three tokens, dim 2; the second has one padding token.
        let h = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [5., 6.]],
                [[1., 0.], [3., 0.], [100., 100.]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        (h, vec![3, 2])
    }

    #[test]
    fn reads_both_pooling_config_formats() {
        let mode = |t: &str| pooling_mode(&serde_json::from_str(t).unwrap());
        assert_eq!(mode(r#"{"pooling_mode": "cls"}"#), Pooling::Cls);
        assert_eq!(mode(r#"{"pooling_mode": "lasttoken"}"#), Pooling::LastToken);
        assert_eq!(mode(r#"{"pooling_mode_cls_token": true}"#), Pooling::Cls);
        assert_eq!(mode(r#"{"pooling_mode_mean_tokens": true}"#), Pooling::Mean);
        assert_eq!(
            mode(r#"{"pooling_mode_lasttoken": true}"#),
            Pooling::LastToken
        );
    }

    #[test]
    fn mean_pooling_ignores_padding() {
        let (h, m) = hidden();
        let cfg = PoolingConfig {
            pooling: Pooling::Mean,
            normalize: false,
        };
        let out = cfg.pool_padded(&h, &m).unwrap();
        assert_eq!(out, vec![vec![3., 4.], vec![2., 0.]]);
    }

    #[test]
    fn cls_max_last_and_normalize() {
        let (h, m) = hidden();
        let pool = |pooling, normalize| -> Vec<Vec<f32>> {
            PoolingConfig { pooling, normalize }
                .pool_padded(&h, &m)
                .unwrap()
        };
        assert_eq!(pool(Pooling::Cls, false), vec![vec![1., 2.], vec![1., 0.]]);
        assert_eq!(pool(Pooling::Max, false), vec![vec![5., 6.], vec![3., 0.]]);
        assert_eq!(
            pool(Pooling::LastToken, false),
            vec![vec![5., 6.], vec![3., 0.]]
        );
        let n = pool(Pooling::Cls, true);
        assert!((n[0][0] - 1. / 5f32.sqrt()).abs() < 1e-6 && (n[1][0] - 1.).abs() < 1e-6);
    }
}
