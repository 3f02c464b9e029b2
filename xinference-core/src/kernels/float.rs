//! Products of float weights (f32, f16 or bf16, as Hugging Face safetensors store them) with
//! f32 activations, summed in f32: what transformers computes after `model.float()`, without
//! an f32 copy of half-precision weights. For prompt rows each block of weight rows is widened
//! to f32 in a per-thread scratch buffer once per call and multiplied with every input row
//! (pairs of rows against four weight rows at a time); a decode step's few rows read the
//! weights as stored, widened in registers. Every output value is [`dot`] of its own row, in
//! the same order whatever the path, so rows computed together give the bits they give alone,
//! on every CPU.

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

    /// `bytes` (little-endian values of this type) widened into `out`, eight at a time with
    /// AVX2 (bf16) or F16C (f16) where the CPU has them (the same values: widening is exact).
    fn widen(self, bytes: &[u8], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let whole = out.len().min(bytes.len() / self.size()) / 8 * 8;
            let done = match self {
                // SAFETY: the CPU has AVX2; `whole` values fit both slices.
                FloatType::Bf16 if has!("avx2") => unsafe {
                    avx::widen_bf16(&bytes[..whole * 2], &mut out[..whole]);
                    whole
                },
                // SAFETY: the CPU has F16C and AVX; as above.
                FloatType::F16 if has!("f16c") && has!("avx") => unsafe {
                    avx::widen_f16(&bytes[..whole * 2], &mut out[..whole]);
                    whole
                },
                _ => 0,
            };
            let size = self.size();
            self.widen_plain(&bytes[done * size..], &mut out[done..]);
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.widen_plain(bytes, out);
    }

    /// [`FloatType::widen`] one value at a time.
    fn widen_plain(self, bytes: &[u8], out: &mut [f32]) {
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

/// Weight rows widened together for prompt rows (a block's scratch stays in the L1 cache
/// while the input rows pass).
const BLOCK_ROWS: usize = 8;
/// Weight rows per task of a decode step (read directly, see [`DIRECT_ROWS`]).
const DIRECT_BLOCK_ROWS: usize = 32;

thread_local! {
    /// Each compute thread's scratch for a block of widened weight rows, kept between products.
    static WIDENED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

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
    let block_rows = if rows <= DIRECT_ROWS {
        DIRECT_BLOCK_ROWS
    } else {
        BLOCK_ROWS
    };
    let blocks = n.div_ceil(block_rows);
    // Each block computes its columns of every row, gathered afterwards.
    let parts: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let first = b * block_rows;
            let count = block_rows.min(n - first);
            let row_bytes = k * ty.size();
            let mut part = vec![0f32; rows * count];
            let block = &bytes[first * row_bytes..(first + count) * row_bytes];
            // f32 weights need no widening whatever the rows.
            let direct = rows <= DIRECT_ROWS || ty == FloatType::F32;
            if direct && direct_block_product(ty, x, block, k, &mut part) {
                return part;
            }
            WIDENED.with_borrow_mut(|w| {
                // Every value is written by `widen` before it is read.
                w.resize(count * k, 0.0);
                let w = &mut w[..count * k];
                ty.widen(block, w);
                block_product(x, w, k, &mut part);
            });
            part
        })
        .collect();
    for (b, part) in parts.iter().enumerate() {
        let first = b * block_rows;
        let count = block_rows.min(n - first);
        for r in 0..rows {
            out[r * n + first..r * n + first + count]
                .copy_from_slice(&part[r * count..(r + 1) * count]);
        }
    }
}

/// Up to this many input rows (decode steps), products read the stored weights directly,
/// widening them in registers: a step reads each weight once, and widening it into a scratch
/// buffer first would write and read it again as f32.
const DIRECT_ROWS: usize = 3;

/// `part[r][j] = x[r] · w[j]` straight from the stored weight rows `w` (bytes of `ty`, `k`
/// values a row), each value [`dot`]'s (widening is exact), where the CPU has AVX2 and F16C;
/// else `false`, nothing written.
fn direct_block_product(ty: FloatType, x: &[f32], w: &[u8], k: usize, part: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        let (rows, count) = (x.len() / k, w.len() / (k * ty.size()));
        let row_bytes = k * ty.size();
        let weights = |j: usize| &w[j * row_bytes..(j + 1) * row_bytes];
        let mut r = 0;
        while r < rows {
            let pair = (rows - r).min(2);
            let xs = [
                &x[r * k..(r + 1) * k],
                &x[(r + pair - 1) * k..(r + pair) * k],
            ];
            let mut j = 0;
            while j < count {
                let group = (count - j).min(4);
                // A last group of fewer than four repeats its last row.
                let ws: [&[u8]; 4] = std::array::from_fn(|i| weights(j + i.min(group - 1)));
                // SAFETY: the CPU has AVX2 and F16C (checked above); every weight row holds
                // `k` values of `ty`, every input row `k` values.
                let sums = unsafe {
                    match ty {
                        FloatType::F32 => avx::dots_direct::<0>(xs, ws),
                        FloatType::F16 => avx::dots_direct::<1>(xs, ws),
                        FloatType::Bf16 => avx::dots_direct::<2>(xs, ws),
                    }
                };
                for (i, row) in sums.iter().take(pair).enumerate() {
                    part[(r + i) * count + j..(r + i) * count + j + group]
                        .copy_from_slice(&row[..group]);
                }
                j += group;
            }
            r += pair;
        }
        return true;
    }
    let _ = (ty, x, w, k, part);
    false
}

/// `part[r][j] = x[r] · w[j]` for the input rows `x` and the widened weight rows `w` (both
/// rows of `k`), each value [`dot`]'s: through [`direct_block_product`]'s kernel where the CPU
/// has it (pairs of input rows against groups of four weight rows, each vector loaded once
/// for eight products), else through [`dot`].
fn block_product(x: &[f32], w: &[f32], k: usize, part: &mut [f32]) {
    // SAFETY: any f32 is four plain bytes, and u8 has no alignment to keep.
    let bytes = unsafe { std::slice::from_raw_parts(w.as_ptr().cast::<u8>(), size_of_val(w)) };
    if direct_block_product(FloatType::F32, x, bytes, k, part) {
        return;
    }
    let count = w.len() / k;
    for (r, xr) in x.chunks_exact(k).enumerate() {
        for (j, wj) in w.chunks_exact(k).enumerate() {
            part[r * count + j] = dot(xr, wj);
        }
    }
}

/// The AVX2 / F16C kernels: widening bf16 and f16 rows, and [`dot`] for two input rows
/// against four weight rows at once, each product's eight lanes multiplied and then added
/// (no fused multiply-add, as [`dot`] compiles), reduced in [`dot`]'s order, then the tail
/// past the last whole eight values added one by one: the same bits as [`dot`].
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// bf16 values (little-endian bytes) widened to f32, eight at a time.
    ///
    /// # Safety
    /// The CPU has AVX2; `bytes` holds `2 * out.len()` bytes and `out.len()` is a multiple
    /// of 8.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn widen_bf16(bytes: &[u8], out: &mut [f32]) {
        for (i, o) in out.chunks_exact_mut(8).enumerate() {
            let h = _mm_loadu_si128(bytes.as_ptr().add(i * 16).cast());
            let w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            _mm256_storeu_ps(o.as_mut_ptr(), _mm256_castsi256_ps(w));
        }
    }

    /// f16 values (little-endian bytes) widened to f32, eight at a time.
    ///
    /// # Safety
    /// The CPU has F16C and AVX; as [`widen_bf16`].
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn widen_f16(bytes: &[u8], out: &mut [f32]) {
        for (i, o) in out.chunks_exact_mut(8).enumerate() {
            let h = _mm_loadu_si128(bytes.as_ptr().add(i * 16).cast());
            _mm256_storeu_ps(o.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }

    /// Eight stored values of type `T` (0: f32, 1: f16, 2: bf16) at value `i` of `w`, widened.
    #[inline(always)]
    unsafe fn load8<const T: u8>(w: &[u8], i: usize) -> __m256 {
        match T {
            0 => _mm256_loadu_ps(w.as_ptr().add(i * 4).cast()),
            1 => _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i * 2).cast())),
            _ => {
                let h = _mm_loadu_si128(w.as_ptr().add(i * 2).cast());
                _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
            }
        }
    }

    /// One stored value of type `T` at value `i` of `w`, widened.
    #[inline(always)]
    fn load1<const T: u8>(w: &[u8], i: usize) -> f32 {
        match T {
            0 => f32::from_le_bytes([w[i * 4], w[i * 4 + 1], w[i * 4 + 2], w[i * 4 + 3]]),
            1 => half::f16::from_le_bytes([w[i * 2], w[i * 2 + 1]]).to_f32(),
            _ => f32::from_bits((u16::from_le_bytes([w[i * 2], w[i * 2 + 1]]) as u32) << 16),
        }
    }

    /// `out[r][j] = dot(xs[r], ws[j])`, the weight rows as stored (type `T`, see [`load8`]),
    /// widened in registers.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C; every weight row holds as many values as `xs[0]`.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn dots_direct<const T: u8>(
        xs: [&[f32]; 2],
        ws: [&[u8]; 4],
    ) -> [[f32; 4]; 2] {
        let k = xs[0].len();
        let whole = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); 4]; 2];
        let mut i = 0;
        while i < whole {
            let x0 = _mm256_loadu_ps(xs[0].as_ptr().add(i));
            let x1 = _mm256_loadu_ps(xs[1].as_ptr().add(i));
            for j in 0..4 {
                let w = load8::<T>(ws[j], i);
                acc[0][j] = _mm256_add_ps(acc[0][j], _mm256_mul_ps(x0, w));
                acc[1][j] = _mm256_add_ps(acc[1][j], _mm256_mul_ps(x1, w));
            }
            i += 8;
        }
        let mut out = [[0f32; 4]; 2];
        for r in 0..2 {
            for j in 0..4 {
                let mut sum = reduce(acc[r][j]);
                for (i, x) in xs[r].iter().enumerate().skip(whole) {
                    sum += x * load1::<T>(ws[j], i);
                }
                out[r][j] = sum;
            }
        }
        out
    }

    /// ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)), as `dot` sums its lanes.
    #[inline(always)]
    unsafe fn reduce(a: __m256) -> f32 {
        let t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let u = _mm_hadd_ps(t, t);
        _mm_cvtss_f32(_mm_hadd_ps(u, u))
    }
}

/// `Σ a_i b_i` in f32 over eight interleaved partial sums (vectorised by the compiler).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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
        for (n, k, rows) in [(37, 29, 3), (40, 64, 5), (16, 7, 1)] {
            check_products(n, k, rows);
        }
    }

    fn check_products(n: usize, k: usize, rows: usize) {
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
                    // The vector kernels give `dot`'s bits.
                    let plain = dot(&x[r * k..(r + 1) * k], &widened[j * k..(j + 1) * k]);
                    assert_eq!(out[r * n + j].to_bits(), plain.to_bits(), "{ty:?} {r} {j}");
                }
                let mut alone = vec![0f32; n];
                matmul(ty, &bytes, n, k, &x[r * k..(r + 1) * k], &mut alone);
                assert_eq!(alone, out[r * n..(r + 1) * n], "{ty:?}: row {r} alone");
            }
        }
    }
}
