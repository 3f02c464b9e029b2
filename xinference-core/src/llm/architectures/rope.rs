//! Rotary tables (`cos` and `sin` of every position's angles), computed for the positions in
//! use rather than for the whole context: a table grows, shared by every fork of the decoder,
//! when a sequence first reaches past it. Gemma 3 270M's two tables for its 32k positions
//! were 64 MB, a quarter of its GGUF file, for contexts that mostly stay under a few thousand.
//! A row is `cos(p · f)` / `sin(p · f)` in f32 whatever the table's length, so a grown table
//! holds the bits the whole one held.

use super::with_values;
use crate::kernels::norm_rope::{rotate_pairs, Rounding};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::sync::{Arc, RwLock};

/// Positions a table holds at least once it is computed.
const FIRST_ROWS: usize = 512;

/// Rotary angles of one frequency set, up to the model's context.
#[derive(Clone)]
pub(super) struct Rope {
    /// The angle per position of each rotated pair (`rotated / 2` values).
    inv_freq: Arc<[f32]>,
    /// No rotation at all (cos 1, sin 0).
    identity: bool,
    /// Multiplies `cos` and `sin` (YaRN's attention factor).
    mscale: Option<f32>,
    /// The model's context: positions beyond are refused.
    positions: usize,
    /// `cos` and `sin`, `[rows, rotated / 2]`, for the first rows computed so far.
    tables: Arc<RwLock<Option<(Tensor, Tensor)>>>,
    /// The angles as llama.cpp computes them, where they are a base's powers ([`Rope::new`],
    /// [`Rope::with_freq_factors`]); used under [`Rounding::Ggml`].
    ggml_angles: Option<GgmlAngles>,
    /// Whose tables and rotation: llama.cpp's ([`Rope::round_as_llama_cpp`]) or candle's.
    rounding: Rounding,
}

/// What llama.cpp's CPU backend computes a rotary table from (`ggml_rope_cache_init`,
/// `rope_yarn` without YaRN): the angle of pair `i` at position `p` is `freq_scale · θ_i /
/// factor_i` with `θ_0 = p` and `θ_{i+1} = θ_i · theta_scale` (a running f32 product,
/// `theta_scale = powf(base, -2 / dims)`), then `cosf` / `sinf` of it.
#[derive(Clone)]
struct GgmlAngles {
    theta_scale: f32,
    freq_scale: f32,
    factors: Option<Arc<[f32]>>,
}

impl Rope {
    /// Tables for `positions` positions with base `base`; `scale` multiplies the positions
    /// (linear rope scaling: `1 / factor`).
    pub(super) fn new(head_dim: usize, base: f32, scale: f32, positions: usize) -> Result<Self> {
        Self::with_freq_factors(head_dim, base, scale, positions, None)
    }

    /// [`Rope::new`] with each frequency divided by its factor (Llama 3's `rope_freqs.weight`,
    /// `head_dim / 2` values, as llama.cpp's `freq_factors`).
    pub(super) fn with_freq_factors(
        head_dim: usize,
        base: f32,
        scale: f32,
        positions: usize,
        factors: Option<&[f32]>,
    ) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| {
                let factor = factors.and_then(|f| f.get(i / 2)).copied().unwrap_or(1.0);
                scale / base.powf(i as f32 / head_dim as f32) / factor
            })
            .collect();
        let mut rope = Self::with_inv_freq(inv_freq, positions, None);
        rope.ggml_angles = Some(GgmlAngles {
            theta_scale: base.powf(-2.0 / head_dim as f32),
            freq_scale: scale,
            factors: factors.map(Arc::from),
        });
        Ok(rope)
    }

    /// Tables of the angles per position `inv_freq` (one per rotated pair), each value
    /// multiplied by `mscale` when given.
    pub(super) fn with_inv_freq(inv_freq: Vec<f32>, positions: usize, mscale: Option<f32>) -> Self {
        Rope {
            inv_freq: inv_freq.into(),
            identity: false,
            mscale,
            positions,
            tables: Arc::default(),
            ggml_angles: None,
            rounding: Rounding::Candle,
        }
    }

    /// Tables and rotation as llama.cpp's CPU backend computes them (the GGUF path): the
    /// angles of [`GgmlAngles`] where the tables are a base's powers (the others, YaRN's and
    /// the identity, are already llama.cpp's), and the rotation's products fused as
    /// [`Rounding::Ggml`] says. Our own tables (`p · scale / base^(2i / dims)`) and candle's
    /// unfused rotation differ from it in the last bits of most rotated values, which moved
    /// f16 roundings of Gemma 3's queries and keys and its attention weights. Only before any
    /// table is computed (on loading).
    pub(super) fn round_as_llama_cpp(&mut self) {
        self.rounding = Rounding::Ggml;
    }

    /// No rotation at all (cos 1, sin 0: each value passes through exactly), for the layers
    /// without positional encoding (SmolLM3's NoPE layers).
    pub(super) fn identity(head_dim: usize, positions: usize) -> Result<Self> {
        Ok(Rope {
            inv_freq: vec![0.0; head_dim / 2].into(),
            identity: true,
            mscale: None,
            positions,
            tables: Arc::default(),
            ggml_angles: None,
            rounding: Rounding::Candle,
        })
    }

    /// The positions the model takes.
    pub(super) fn positions(&self) -> usize {
        self.positions
    }

    /// `cos` and `sin` of positions `start..start + len`, `[len, rotated / 2]`.
    pub(super) fn angles(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let end = start + len;
        if end > self.positions {
            return Err(Error::bad_request(format!(
                "position {end} is past the model's {} positions",
                self.positions
            )));
        }
        {
            let held = self.tables.read().unwrap_or_else(|e| e.into_inner());
            if let Some((cos, sin)) = held.as_ref() {
                if cos.dim(0)? >= end {
                    return Ok((cos.narrow(0, start, len)?, sin.narrow(0, start, len)?));
                }
            }
        }
        let mut held = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let rows = held.as_ref().map_or(Ok(0), |(cos, _)| cos.dim(0))?;
        if rows < end {
            let rows = end.next_power_of_two().max(FIRST_ROWS).min(self.positions);
            *held = Some(self.compute(rows)?);
        }
        let Some((cos, sin)) = held.as_ref() else {
            unreachable!("computed above")
        };
        Ok((cos.narrow(0, start, len)?, sin.narrow(0, start, len)?))
    }

    /// Rotates, in place, `xs` (positions from `start` on, each `heads` × `head_dim` values)
    /// by their positions' angles, pairs as `neox` says (see [`rotate_pairs`]), rounded as
    /// [`Rope::round_as_llama_cpp`] says.
    pub(super) fn rotate(
        &self,
        xs: &mut [f32],
        (heads, head_dim): (usize, usize),
        start: usize,
        neox: bool,
    ) -> Result<()> {
        let width = (heads * head_dim).max(1);
        let (cos, sin) = self.angles(start, xs.len() / width)?;
        let half = self.inv_freq.len();
        with_values(&cos, |cos| {
            with_values(&sin, |sin| {
                rotate_pairs(xs, (heads, head_dim), (cos, sin, half), neox, self.rounding)
            })
        })??;
        Ok(())
    }

    /// The tables of the first `rows` positions: `cos(p · f)` and `sin(p · f)` with the
    /// product in f32 (candle's `broadcast_mul`, `cos`, `sin` and affine scaling, which the
    /// tables were computed with before: the same bits).
    fn compute(&self, rows: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(rows * half);
        let mut sin = Vec::with_capacity(rows * half);
        if let (Rounding::Ggml, Some(g)) = (self.rounding, &self.ggml_angles) {
            for p in 0..rows {
                let mut theta = p as f32;
                for i in 0..half {
                    let factor = g.factors.as_ref().and_then(|f| f.get(i)).copied();
                    let angle = g.freq_scale * (theta / factor.unwrap_or(1.0));
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                    theta *= g.theta_scale;
                }
            }
            let device = Device::Cpu;
            return Ok((
                Tensor::from_vec(cos, (rows, half), &device)?,
                Tensor::from_vec(sin, (rows, half), &device)?,
            ));
        }
        for p in 0..rows {
            for &f in self.inv_freq.iter() {
                let (c, s) = if self.identity {
                    (1.0, 0.0)
                } else {
                    let angle = p as f32 * f;
                    (angle.cos(), angle.sin())
                };
                match self.mscale {
                    // candle's affine: `v · mul + add`.
                    Some(m) => {
                        cos.push(c * m + 0.0);
                        sin.push(s * m + 0.0);
                    }
                    None => {
                        cos.push(c);
                        sin.push(s);
                    }
                }
            }
        }
        let device = Device::Cpu;
        Ok((
            Tensor::from_vec(cos, (rows, half), &device)?,
            Tensor::from_vec(sin, (rows, half), &device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables computed as before (candle's ops over every position), to compare with.
    fn candle_tables(
        inv_freq: &[f32],
        positions: usize,
        mscale: Option<f32>,
    ) -> (Vec<f32>, Vec<f32>) {
        let device = Device::Cpu;
        let half = inv_freq.len();
        let inv = Tensor::from_vec(inv_freq.to_vec(), (1, half), &device).unwrap();
        let angles = Tensor::arange(0u32, positions as u32, &device)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .reshape((positions, 1))
            .unwrap()
            .broadcast_mul(&inv)
            .unwrap();
        let (mut cos, mut sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        if let Some(m) = mscale {
            cos = (cos * m as f64).unwrap();
            sin = (sin * m as f64).unwrap();
        }
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(cos), flat(sin))
    }

    /// Rows asked for in any order (growing the table on the way) are the bits of candle's
    /// tables over the whole context, scaled or not; past the context is an error.
    #[test]
    fn grown_tables_hold_the_whole_tables_bits() {
        for mscale in [None, Some(1.2f32)] {
            let positions = 3000;
            let rope = Rope::new(64, 1_000_000.0, 0.5, positions).unwrap();
            let rope = Rope::with_inv_freq(rope.inv_freq.to_vec(), positions, mscale);
            let (cos_all, sin_all) = candle_tables(&rope.inv_freq, positions, mscale);
            for (start, len) in [(0, 7), (600, 1), (2990, 10), (3, 1200), (0, 3000)] {
                let (cos, sin) = rope.angles(start, len).unwrap();
                let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(flat(cos), cos_all[start * 32..(start + len) * 32]);
                assert_eq!(flat(sin), sin_all[start * 32..(start + len) * 32]);
            }
            assert!(rope.angles(2999, 2).is_err());
        }
        // A table starts small: a short sequence does not compute the whole context.
        let rope = Rope::new(256, 10_000.0, 1.0, 32_768).unwrap();
        rope.angles(0, 100).unwrap();
        let held = rope.tables.read().unwrap();
        assert_eq!(held.as_ref().unwrap().0.dim(0).unwrap(), FIRST_ROWS);
        let identity = Rope::identity(8, 16).unwrap();
        let (cos, sin) = identity.angles(2, 3).unwrap();
        assert_eq!(
            cos.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0; 12]
        );
        assert_eq!(
            sin.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.0; 12]
        );
    }

    /// llama.cpp's tables (`ggml_rope_cache_init`): a running f32 product from `θ = p`, each
    /// angle divided by its frequency factor and times the scale, `cosf` / `sinf` of it; grown
    /// tables hold the same rows. Without llama.cpp's rounding the factors still divide the
    /// frequencies.
    #[test]
    fn llama_cpp_tables_are_ggmls_running_products() {
        let (dims, base, scale, positions) = (16, 500_000.0f32, 0.25f32, 2000);
        let factors: Vec<f32> = (0..dims / 2).map(|i| 1.0 + i as f32).collect();
        let mut rope =
            Rope::with_freq_factors(dims, base, scale, positions, Some(&factors)).unwrap();
        rope.round_as_llama_cpp();
        let theta_scale = base.powf(-2.0 / dims as f32);
        let (mut cos_all, mut sin_all) = (Vec::new(), Vec::new());
        for p in 0..positions {
            let mut theta = p as f32;
            for f in &factors {
                let angle = scale * (theta / f);
                cos_all.push(angle.cos());
                sin_all.push(angle.sin());
                theta *= theta_scale;
            }
        }
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (start, len) in [(0, 3), (1500, 20), (7, 600)] {
            let (cos, sin) = rope.angles(start, len).unwrap();
            assert_eq!(flat(cos), cos_all[start * 8..(start + len) * 8]);
            assert_eq!(flat(sin), sin_all[start * 8..(start + len) * 8]);
        }
        let plain = Rope::with_freq_factors(dims, base, scale, positions, Some(&factors)).unwrap();
        let (cos, _) = plain.angles(1, 1).unwrap();
        let want: Vec<f32> = (0..dims / 2)
            .map(|i| (scale / base.powf(2.0 * i as f32 / dims as f32) / factors[i]).cos())
            .collect();
        assert_eq!(flat(cos), want);
    }
}
