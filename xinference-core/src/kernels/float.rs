//! Products of float weights (f32, f16 or bf16, as Hugging Face safetensors store them) with
//! f32 activations, summed in f32: what transformers computes after `model.float()`, without
//! an f32 copy of half-precision weights. Each block of weight rows is widened to f32 in a
//! scratch buffer once per call and dotted with every input row; every output value is the sum
//! of its own row's products, so rows computed together give the bits they give alone.

use rayon::prelude::*;

/// The element type of a float weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl FloatType {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            FloatType::F32 => 4,
            FloatType::F16 | FloatType::Bf16 => 2,
        }
    }

    /// `bytes` (little-endian values of this type) widened into `out`.
    fn widen(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            FloatType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            FloatType::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            FloatType::Bf16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
                }
            }
        }
    }
}

/// Weight rows widened together (a block's scratch stays in cache).
const BLOCK_ROWS: usize = 16;

/// `out[r][j] = Σ x[r][i] · w[j][i]` for the weights `w` (`n` rows of `k` values of type `ty`,
/// `bytes` of them) and the inputs `x` (`rows` of `k`); `out` holds `rows × n` values.
/// Blocks of weight rows run on the compute threads.
pub fn matmul(ty: FloatType, bytes: &[u8], n: usize, k: usize, x: &[f32], out: &mut [f32]) {
    assert_eq!(
        bytes.len(),
        n * k * ty.size(),
        "float weights of another size"
    );
    let rows = x.len() / k.max(1);
    assert_eq!(out.len(), rows * n, "float product output of another size");
    let blocks = n.div_ceil(BLOCK_ROWS);
    // Each block computes its columns of every row, gathered afterwards.
    let parts: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let first = b * BLOCK_ROWS;
            let count = BLOCK_ROWS.min(n - first);
            let mut w = vec![0f32; count * k];
            let row_bytes = k * ty.size();
            ty.widen(
                &bytes[first * row_bytes..(first + count) * row_bytes],
                &mut w,
            );
            let mut part = vec![0f32; rows * count];
            for (r, xr) in x.chunks_exact(k).enumerate() {
                for (j, wj) in w.chunks_exact(k).enumerate() {
                    part[r * count + j] = dot(xr, wj);
                }
            }
            part
        })
        .collect();
    for (b, part) in parts.iter().enumerate() {
        let first = b * BLOCK_ROWS;
        let count = BLOCK_ROWS.min(n - first);
        for r in 0..rows {
            out[r * n + first..r * n + first + count]
                .copy_from_slice(&part[r * count..(r + 1) * count]);
        }
    }
}

/// `Σ a_i b_i` in f32 over eight interleaved partial sums (vectorised by the compiler).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each type's product equals the f64 product of the widened weights within f32 rounding,
    /// and rows computed together equal rows computed alone.
    #[test]
    fn products_match_their_definition_for_every_type() {
        let (n, k, rows) = (37, 29, 3);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 104729) % 97) as f32 / 40.0 - 1.2)
            .collect();
        for ty in [FloatType::F32, FloatType::F16, FloatType::Bf16] {
            let bytes: Vec<u8> = match ty {
                FloatType::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
                FloatType::F16 => w
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                FloatType::Bf16 => w
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            let mut widened = vec![0f32; n * k];
            ty.widen(&bytes, &mut widened);
            let mut out = vec![0f32; rows * n];
            matmul(ty, &bytes, n, k, &x, &mut out);
            for r in 0..rows {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|i| x[r * k + i] as f64 * widened[j * k + i] as f64)
                        .sum();
                    assert!(
                        (out[r * n + j] as f64 - want).abs() < 1e-4,
                        "{ty:?} {r} {j}"
                    );
                }
                let mut alone = vec![0f32; n];
                matmul(ty, &bytes, n, k, &x[r * k..(r + 1) * k], &mut alone);
                assert_eq!(alone, out[r * n..(r + 1) * n], "{ty:?}: row {r} alone");
            }
        }
    }
}
