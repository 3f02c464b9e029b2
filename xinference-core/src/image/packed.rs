//! Matrix products whose weight side is packed once, at load, for our own micro-kernels.
//!
//! The `gemm` crate packs both operands of every product into its own panel layout; for the
//! UNet's convolutions, run as many cache-sized products per layer, repacking the weights was a
//! tenth of the time. Here a weight matrix is laid out once in the panels the micro-kernel reads
//! (`[panel][k][width]`, zero-padded), and a product only packs the activation side, a panel
//! at a time, into a per-thread buffer that stays in L2. Tiles run over the whole of `k`, so
//! each tile of the output is written once (blocking `k` made the linear layers pass over
//! their large outputs several times).
//!
//! The micro-kernel computes a tile of `MR` rows by `NR` columns of `c += a · b` with the
//! columns in vector registers: the `a` side is broadcast value by value, the `b` side loaded
//! a row of `NR` at a time. Tiles are 12 x 32 with AVX-512, 6 x 16 with AVX2 + FMA, 4 x 8
//! otherwise, chosen at run time (a plain build targets SSE2 only).
//!
//! Two shapes of product:
//! - [`lhs_product`]: a packed weight on the left (`m` output channels x `k`) times activations
//!   stored `k` rows of `n` (NCHW planes, im2col matrices, the padded input of a 3x3
//!   convolution): the convolutions.
//! - [`rhs_product`]: activations stored as rows of `k` (tokens) times a packed linear weight
//!   (PyTorch's `[n, k]`, used transposed): the linear layers.

use super::tiles::{tile, Isa};
use crate::kernels;
use rayon::prelude::*;
use std::cell::RefCell;

/// Rows of `a` per block of [`rhs_product`] (a multiple of every `MR`): packed, they stay
/// in L2 while every column panel of the weight passes over them.
const MC: usize = 96;

/// A weight matrix packed for the micro-kernels: `outer` rows of `k` values (the output
/// channels of a convolution, or of a linear layer), in panels of `width` rows, each stored
/// `k`-major (`width` values per `k`) and zero-padded to a whole panel.
#[derive(Clone)]
pub struct Packed {
    data: Vec<f32>,
    outer: usize,
    k: usize,
    width: usize,
    isa: Isa,
}

impl Packed {
    /// Packs `w` (`outer` rows of `k` values, row-major) in panels of `width`.
    fn new(w: &[f32], outer: usize, k: usize, width: usize, isa: Isa) -> Self {
        assert!(w.len() >= outer * k, "weight smaller than its shape");
        let panels = outer.div_ceil(width);
        let mut data = vec![0f32; panels * k * width];
        data.par_chunks_mut(k * width)
            .enumerate()
            .for_each(|(panel, dst)| {
                for r in 0..width.min(outer - panel * width) {
                    let row = &w[(panel * width + r) * k..][..k];
                    for (p, v) in row.iter().enumerate() {
                        dst[p * width + r] = *v;
                    }
                }
            });
        Packed {
            data,
            outer,
            k,
            width,
            isa,
        }
    }

    /// A convolution's weight, `m` output channels of `k` values (`[out, in · kh · kw]`), for
    /// [`lhs_product`].
    pub fn lhs(w: &[f32], m: usize, k: usize) -> Self {
        let isa = Isa::detect();
        Packed::new(w, m, k, isa.tile().0, isa)
    }

    /// A linear layer's weight as PyTorch stores it (`[n, k]`), for [`rhs_product`] (which
    /// multiplies by its transpose).
    pub fn rhs(w: &[f32], n: usize, k: usize) -> Self {
        let isa = Isa::detect();
        Packed::new(w, n, k, isa.tile().1, isa)
    }

    /// Rows (output channels or features).
    pub fn outer(&self) -> usize {
        self.outer
    }

    /// Values per row.
    pub fn inner(&self) -> usize {
        self.k
    }

    /// The `width` x `kc` values of panel `panel` from `k` index `p0`.
    fn panel(&self, panel: usize, p0: usize) -> *const f32 {
        self.data[(panel * self.k + p0) * self.width..].as_ptr()
    }
}

/// Where one operand or the result lives in its slice: element `(r, c)` at
/// `offset + r · stride + c`.
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Distance between rows.
    pub stride: usize,
}

impl Rows {
    /// Rows of `stride` values from `offset`.
    pub fn new(offset: usize, stride: usize) -> Self {
        Rows { offset, stride }
    }

    fn end(&self, rows: usize, cols: usize) -> usize {
        self.offset + (rows - 1) * self.stride + cols
    }
}

thread_local! {
    /// Packed activations: a panel of `k` x `NR` ([`lhs_product`]) or a block of rows ([`rhs_product`]).
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A raw output that parallel parts write in disjoint pieces.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: only a pointer; every part writes its own columns or rows.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// The element `at` values in.
    ///
    /// # Safety
    /// `at` lies inside the output.
    unsafe fn at(self, at: usize) -> *mut f32 {
        self.0.add(at)
    }
}

/// `c[m×n] = (accumulate ? c : 0) + a · b`: `a` a packed weight ([`Packed::lhs`], `m` x
/// `k`), `b` `k` rows of `n` values. Columns are spread over the pool when `parallel` is set
/// and the product is large.
#[allow(clippy::too_many_arguments)]
pub fn lhs_product(
    a: &Packed,
    b: &[f32],
    b_rows: Rows,
    n: usize,
    c: &mut [f32],
    c_rows: Rows,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k) = (a.outer, a.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c_rows.end(m, n) <= c.len(), "lhs_product: c out of bounds");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[c_rows.offset + r * c_rows.stride..][..n].fill(0.0);
            }
        }
        return;
    }
    assert!(b_rows.end(k, n) <= b.len(), "lhs_product: b out of bounds");
    let (mr, nr) = a.isa.tile();
    // Threads split the weight's row panels (each packs the activations it needs itself: a
    // small cost beside the product), which balances well however few columns there are.
    let row_panels = m.div_ceil(mr);
    let parts = if parallel && m * n * k >= kernels::PARALLEL_WORK && kernels::threads() > 1 {
        kernels::threads().min(row_panels)
    } else {
        1
    };
    let per_part = row_panels.div_ceil(parts);
    let out = Out(c.as_mut_ptr());
    let run = |part: usize| {
        let first = part * per_part;
        let last = (first + per_part).min(row_panels);
        with_panel(k * nr, |panel| {
            for jp in 0..n.div_ceil(nr) {
                let j0 = jp * nr;
                let cols = nr.min(n - j0);
                // All of `k` at once: each tile of `c` is written once.
                pack_columns(b, b_rows, (0, k), (j0, cols), nr, panel);
                for ip in first..last {
                    let rows = mr.min(m - ip * mr);
                    let at = c_rows.offset + ip * mr * c_rows.stride + j0;
                    // SAFETY: `a`'s panel holds `k` x `mr` values, the packed panel `k` x
                    // `nr`, and `c` the `rows` x `cols` values at `at` (checked above); parts
                    // write disjoint rows.
                    unsafe {
                        tile(
                            a.isa,
                            k,
                            a.panel(ip, 0),
                            panel.as_ptr(),
                            (out.at(at), c_rows.stride),
                            (rows, cols),
                            accumulate,
                        )
                    }
                }
            }
        });
    };
    if parts > 1 {
        (0..parts).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// `c[m×n] = (accumulate ? c : 0) + a · wᵀ`: `a` `m` rows of `k` values, `w` a packed linear
/// weight ([`Packed::rhs`], `n` x `k`). Blocks of rows are spread over the pool when
/// `parallel` is set and the product is large.
#[allow(clippy::too_many_arguments)]
pub fn rhs_product(
    a: &[f32],
    a_rows: Rows,
    m: usize,
    w: &Packed,
    c: &mut [f32],
    c_rows: Rows,
    accumulate: bool,
    parallel: bool,
) {
    let (n, k) = (w.outer, w.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c_rows.end(m, n) <= c.len(), "rhs_product: c out of bounds");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[c_rows.offset + r * c_rows.stride..][..n].fill(0.0);
            }
        }
        return;
    }
    assert!(a_rows.end(m, k) <= a.len(), "rhs_product: a out of bounds");
    let (mr, nr) = w.isa.tile();
    let blocks = m.div_ceil(MC);
    let parallel =
        parallel && blocks > 1 && m * n * k >= kernels::PARALLEL_WORK && kernels::threads() > 1;
    let out = Out(c.as_mut_ptr());
    let run = |block: usize| {
        let i_first = block * MC;
        let i_last = (i_first + MC).min(m);
        let panels = (i_last - i_first).div_ceil(mr);
        with_panel(panels * k * mr, |packed_a| {
            // This block's rows, all of `k`, in panels of `mr` rows: each tile of `c` is
            // then written once.
            for (ip, panel) in packed_a.chunks_exact_mut(k * mr).take(panels).enumerate() {
                let i0 = i_first + ip * mr;
                pack_rows(a, a_rows, (i0, mr.min(i_last - i0)), (0, k), mr, panel);
            }
            for jp in 0..n.div_ceil(nr) {
                let j0 = jp * nr;
                let cols = nr.min(n - j0);
                for ip in 0..panels {
                    let i0 = i_first + ip * mr;
                    let rows = mr.min(i_last - i0);
                    let at = c_rows.offset + i0 * c_rows.stride + j0;
                    // SAFETY: the packed panels hold `k` x `mr` values, `w`'s panel `k` x
                    // `nr`, and `c` the tile at `at` (checked above); blocks write disjoint
                    // rows.
                    unsafe {
                        tile(
                            w.isa,
                            k,
                            packed_a[ip * k * mr..].as_ptr(),
                            w.panel(jp, 0),
                            (out.at(at), c_rows.stride),
                            (rows, cols),
                            accumulate,
                        )
                    }
                }
            }
        });
    };
    if parallel {
        (0..blocks).into_par_iter().for_each(run);
    } else {
        (0..blocks).for_each(run);
    }
}

/// Runs `f` with this thread's panel buffer of `len` values.
fn with_panel<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = PANEL.with(|b| b.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    PANEL.with(|b| b.replace(buf));
    r
}

/// Copies `b`'s rows `p0..p0 + kc`, columns `j0..j0 + cols` into `panel` (`kc` rows of `nr`,
/// the columns past `cols` zero).
fn pack_columns(
    b: &[f32],
    b_rows: Rows,
    (p0, kc): (usize, usize),
    (j0, cols): (usize, usize),
    nr: usize,
    panel: &mut [f32],
) {
    for (p, dst) in panel.chunks_exact_mut(nr).take(kc).enumerate() {
        let src = &b[b_rows.offset + (p0 + p) * b_rows.stride + j0..][..cols];
        // A loop, not `copy_from_slice`: a call to `memcpy` per 32 values cost more.
        for (d, v) in dst.iter_mut().zip(src) {
            *d = *v;
        }
        dst[cols..].fill(0.0);
    }
}

/// Copies `a`'s rows `i0..i0 + rows`, values `p0..p0 + kc`, into `panel` (`kc` groups of
/// `mr`, one value per row; rows past `rows` zero).
fn pack_rows(
    a: &[f32],
    a_rows: Rows,
    (i0, rows): (usize, usize),
    (p0, kc): (usize, usize),
    mr: usize,
    panel: &mut [f32],
) {
    for r in 0..mr {
        if r < rows {
            let src = &a[a_rows.offset + (i0 + r) * a_rows.stride + p0..][..kc];
            for (p, v) in src.iter().enumerate() {
                panel[p * mr + r] = *v;
            }
        } else {
            for p in 0..kc {
                panel[p * mr + r] = 0.0;
            }
        }
    }
}

/// `dst[cols×rows] = srcᵀ` for `src` `rows` x `cols` (row-major), in cache-sized blocks.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 32;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    // Bands of `B` destination rows (source columns) are independent.
    dst[..rows * cols]
        .par_chunks_mut(B * rows)
        .enumerate()
        .for_each(|(band, out)| {
            let c0 = band * B;
            let cn = B.min(cols - c0);
            for r0 in (0..rows).step_by(B) {
                for r in r0..(r0 + B).min(rows) {
                    let srow = &src[r * cols + c0..][..cn];
                    for (j, v) in srow.iter().enumerate() {
                        out[j * rows + r] = *v;
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::image::ops::tests::values(n, seed)
    }

    /// Every tile family (the CPU's and the portable one), odd sizes on every axis (edge
    /// tiles, several `k` blocks), both product shapes, with and without accumulation.
    #[test]
    fn products_match_the_plain_sum() {
        let mut families = vec![Isa::Portable, Isa::detect()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            families.push(Isa::Avx2);
        }
        for isa in families {
            let (mr, nr) = isa.tile();
            for (m, k, n) in [
                (1, 1, 1),
                (mr + 3, 317, 2 * nr + 5),
                (2 * MC + 7, 40, nr - 1),
                (25, 300, 70),
                (7, 50, nr + 40),
                (7, 50, nr + 24),
            ] {
                let w = values(m * k, 1);
                let x = values(k * (n + 3), 2);
                let start = values(m * (n + 2), 3);
                let plain = |r: usize, col: usize, init: f32| -> f32 {
                    init + (0..k)
                        .map(|p| w[r * k + p] * x[p * (n + 3) + col])
                        .sum::<f32>()
                };
                for accumulate in [false, true] {
                    // Convolution shape: c[m×n] = w · x, x rows of n + 3, c rows of n + 2.
                    let packed = Packed::new(&w, m, k, mr, isa);
                    let mut c = start.clone();
                    lhs_product(
                        &packed,
                        &x,
                        Rows::new(0, n + 3),
                        n,
                        &mut c,
                        Rows::new(0, n + 2),
                        accumulate,
                        true,
                    );
                    for r in 0..m {
                        for col in 0..n {
                            let init = if accumulate {
                                start[r * (n + 2) + col]
                            } else {
                                0.0
                            };
                            let want = plain(r, col, init);
                            let got = c[r * (n + 2) + col];
                            assert!(
                                (got - want).abs() < 1e-3,
                                "{isa:?} lhs {m}x{k}x{n} ({r}, {col}): {got} vs {want}"
                            );
                        }
                        assert_eq!(
                            c[r * (n + 2) + n],
                            start[r * (n + 2) + n],
                            "column past n untouched"
                        );
                    }
                    // Linear shape: cᵀ = xᵀ · wᵀ, i.e. rows of tokens times the weight.
                    let xt: Vec<f32> = (0..n)
                        .flat_map(|col| (0..k).map(move |p| (col, p)))
                        .map(|(col, p)| x[p * (n + 3) + col])
                        .collect();
                    let packed = Packed::new(&w, m, k, nr, isa);
                    let mut ct = values(n * m, 4);
                    let ct_start = ct.clone();
                    rhs_product(
                        &xt,
                        Rows::new(0, k),
                        n,
                        &packed,
                        &mut ct,
                        Rows::new(0, m),
                        accumulate,
                        true,
                    );
                    for col in 0..n {
                        for r in 0..m {
                            let init = if accumulate {
                                ct_start[col * m + r]
                            } else {
                                0.0
                            };
                            let want = plain(r, col, init);
                            let got = ct[col * m + r];
                            assert!(
                                (got - want).abs() < 1e-3,
                                "{isa:?} rhs {m}x{k}x{n} ({col}, {r}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        for (rows, cols) in [(1, 1), (3, 70), (45, 33)] {
            let src = values(rows * cols, 5);
            let mut dst = vec![0f32; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(dst[c * rows + r], src[r * cols + c]);
                }
            }
        }
    }
}
