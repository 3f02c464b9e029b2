//! GELU(tanh) as llama.cpp's CPU backend computes it for Gemma: a lookup in an f16 table.

use super::zip_map;
use candle_core::Tensor;

/// GELU(tanh) as llama.cpp's CPU backend computes it: from a table indexed by the f16 value of
/// `x`, holding f16 results (`x` itself from 10 up, 0 from -10 down). The rounding moves
/// Gemma's logits by a few hundredths, the size of its closest greedy choices.
#[inline(always)]
fn gelu_f16(table: &[f32], x: f32) -> f32 {
    if x >= 10.0 {
        x
    } else if x <= -10.0 {
        0.0
    } else {
        table[usize::from(half::f16::from_f32(x).to_bits())]
    }
}

/// √(2/π) as candle and ggml write it (`(2.0 / PI).sqrt()` in f32 is one unit off).
#[allow(clippy::excessive_precision)]
const SQRT_TWO_OVER_PI: f32 = 0.797_884_560_802_865_355_879_892_119_868_763_7;

/// llama.cpp's `ggml_table_gelu_f16`: for every f16 bit pattern, candle's GELU(tanh) of that
/// value (its formula, in f32) rounded to f16, kept widened to f32. Built once (256 KiB), so
/// a feed-forward's GELU is one lookup per value instead of candle's ten passes over it.
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let v = half::f16::from_bits(bits).to_f32();
                let g =
                    0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)));
                half::f16::from_f32(g).to_f32()
            })
            .collect()
    })
}

/// [`gelu_f16`] of every value of `x` (the reference [`gelu_f16_mul`] is checked against).
#[cfg(test)]
fn gelu_f16_table(x: &Tensor) -> candle_core::Result<Tensor> {
    let table = gelu_table();
    let mut out = x.flatten_all()?.to_vec1::<f32>()?;
    for v in out.iter_mut() {
        *v = gelu_f16(table, *v);
    }
    Tensor::from_vec(out, x.dims(), &candle_core::Device::Cpu)
}

/// `gelu_f16(gate) * up` in one pass (the same bits as `gelu_f16` of each gate value then
/// candle's `mul`; the tests compare the two).
pub(super) fn gelu_f16_mul(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    let table = gelu_table();
    zip_map(gate, up, |g, u| gelu_f16(table, g) * u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType::{F16, F32};
    use candle_core::Device;

    /// The table gives the bits of the candle composition it replaced (f16 rounding, candle's
    /// `gelu`, f16 rounding, the clamps at ±10) for every f16 value and values between them.
    #[test]
    fn the_table_gives_the_bits_of_candles_gelu_between_f16_roundings() {
        let mut xs: Vec<f32> = (0..=u16::MAX)
            .map(|bits| half::f16::from_bits(bits).to_f32())
            .filter(|v| v.is_finite())
            .collect();
        xs.extend((-24_000..24_000).map(|i| i as f32 * 4.7e-4 + 1.3e-5));
        let x = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
        let composed = (|| {
            let table = x
                .to_dtype(F16)?
                .to_dtype(F32)?
                .gelu()?
                .to_dtype(F16)?
                .to_dtype(F32)?;
            let y = x.ge(10f32)?.where_cond(&x, &table)?;
            x.le(-10f32)?.where_cond(&x.zeros_like()?, &y)
        })()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
        let ours = gelu_f16_table(&x).unwrap().to_vec1::<f32>().unwrap();
        for ((x, want), got) in xs.iter().zip(&composed).zip(&ours) {
            assert_eq!(want.to_bits(), got.to_bits(), "gelu({x}): {want} vs {got}");
        }
        let up = Tensor::from_vec(
            xs.iter().map(|v| v * 0.37 - 1.0).collect(),
            xs.len(),
            &Device::Cpu,
        )
        .unwrap();
        let fused = gelu_f16_mul(&x, &up).unwrap().to_vec1::<f32>().unwrap();
        let apart = (gelu_f16_table(&x).unwrap() * &up)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(fused
            .iter()
            .zip(&apart)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
