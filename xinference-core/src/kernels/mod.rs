//! CPU kernels for our own forward passes, over plain row-major `f32` slices.
//!
//! candle's CPU element-wise ops are scalar (its GELU calls `erf` per element) and every op
//! allocates a tensor; for encoders, where one pass is a handful of matrix products and cheap
//! element-wise work between them, that overhead was half of the pass. Here the products go
//! straight to `gemm` (the crate candle itself uses), writing into preallocated buffers with the
//! bias and residual already in place, and the element-wise work runs on all cores with
//! AVX2/FMA code chosen at run time (a plain build targets SSE2 only).

use rayon::prelude::*;

pub mod few_rows;
pub mod float;
pub mod mxfp4;
pub mod quant;

/// Below this many multiply-adds a product (or an attention) runs on the calling thread:
/// waking the pool would cost more than it saves.
pub const PARALLEL_WORK: usize = 1 << 18;
/// Element-wise work is split into pieces of about this many values.
const PARALLEL_CHUNK: usize = 1 << 14;

/// Defines `fn $name`, compiled twice: for AVX2 + FMA (used when the CPU has them, chosen
/// at run time) and for the build's baseline. Plain loops in the body vectorise for AVX2.
macro_rules! multiversioned {
    ($(#[$meta:meta])* fn $name:ident($($p:ident: $t:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        fn $name($($p: $t),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($p: $t),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($p: $t),*) $(-> $ret)? {
                    portable($($p),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($p),*) };
                }
            }
            portable($($p),*)
        }
    };
}

pub mod attention;
mod elementwise;
pub use elementwise::*;
pub mod norm_rope;

/// Threads the kernels use: candle's count (`RAYON_NUM_THREADS`, else the machine's physical
/// cores), read once. Without `RAYON_NUM_THREADS` candle reads `/proc/cpuinfo` on every call:
/// asked per product, that was a sixth of a SmolLM2 decode step.
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// Runs `f` on one of the compute pool's threads (at once when already on one). The products
/// inside then split their work from a pool thread that takes a share itself; called from
/// another thread, each product would put that thread to sleep and wake it afterwards (two
/// context switches per product, hundreds per decode step).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}

/// A strided view of a row-major matrix inside a slice: element `(r, c)` is at
/// `offset + r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl View {
    /// A contiguous row-major matrix with `cols` columns, starting at `offset`.
    pub fn rows(offset: usize, cols: usize) -> Self {
        View {
            offset,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub fn transposed(offset: usize, cols: usize) -> Self {
        View {
            offset,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn last_index(&self, rows: usize, cols: usize) -> usize {
        self.offset + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride
    }
}

/// `dst[m×n] = (accumulate ? dst : 0) + scale · a[m×k] · b[k×n]`, each matrix a [`View`] of
/// its slice. Runs on the pool when the product is large and `parallel` is set.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_view: View,
    a: &[f32],
    a_view: View,
    b: &[f32],
    b_view: View,
    scale: f32,
    accumulate: bool,
    parallel: bool,
) {
    let (m, _, n) = dims;
    if m > 0 && n > 0 {
        assert!(dst_view.last_index(m, n) < dst.len(), "dst out of bounds");
    }
    // SAFETY: `dst` is in bounds (checked above) and, borrowed mutably, aliases nothing.
    unsafe {
        matmul_to(
            dims,
            SharedMut::new(dst),
            dst_view,
            a,
            a_view,
            b,
            b_view,
            scale,
            accumulate,
            parallel,
        )
    }
}

/// [`matmul`] into a [`SharedMut`], for parallel workers that each fill their own part of
/// one output.
///
/// # Safety
/// The elements `dst_view` addresses must lie inside `dst`, and no other thread may read
/// or write them during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_to(
    (m, k, n): (usize, usize, usize),
    dst: SharedMut,
    dst_view: View,
    a: &[f32],
    a_view: View,
    b: &[f32],
    b_view: View,
    scale: f32,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let at = |r: usize, c: usize| {
        dst.0
            .add(dst_view.offset + r * dst_view.row_stride + c * dst_view.col_stride)
    };
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    *at(r, c) = 0.0;
                }
            }
        }
        return;
    }
    assert!(dst_view.last_index(m, n) < dst.1, "dst out of bounds");
    assert!(a_view.last_index(m, k) < a.len(), "lhs out of bounds");
    assert!(b_view.last_index(k, n) < b.len(), "rhs out of bounds");
    let parallelism = if parallel && m * n * k >= PARALLEL_WORK && threads() > 1 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element the views address lies inside its slice (checked above: views
    // are monotone, so the last element is the furthest); the caller guarantees exclusive
    // access to the part of `dst` written.
    gemm::gemm(
        m,
        n,
        k,
        at(0, 0),
        dst_view.col_stride as isize,
        dst_view.row_stride as isize,
        accumulate,
        a.as_ptr().add(a_view.offset),
        a_view.col_stride as isize,
        a_view.row_stride as isize,
        b.as_ptr().add(b_view.offset),
        b_view.col_stride as isize,
        b_view.row_stride as isize,
        1.0,
        scale,
        false,
        false,
        false,
        parallelism,
    );
}

/// `out[t×n] = x[t×k] · wᵀ + bias` for a weight `w` stored `[n, k]` (PyTorch's layout of a
/// linear layer), plus `residual[t×n]` when given.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &mut Vec<f32>,
    (t, k, n): (usize, usize, usize),
) {
    out.clear();
    out.resize(t * n, 0.0);
    let mut prefilled = false;
    if let Some(residual) = residual {
        out.copy_from_slice(&residual[..t * n]);
        prefilled = true;
    }
    if let Some(bias) = bias {
        for row in out.chunks_exact_mut(n) {
            if prefilled {
                row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
            } else {
                row.copy_from_slice(bias);
            }
        }
        prefilled = true;
    }
    if t <= SMALL_M {
        small_m_product(out, x, w, (t, k, n));
        return;
    }
    matmul(
        (t, k, n),
        out,
        View::rows(0, n),
        x,
        View::rows(0, k),
        w,
        View::transposed(0, k),
        1.0,
        prefilled,
        true,
    );
}

/// [`linear`] through the few-rows kernel whatever the number of rows (no bias, residual or
/// `gemm`): every output is one dot product of an input row with a weight row, so each row
/// comes out rounded exactly as it would alone, and the weights stream through once for all
/// rows. For decoder steps of several sequences batched together.
pub fn linear_streamed(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut Vec<f32>,
    (t, k, n): (usize, usize, usize),
) {
    out.clear();
    out.resize(t * n, 0.0);
    if let Some(bias) = bias {
        out.chunks_exact_mut(n)
            .for_each(|row| row.copy_from_slice(bias));
    }
    small_m_product(out, x, w, (t, k, n));
}

/// Up to this many rows, [`linear`] uses [`small_m_product`] instead of `gemm`: for a
/// few tokens `gemm` spends its time packing the weights and runs half-empty micro-kernels.
const SMALL_M: usize = 16;
/// Weights (values) from which [`small_m_product`] splits its columns over the pool.
const SMALL_M_PARALLEL_WEIGHTS: usize = 1 << 21;

/// `out[m×n] += x[m×k] · wᵀ` for a few rows, with `w` stored `[n, k]`: each output is a dot
/// product of an input row with a weight row, so the weights stream through once, in order,
/// while the few input rows stay in cache (the matrix-vector kernel of llama.cpp and the
/// like). Columns are spread over the pool when the matrix is large.
fn small_m_product(out: &mut [f32], x: &[f32], w: &[f32], (m, k, n): (usize, usize, usize)) {
    let shared = SharedMut::new(out);
    // A few rows are bound by reading the weights: a second thread helps only once the
    // matrix is well beyond the caches (measured: slower for MiniLM's 2.4 MB matrices).
    let parts = if k * n >= SMALL_M_PARALLEL_WEIGHTS {
        threads().min(n)
    } else {
        1
    };
    let per_part = n.div_ceil(parts);
    let run = |part: usize| {
        let first = part * per_part;
        let last = (first + per_part).min(n);
        // SAFETY: each part writes only its own columns of `out` (m × n values).
        unsafe { small_m_columns(shared, x, w, (m, k, n), first, last) };
    };
    if parts > 1 {
        (0..parts).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// Columns `first..last` of [`small_m_product`].
///
/// # Safety
/// `out` must hold `m × n` values and no other thread may touch these columns meanwhile.
unsafe fn small_m_columns(
    out: SharedMut,
    x: &[f32],
    w: &[f32],
    (m, k, n): (usize, usize, usize),
    first: usize,
    last: usize,
) {
    assert!(m * n <= out.1 && last <= n && x.len() >= m * k && w.len() >= n * k);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA; the bounds were checked above.
        return avx2::dot_columns(out.0, x.as_ptr(), w.as_ptr(), (m, k, n), first, last);
    }
    for c in first..last {
        let wrow = &w[c * k..(c + 1) * k];
        for r in 0..m {
            let xrow = &x[r * k..(r + 1) * k];
            *out.0.add(r * n + c) += xrow.iter().zip(wrow).map(|(a, b)| a * b).sum::<f32>();
        }
    }
}

/// Hand-written AVX2 + FMA kernels, for what the compiler does not vectorise well.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Sum of the eight lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    /// `out[r, c] += x[r, :] · w[c, :]` for columns `first..last`, two columns and up to four
    /// rows at a time (eight running sums in registers).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `out` holds `m × n`, `x` `m × k`, `w` `n × k` values;
    /// no other thread touches these columns of `out` meanwhile.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_columns(
        out: *mut f32,
        x: *const f32,
        w: *const f32,
        (m, k, n): (usize, usize, usize),
        first: usize,
        last: usize,
    ) {
        let body = k / 8 * 8;
        let tail = |xr: *const f32, wr: *const f32| -> f32 {
            (body..k).map(|i| *xr.add(i) * *wr.add(i)).sum()
        };
        let mut c = first;
        while c < last {
            let cols = if c + 1 < last { 2 } else { 1 };
            let w0 = w.add(c * k);
            let w1 = w.add((c + cols - 1) * k);
            let mut r0 = 0;
            while r0 < m {
                let rows = (m - r0).min(4);
                // Rows past `m` repeat the last real row and are never stored.
                let xr = |j: usize| x.add((r0 + j.min(rows - 1)) * k);
                let (x0, x1, x2, x3) = (xr(0), xr(1), xr(2), xr(3));
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut i = 0;
                while i < body {
                    if r0 == 0 {
                        // The weight rows two column pairs ahead, on their way from memory.
                        let ahead = w0.add(4 * k + 2 * i);
                        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.add(16) as *const i8);
                    }
                    let a = _mm256_loadu_ps(w0.add(i));
                    let b = _mm256_loadu_ps(w1.add(i));
                    let v0 = _mm256_loadu_ps(x0.add(i));
                    let v1 = _mm256_loadu_ps(x1.add(i));
                    let v2 = _mm256_loadu_ps(x2.add(i));
                    let v3 = _mm256_loadu_ps(x3.add(i));
                    acc[0] = _mm256_fmadd_ps(v0, a, acc[0]);
                    acc[1] = _mm256_fmadd_ps(v1, a, acc[1]);
                    acc[2] = _mm256_fmadd_ps(v2, a, acc[2]);
                    acc[3] = _mm256_fmadd_ps(v3, a, acc[3]);
                    acc[4] = _mm256_fmadd_ps(v0, b, acc[4]);
                    acc[5] = _mm256_fmadd_ps(v1, b, acc[5]);
                    acc[6] = _mm256_fmadd_ps(v2, b, acc[6]);
                    acc[7] = _mm256_fmadd_ps(v3, b, acc[7]);
                    i += 8;
                }
                for j in 0..rows {
                    let xrow = xr(j);
                    *out.add((r0 + j) * n + c) += hsum(acc[j]) + tail(xrow, w0);
                    if cols == 2 {
                        *out.add((r0 + j) * n + c + 1) += hsum(acc[4 + j]) + tail(xrow, w1);
                    }
                }
                r0 += rows;
            }
            c += cols;
        }
    }
}

/// A slice that parallel workers may share through [`matmul_to`], each writing a disjoint
/// part of it.
#[derive(Clone, Copy)]
pub struct SharedMut(*mut f32, usize);

// SAFETY: writers go through `matmul_to`, whose callers promise disjoint regions.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Shares `xs`.
    pub fn new(xs: &mut [f32]) -> Self {
        SharedMut(xs.as_mut_ptr(), xs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -8000..8000 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "exp({x}) {got} vs {want}"
            );
        }
        // erf from tables (to 10 digits).
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_916),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (1.5, 0.966_105_15),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
            (-1.0, -0.842_700_8),
        ] {
            assert!(
                (erf(x) - want).abs() < 3e-7,
                "erf({x}) = {} not {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs: Vec<f32> = (-600..600).map(|i| i as f32 / 100.0).collect();
        let mut gelu = xs.clone();
        Activation::Gelu.apply(&mut gelu);
        let mut tanh = xs.clone();
        Activation::GeluTanh.apply(&mut tanh);
        for ((x, g), t) in xs.iter().zip(&gelu).zip(&tanh) {
            let want_t = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
            assert!((t - want_t).abs() < 1e-6, "gelu_tanh({x}) {t} vs {want_t}");
            // The two GELUs differ by less than 1e-3 everywhere.
            assert!((g - t).abs() < 1e-3, "gelu({x}) {g} vs tanh form {t}");
        }
        assert!(
            (gelu[700] - 0.841_344_7).abs() < 1e-6,
            "gelu(1) = {}",
            gelu[700]
        );
        let mut relu = vec![-1.0, 2.0];
        Activation::Relu.apply(&mut relu);
        assert_eq!(relu, vec![0.0, 2.0]);
    }

    #[test]
    fn layer_norm_and_softmax_rows() {
        let mut xs: Vec<f32> = (0..30).map(|i| (i as f32 * 0.37).sin()).collect();
        let orig = xs.clone();
        let gamma: Vec<f32> = (0..10).map(|i| 1.0 + i as f32 / 10.0).collect();
        let beta = vec![0.5; 10];
        layer_norm(&mut xs, &gamma, &beta, 1e-12);
        for (row, orig) in xs.chunks(10).zip(orig.chunks(10)) {
            let mean = orig.iter().sum::<f32>() / 10.0;
            let var = orig.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 10.0;
            for i in 0..10 {
                let want = (orig[i] - mean) / var.sqrt() * gamma[i] + beta[i];
                assert!((row[i] - want).abs() < 1e-5);
            }
        }
        let mut s = vec![1.0, 2.0, 3.0, 1000.0, 1000.0, -1000.0];
        softmax_rows(&mut s, 3);
        let e = [1f32.exp(), 2f32.exp(), 3f32.exp()];
        let total: f32 = e.iter().sum();
        for i in 0..3 {
            assert!((s[i] - e[i] / total).abs() < 1e-6);
        }
        assert!((s[3] - 0.5).abs() < 1e-6 && s[5] < 1e-30);
    }

    #[test]
    fn matmul_handles_views_scale_and_accumulation() {
        // a: 2x3, b: 3x2 given as the transpose of a 2x3 matrix.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bt = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]; // rows of b's columns
        let mut dst = vec![1.0; 4];
        matmul(
            (2, 3, 2),
            &mut dst,
            View::rows(0, 2),
            &a,
            View::rows(0, 3),
            &bt,
            View::transposed(0, 3),
            2.0,
            true,
            true,
        );
        // a·b = [[4, 5], [10, 11]]
        assert_eq!(dst, vec![9.0, 11.0, 21.0, 23.0]);
        let mut out = Vec::new();
        let w = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]; // [2, 3]
        linear(
            &a,
            &w,
            Some(&[10.0, 20.0]),
            Some(&[1.0, 1.0, 1.0, 1.0]),
            &mut out,
            (2, 3, 2),
        );
        assert_eq!(out, vec![15.0, 26.0, 21.0, 32.0]);
    }

    #[test]
    fn linear_agrees_with_a_plain_product_for_few_and_many_rows() {
        // k not a multiple of 8 and an odd n exercise the tails of the small-row kernel.
        let (k, n) = (37, 11);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
        for t in [1, 3, 5, SMALL_M, SMALL_M + 1, 40] {
            let x: Vec<f32> = (0..t * k)
                .map(|i| ((i * 104_729) % 97) as f32 / 40.0 - 1.2)
                .collect();
            let residual: Vec<f32> = (0..t * n).map(|i| i as f32 / 100.0).collect();
            let mut out = Vec::new();
            linear(&x, &w, Some(&bias), Some(&residual), &mut out, (t, k, n));
            for r in 0..t {
                for c in 0..n {
                    let dot: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                    let want = dot + bias[c] + residual[r * n + c];
                    let got = out[r * n + c];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "t={t} ({r}, {c}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
