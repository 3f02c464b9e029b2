//! 3x3, stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2015): the output is cut into 2x2 tiles, each
//! read from a 4x4 patch of the zero-padded input. A patch `d` is transformed to `V = Bᵀ d B`
//! and the weight `g` of each (output, input) channel pair to `U = G g Gᵀ` (once, at load), so
//! that the tile is `Aᵀ [Σ_c U ⊙ V] A`: the sum over input channels is 16 matrix products
//! (one per position of the 4x4 transformed patch, `[out, in]` times `[in, tiles]`) instead of
//! the direct method's nine over four times as many columns, 2.25x fewer multiplications.
//! The transforms are additions only (and the weight's halves, exact), done in `f32` over 8
//! tiles at a time; the weight's in `f64`, rounded once.
//!
//! The tiles are taken a few tile rows at a time (see [`conv`]), so that their transformed
//! input (16 x `in` x tiles) and products (16 x `out` x tiles) stay near the core.

use super::ops::{with_scratch, Disjoint};
use super::packed::{lhs_product, Packed, Rows};
use crate::kernels;
use rayon::prelude::*;
use std::cell::RefCell;

/// Positions of a transformed 4x4 patch: one matrix product each.
pub const POSITIONS: usize = 16;
/// Tiles transformed together (one vector register of AVX2 `f32`s).
const LANES: usize = 8;
/// Values of a job's transformed input plus its products, at least (a job is at least one
/// tile row).
const JOB_VALUES: usize = 1 << 18;

thread_local! {
    /// A band's transformed input (`16` x `in` x tiles).
    static TRANSFORMED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A band's products (`16` x `out` x tiles).
    static PRODUCTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The 16 transformed weights `U = G g Gᵀ` of `w` (`[out, in, 3, 3]`), each packed as an
/// `[out, in]` matrix for [`lhs_product`].
pub fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<Packed> {
    assert!(w.len() >= cout * cin * 9, "weight smaller than its shape");
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let pairs = cout * cin;
    (0..POSITIONS)
        .map(|position| {
            // U[r][c] = Σ_k Σ_l G[r][k] g[k][l] G[c][l]: nine coefficients per position.
            let (r, c) = (position / 4, position % 4);
            let coefficients: [f64; 9] = std::array::from_fn(|i| G[r][i / 3] * G[c][i % 3]);
            let matrix: Vec<f32> = (0..pairs)
                .into_par_iter()
                .map(|pair| {
                    let g = &w[pair * 9..][..9];
                    coefficients
                        .iter()
                        .zip(g)
                        .map(|(k, v)| k * *v as f64)
                        .sum::<f64>() as f32
                })
                .collect();
            Packed::lhs(&matrix, cout, cin)
        })
        .collect()
}

/// Tile rows and columns of an `oh` x `ow` output.
pub fn tiles(oh: usize, ow: usize) -> (usize, usize) {
    (oh.div_ceil(2), ow.div_ceil(2))
}

/// Height and width of the zero-padded input the tiles read: one zero row and column before,
/// and after as many as make whole tiles (at least one).
pub fn padded_size(oh: usize, ow: usize) -> (usize, usize) {
    let (th, tw) = tiles(oh, ow);
    (2 * th + 2, 2 * tw + 2)
}

/// Values read past the padded input by the last group of tiles (whose unused lanes read
/// on, and are never stored).
pub const SLACK: usize = 2 * LANES + 4;

/// The convolution of `padded` (`n` x `cin` planes of [`padded_size`], plus [`SLACK`]
/// values) by `weight` ([`transform_weights`]) into `out` (`n` x `cout` x `oh` x `ow`):
/// `bias` per batch row and output channel, plus `residual` when given, plus the
/// convolution; every value of `out` is written.
///
/// The tile rows of the whole batch are cut into jobs. Each job transforms its tiles' input,
/// runs the 16 products and transforms them back, so its buffers stay near the core; but
/// every job reads all 16 transformed weights, so a job's buffers may grow to a quarter of
/// the weights (the deep levels' large weights and few tiles make one or two jobs). Jobs run
/// in parallel when there are enough for whole rounds over the threads, else one after the
/// other with each product split over the threads.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    weight: &[Packed],
    padded: &[f32],
    (n, cin, cout): (usize, usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) {
    let (th, tw) = tiles(oh, ow);
    let (ph, pw) = padded_size(oh, ow);
    let pplane = ph * pw;
    assert!(
        padded.len() >= n * cin * pplane + SLACK,
        "padded input too small"
    );
    assert!(out.len() >= n * cout * oh * ow, "output too small");
    assert_eq!(weight.len(), POSITIONS, "Winograd weights");
    let all_rows = n * th;
    let budget = JOB_VALUES.max(cin * cout * POSITIONS / 4);
    let rows_per_job = (budget / (POSITIONS * (cin + cout) * tw)).clamp(1, all_rows);
    let threads = kernels::threads();
    let mut jobs = all_rows.div_ceil(rows_per_job);
    let parallel_jobs = threads > 1 && jobs >= 2 * threads;
    if parallel_jobs && !jobs.is_multiple_of(threads) {
        jobs = (jobs.div_ceil(threads) * threads).min(all_rows);
    }
    let rows_per_job = all_rows.div_ceil(jobs);
    let jobs = all_rows.div_ceil(rows_per_job);
    let plane = oh * ow;
    let shared = Disjoint::new(out);
    let job = |index: usize| {
        let r0 = index * rows_per_job;
        let r1 = (r0 + rows_per_job).min(all_rows);
        let t = (r1 - r0) * tw;
        with_scratch(&TRANSFORMED, POSITIONS * cin * t, |v| {
            for r in r0..r1 {
                let (b, ty) = (r / th, r % th);
                for c in 0..cin {
                    let row = &padded[(b * cin + c) * pplane + 2 * ty * pw..];
                    for tx in (0..tw).step_by(LANES) {
                        let lanes = LANES.min(tw - tx);
                        let at = c * t + (r - r0) * tw + tx;
                        transform_input(&row[2 * tx..], pw, v, cin * t, at, lanes);
                    }
                }
            }
            with_scratch(&PRODUCTS, POSITIONS * cout * t, |m| {
                for (position, u) in weight.iter().enumerate() {
                    lhs_product(
                        u,
                        v,
                        Rows::new(position * cin * t, t),
                        t,
                        m,
                        Rows::new(position * cout * t, t),
                        false,
                        !parallel_jobs,
                    );
                }
                for r in r0..r1 {
                    let (b, ty) = (r / th, r % th);
                    let rows = (oh - 2 * ty).min(2);
                    for o in 0..cout {
                        let at = (b * cout + o) * plane + 2 * ty * ow;
                        // SAFETY: each job writes only the output rows of its own tile rows:
                        // jobs never overlap, and `out` is not otherwise used meanwhile.
                        let dst = unsafe { shared.slice(at, rows * ow) };
                        let res = residual.map(|r| &r[at..][..rows * ow]);
                        let add = bias[b * cout + o];
                        for tx in (0..tw).step_by(LANES) {
                            let lanes = LANES.min(tw - tx);
                            let from = o * t + (r - r0) * tw + tx;
                            let y = transform_output(m, cout * t, from, lanes);
                            store(&y, (&mut *dst, res), (ow, rows, 2 * tx), lanes, add);
                        }
                    }
                }
            });
        });
    };
    if parallel_jobs {
        (0..jobs).into_par_iter().for_each(job);
    } else {
        (0..jobs).for_each(job);
    }
}

type Lanes = [f32; LANES];

/// `a - b`, lane by lane.
#[inline(always)]
fn sub(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] - b[l])
}

/// `a + b`, lane by lane.
#[inline(always)]
fn add(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] + b[l])
}

/// `Bᵀ d B` of the 4x4 patches of `lanes` tiles side by side, the first at `row[0]` (rows of
/// `pw`), written to `v[position · stride + at + lane]`. `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0],
/// [0, -1, 1, 0], [0, 1, 0, -1]]`.
#[inline(always)]
fn transform_input(row: &[f32], pw: usize, v: &mut [f32], stride: usize, at: usize, lanes: usize) {
    // d[r][s][lane]: patch row r, column s of tile `lane` (2 columns further each).
    let d: [[Lanes; 4]; 4] = std::array::from_fn(|r| {
        let src = &row[r * pw..][..2 * LANES + 2];
        std::array::from_fn(|s| std::array::from_fn(|l| src[2 * l + s]))
    });
    // Bᵀ d: combinations of rows.
    let mut bd = [[[0f32; LANES]; 4]; 4];
    for s in 0..4 {
        bd[0][s] = sub(&d[0][s], &d[2][s]);
        bd[1][s] = add(&d[1][s], &d[2][s]);
        bd[2][s] = sub(&d[2][s], &d[1][s]);
        bd[3][s] = sub(&d[1][s], &d[3][s]);
    }
    // (Bᵀ d) B: the same combinations of columns.
    for (r, x) in bd.iter().enumerate() {
        let out = [
            sub(&x[0], &x[2]),
            add(&x[1], &x[2]),
            sub(&x[2], &x[1]),
            sub(&x[1], &x[3]),
        ];
        for (s, values) in out.iter().enumerate() {
            let at = (r * 4 + s) * stride + at;
            // A constant length when whole: a vector store, not a call to `memcpy`.
            if lanes == LANES {
                v[at..][..LANES].copy_from_slice(values);
            } else {
                v[at..][..lanes].copy_from_slice(&values[..lanes]);
            }
        }
    }
}

/// `Aᵀ m A` of `lanes` tiles' 16 products (`m[position · stride + from + lane]`): the 2x2
/// outputs, `y[i][j][lane]`. `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
#[inline(always)]
fn transform_output(m: &[f32], stride: usize, from: usize, lanes: usize) -> [[Lanes; 2]; 2] {
    let x: [[Lanes; 4]; 4] = std::array::from_fn(|r| {
        std::array::from_fn(|s| {
            let at = (r * 4 + s) * stride + from;
            let mut values = [0f32; LANES];
            if lanes == LANES {
                values.copy_from_slice(&m[at..][..LANES]);
            } else {
                values[..lanes].copy_from_slice(&m[at..][..lanes]);
            }
            values
        })
    });
    // Aᵀ m (2 x 4), then (Aᵀ m) A (2 x 2).
    let am: [[Lanes; 4]; 2] = [
        std::array::from_fn(|s| add(&add(&x[0][s], &x[1][s]), &x[2][s])),
        std::array::from_fn(|s| sub(&sub(&x[1][s], &x[2][s]), &x[3][s])),
    ];
    am.map(|r| {
        [
            add(&add(&r[0], &r[1]), &r[2]),
            sub(&sub(&r[1], &r[2]), &r[3]),
        ]
    })
}

/// Writes `lanes` tiles' 2x2 outputs `y` plus `add` (plus the residual) to `dst`'s first
/// `rows` rows of `ow`, from column `x0`; columns past `ow` are dropped.
#[inline(always)]
fn store(
    y: &[[Lanes; 2]; 2],
    (dst, residual): (&mut [f32], Option<&[f32]>),
    (ow, rows, x0): (usize, usize, usize),
    lanes: usize,
    add: f32,
) {
    let cols = (2 * lanes).min(ow - x0);
    for (i, yi) in y.iter().enumerate().take(rows) {
        let mut values = [0f32; 2 * LANES];
        for l in 0..LANES {
            values[2 * l] = yi[0][l] + add;
            values[2 * l + 1] = yi[1][l] + add;
        }
        let at = i * ow + x0;
        match (residual, cols == 2 * LANES) {
            (Some(r), true) => {
                let (d, r) = (&mut dst[at..][..2 * LANES], &r[at..][..2 * LANES]);
                for ((d, v), r) in d.iter_mut().zip(&values).zip(r) {
                    *d = r + v;
                }
            }
            (Some(r), false) => {
                let (d, r) = (&mut dst[at..][..cols], &r[at..][..cols]);
                for ((d, v), r) in d.iter_mut().zip(&values).zip(r) {
                    *d = r + v;
                }
            }
            (None, true) => dst[at..][..2 * LANES].copy_from_slice(&values),
            (None, false) => dst[at..][..cols].copy_from_slice(&values[..cols]),
        }
    }
}
