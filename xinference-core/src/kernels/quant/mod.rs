//! Our quantized matrix products: GGUF weights (read in place, as candle stores them) times f32
//! activations rounded to 8-bit blocks, the way llama.cpp's CPU backend computes them.
//!
//! - [`activation`]: activation rows rounded to Q8_0 / Q8_1 / Q8_K blocks.
//! - [`scalar`]: the portable dot products, which also define the numbers: exact integer sums,
//!   then a fixed order of float operations.
//! - `x86`: AVX2 + FMA kernels, and AVX-512 VNNI ones, chosen at run time; they give the same
//!   bits as the portable ones, so an answer never depends on the CPU.
//! - [`QuantMatrix::matmul`]: decode rows (matrix-vector) and prompt rows (each weight block is
//!   unpacked once for four activation rows) over the compute threads. A row's result is the
//!   same whatever rows are computed beside it, so batched decode steps and prompts fed in
//!   parts give the bits of rows computed alone.
//!
//! `XINFERENCE_QUANT_TIER=scalar|avx2|avx512vnni` forces a tier (never one the CPU lacks);
//! `MISTRALRS_FORCE_AVX2=1` (candle's switch) also caps it at AVX2.

pub mod activation;
pub mod format;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

use super::SharedMut;
use activation::{ActRow, Acts};
use format::Format;
use rayon::prelude::*;
use scalar::DotFn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static K_TILES: AtomicBool = AtomicBool::new(true);

/// Turns the prompt tiles of Q4_K and Q6_K on or off (A/B benchmarks in one process; on by
/// default). Either way the products give the same bits.
#[doc(hidden)]
pub fn set_k_tiles(on: bool) {
    K_TILES.store(on, Ordering::Relaxed);
}

/// A set of kernels, by the CPU features they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Plain Rust, any CPU.
    Scalar,
    /// AVX2, FMA and F16C.
    Avx2,
    /// [`Tier::Avx2`] plus AVX-512 F/VL/VNNI (`vpdpbusd` on 256-bit vectors).
    Avx512Vnni,
}

impl Tier {
    /// The best tier this CPU has.
    pub fn best() -> Tier {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512f") && has!("avx512vl") && has!("avx512vnni") {
                    return Tier::Avx512Vnni;
                }
                return Tier::Avx2;
            }
        }
        Tier::Scalar
    }

    /// Every tier this CPU has, lowest first.
    pub fn available() -> Vec<Tier> {
        let best = Tier::best();
        [Tier::Scalar, Tier::Avx2, Tier::Avx512Vnni]
            .into_iter()
            .filter(|t| *t <= best)
            .collect()
    }

    /// The tier in use: the best one, capped by `XINFERENCE_QUANT_TIER` or
    /// `MISTRALRS_FORCE_AVX2` (read once).
    pub fn current() -> Tier {
        static TIER: OnceLock<Tier> = OnceLock::new();
        *TIER.get_or_init(|| {
            let mut tier = Tier::best();
            if std::env::var("MISTRALRS_FORCE_AVX2").is_ok_and(|v| !v.is_empty() && v != "0") {
                tier = tier.min(Tier::Avx2);
            }
            match std::env::var("XINFERENCE_QUANT_TIER").as_deref() {
                Ok("scalar") => tier = Tier::Scalar,
                Ok("avx2") => tier = tier.min(Tier::Avx2),
                Ok("avx512vnni") | Ok("") | Err(_) => {}
                Ok(other) => tracing::warn!(
                    "XINFERENCE_QUANT_TIER={other} is not scalar, avx2 or avx512vnni: ignored"
                ),
            }
            tier
        })
    }
}

/// The kernel of `format` for `R` activation rows on `tier` (lowered to what the CPU has).
pub fn kernel<const R: usize>(format: Format, tier: Tier) -> DotFn<R> {
    #[cfg(target_arch = "x86_64")]
    {
        match tier.min(Tier::best()) {
            // SAFETY: `Tier::best` found the tier's features on this CPU.
            Tier::Avx512Vnni => return unsafe { x86::vnni::kernel::<R>(format) },
            // SAFETY: as above.
            Tier::Avx2 => return unsafe { x86::avx2::kernel::<R>(format) },
            Tier::Scalar => {}
        }
    }
    let _ = tier;
    scalar::kernel::<R>(format)
}

/// Activation rows computed together against each weight row read.
const GROUP: usize = 4;
/// Weight rows of a prompt tile: [`TileFn`] computes `TILE × GROUP` outputs at once.
const TILE: usize = 4;

/// A tile kernel: `TILE` weight rows (whole blocks, the same count each) against `GROUP`
/// activation rows, `out[i][j]` = weight row `i` · activation row `j`, the bits of the
/// [`DotFn`] kernels.
pub type TileFn = fn(&[&[u8]; TILE], &[ActRow<'_>; GROUP]) -> [[f32; GROUP]; TILE];

/// The tile kernel of `format` on `tier`, where it has one (the small-block formats, Q4_K and
/// Q6_K on the AVX2 tiers).
pub fn tile_kernel(format: Format, tier: Tier) -> Option<TileFn> {
    #[cfg(target_arch = "x86_64")]
    {
        match tier.min(Tier::best()) {
            // SAFETY: `Tier::best` found the tier's features on this CPU.
            Tier::Avx512Vnni => return unsafe { x86::vnni::tile_kernel(format) },
            // SAFETY: as above.
            Tier::Avx2 => return unsafe { x86::avx2::tile_kernel(format) },
            Tier::Scalar => {}
        }
    }
    let _ = (format, tier);
    None
}

/// A decode kernel: one activation row against `out.len()` weight rows (whole blocks, the
/// same count each, one after the other in the bytes), `out[i]` = weight row `i` · the row,
/// the bits of the [`DotFn`] kernels. The loop over the rows runs inside the kernel: a
/// call, and the bounds checks, per run of rows instead of per row (a row of SmolLM2's
/// 576 values is only 18 blocks).
pub type RowsFn = fn(&[u8], &ActRow<'_>, &mut [f32]);

/// The decode kernel of `format` on `tier`, where it has one (every format but Q2_K and
/// Q3_K on the AVX2 tiers).
pub fn rows_kernel(format: Format, tier: Tier) -> Option<RowsFn> {
    #[cfg(target_arch = "x86_64")]
    {
        match tier.min(Tier::best()) {
            // SAFETY: `Tier::best` found the tier's features on this CPU.
            Tier::Avx512Vnni => return unsafe { x86::vnni::rows_kernel(format) },
            // SAFETY: as above.
            Tier::Avx2 => return unsafe { x86::avx2::rows_kernel(format) },
            Tier::Scalar => {}
        }
    }
    let _ = (format, tier);
    None
}

/// Weight rows unpacked for the prompt products (see [`PanelKernel`]): each block's 32 values
/// (eight chunks of 32 per k-quant super-block) as the bytes the products take, its scale and
/// its minimum as f32 (and a k-quant's scale vectors); and scratch for the activation side.
#[derive(Default)]
pub struct Panel {
    /// Values, `nb` blocks per row, row after row.
    vals: Vec<Bytes32>,
    /// Scales, as `vals`.
    d: Vec<f32>,
    /// Minimums (0 for the formats without one), as `vals`.
    m: Vec<f32>,
    /// Per block and activation row, the lanes the products start from.
    starts: Vec<Bytes32>,
    /// Q4_K / Q6_K: each 32-value chunk's scale vector, as `vals` (eight per super-block).
    scales: Vec<Bytes32>,
    /// Q4_K's minimums, Q6_K's scales, per super-block.
    extra: Vec<Bytes32>,
    /// Rows held.
    rows: usize,
    /// Blocks per row.
    nb: usize,
}

/// 32 bytes aligned for a vector load.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Bytes32(#[allow(dead_code)] [u8; 32]);

/// The prompt products of a small-block format (Q4_0 .. Q8_0), Q4_K or Q6_K on a tier:
/// `unpack` puts a run of whole weight rows (`rows` of them, one after the other in the bytes)
/// into a [`Panel`] once, then `run` multiplies all of them (a multiple of 4) with each
/// group of activation rows, `out[i][j]` = panel row `i` · activation row `j`, the bits of the
/// [`DotFn`] kernels.
#[derive(Clone, Copy)]
pub struct PanelKernel {
    /// Unpacks weight rows into the panel.
    pub unpack: fn(&[u8], usize, &mut Panel),
    /// The panel's rows against a group of activation rows.
    pub run: fn(&mut Panel, &[ActRow<'_>; GROUP], &mut [[f32; GROUP]]),
}

/// The panel kernel of `format` on `tier`, where it has one (the small-block formats, Q4_K
/// and Q6_K on the AVX2 tiers).
pub fn panel_kernel(format: Format, tier: Tier) -> Option<PanelKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        match tier.min(Tier::best()) {
            // SAFETY: `Tier::best` found the tier's features on this CPU.
            Tier::Avx512Vnni => return unsafe { x86::vnni::panel_kernel(format) },
            // SAFETY: as above.
            Tier::Avx2 => return unsafe { x86::avx2::panel_kernel(format) },
            Tier::Scalar => {}
        }
    }
    let _ = (format, tier);
    None
}

static PANELS: AtomicBool = AtomicBool::new(true);

/// Turns the prompt panels on or off (off: the tiles that unpack each weight block for every
/// group of activation rows; A/B benchmarks in one process).
/// Either way the products give the same bits.
#[doc(hidden)]
pub fn set_panels(on: bool) {
    PANELS.store(on, Ordering::Relaxed);
}

/// Bytes of a weight row of `k` values of `format` unpacked in a [`Panel`].
fn panel_row_bytes(format: Format, k: usize) -> usize {
    match format {
        // Eight chunks and eight scale vectors, the minimums or scales, two floats.
        Format::Q4K | Format::Q6K => k / format::QK_K * (16 * 32 + 32 + 8),
        // 32 values, two floats.
        _ => k / format::QK * 40,
    }
}

/// Bytes of unpacked weight rows a thread keeps in its L1 / L2 cache while the activation
/// groups pass.
const PANEL_BYTES: usize = 24 << 10;

/// Activation rows from which a product runs the tile kernels: they pay when each tile of
/// weights, kept in L1, serves many activation groups (prompt rows). Batched decode steps of
/// 4 sequences took 1.35x the CPU per token through the tiles than through the four-row
/// kernels, 8 sequences 1.15-1.2x (`benches/llm_batch.rs`, SmolLM2 Q4_1 and Qwen2.5 Q4_K_M,
/// AVX-512 VNNI tier): each weight block serves only one or two groups there.
const TILE_MIN_ROWS: usize = 16;
/// Bytes of weight rows a thread keeps in its L1 cache while the activation groups pass.
const TILE_BYTES: usize = 16 << 10;
/// From this many weight bytes times rows a product is split over the compute threads.
const PARALLEL_BYTES: usize = 1 << 17;

/// A quantized weight matrix `[n, k]` (PyTorch's layout of a linear layer), borrowed as
/// GGUF blocks.
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrix<'a> {
    format: Format,
    bytes: &'a [u8],
    n: usize,
    k: usize,
}

impl<'a> QuantMatrix<'a> {
    /// `n` rows of `k` values of `format` in `bytes`; `None` unless the sizes fit.
    pub fn new(format: Format, bytes: &'a [u8], n: usize, k: usize) -> Option<Self> {
        let per_row = k.checked_div(format.block_values())? * format.block_bytes();
        (k.is_multiple_of(format.block_values()) && bytes.len() == per_row * n).then_some(
            QuantMatrix {
                format,
                bytes,
                n,
                k,
            },
        )
    }

    /// The weight format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Output values per row (the weight rows).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `out[rows × n] = x[rows × k] · wᵀ` on the current [`Tier`].
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) {
        self.matmul_on(Tier::current(), x, out)
    }

    /// [`QuantMatrix::matmul`] on `tier`.
    pub fn matmul_on(&self, tier: Tier, x: &[f32], out: &mut [f32]) {
        let acts = Acts::quantize(self.format.act_format(), x, self.k);
        self.matmul_acts(tier, &acts, out);
    }

    /// `out = acts · wᵀ` for activations already rounded to this format's [`Format::act_format`].
    pub fn matmul_acts(&self, tier: Tier, acts: &Acts, out: &mut [f32]) {
        matmul_many(
            tier,
            &mut [Product {
                matrix: *self,
                acts,
                out,
            }],
        );
    }

    /// Output columns `first..last` of `out = acts · wᵀ` (`out` holds `acts.rows() × n`
    /// values; the caller gives each worker its own columns).
    fn columns(&self, tier: Tier, acts: &Acts, out: SharedMut, first: usize, last: usize) {
        let (n, rows) = (self.n, acts.rows());
        let group = kernel::<GROUP>(self.format, tier);
        // Panels and tiles for prompts only (see `TILE_MIN_ROWS`).
        let prompt = rows >= TILE_MIN_ROWS;
        let panels =
            panel_kernel(self.format, tier).filter(|_| prompt && PANELS.load(Ordering::Relaxed));
        let tiled = tile_kernel(self.format, tier).filter(|_| {
            prompt
                && panels.is_none()
                && (!matches!(self.format, Format::Q4K | Format::Q6K)
                    || K_TILES.load(Ordering::Relaxed))
        });
        let row_bytes = self.bytes.len() / n;
        // Whole tiles of `TILE` weight rows where the tile kernel runs; a panel holds its
        // rows unpacked (32 value bytes, a scale and a minimum per block).
        let tile = match panels {
            Some(_) => (PANEL_BYTES / panel_row_bytes(self.format, self.k).max(1))
                .clamp(1, 64)
                .next_multiple_of(TILE),
            None => (TILE_BYTES / row_bytes.max(1))
                .clamp(1, 64)
                .next_multiple_of(if tiled.is_some() { TILE } else { 1 }),
        };
        let SharedMut(out, len) = out;
        let put = |r: usize, c: usize, v: f32| {
            debug_assert!(r * n + c < len);
            // SAFETY: `out` holds rows × n values and each worker writes only its own
            // columns `first..last`.
            unsafe { *out.add(r * n + c) = v };
        };
        let mut panel = Panel::default();
        let mut got = vec![[0f32; GROUP]; if panels.is_some() { tile } else { 0 }];
        for t0 in (first..last).step_by(tile) {
            let t1 = (t0 + tile).min(last);
            // Weight rows `t0..t0 + whole` go through the panel.
            let whole = if panels.is_some() {
                (t1 - t0) / TILE * TILE
            } else {
                0
            };
            if let Some(p) = panels.filter(|_| whole > 0) {
                (p.unpack)(
                    &self.bytes[t0 * row_bytes..(t0 + whole) * row_bytes],
                    whole,
                    &mut panel,
                );
            }
            let mut r = 0;
            while r + GROUP <= rows {
                let a: [ActRow<'_>; GROUP] = std::array::from_fn(|i| acts.row(r + i));
                let mut c = t0;
                if let Some(p) = panels.filter(|_| whole > 0) {
                    (p.run)(&mut panel, &a, &mut got[..whole]);
                    for (i, outs) in got[..whole].iter().enumerate() {
                        for (j, v) in outs.iter().enumerate() {
                            put(r + j, t0 + i, *v);
                        }
                    }
                    c += whole;
                }
                if let Some(tiled) = tiled {
                    while c + TILE <= t1 {
                        let w: [&[u8]; TILE] = std::array::from_fn(|i| {
                            &self.bytes[(c + i) * row_bytes..(c + i + 1) * row_bytes]
                        });
                        for (i, outs) in tiled(&w, &a).into_iter().enumerate() {
                            for (j, v) in outs.into_iter().enumerate() {
                                put(r + j, c + i, v);
                            }
                        }
                        c += TILE;
                    }
                }
                for c in c..t1 {
                    let w = &self.bytes[c * row_bytes..(c + 1) * row_bytes];
                    for (i, v) in group(w, &a).into_iter().enumerate() {
                        put(r + i, c, v);
                    }
                }
                r += GROUP;
            }
            self.last_rows(tier, acts, r, t0..t1, &put);
        }
    }

    /// The activation rows from `r` on (fewer than a group) against weight rows `cols`: the
    /// last two or three rows together (each weight block unpacked once for them: batched
    /// decode steps of two or three sequences cost 0.6-0.75x the CPU per token of rows
    /// computed one by one).
    fn last_rows(
        &self,
        tier: Tier,
        acts: &Acts,
        r: usize,
        cols: std::ops::Range<usize>,
        put: &impl Fn(usize, usize, f32),
    ) {
        let row_bytes = self.bytes.len() / self.n;
        let weights = |c: usize| &self.bytes[c * row_bytes..(c + 1) * row_bytes];
        match acts.rows() - r {
            3 => {
                let three = kernel::<3>(self.format, tier);
                let a: [ActRow<'_>; 3] = std::array::from_fn(|i| acts.row(r + i));
                for c in cols {
                    for (i, v) in three(weights(c), &a).into_iter().enumerate() {
                        put(r + i, c, v);
                    }
                }
            }
            2 => {
                let two = kernel::<2>(self.format, tier);
                let a: [ActRow<'_>; 2] = std::array::from_fn(|i| acts.row(r + i));
                for c in cols {
                    for (i, v) in two(weights(c), &a).into_iter().enumerate() {
                        put(r + i, c, v);
                    }
                }
            }
            1 => {
                let a = [acts.row(r)];
                let Some(rows_of) = rows_kernel(self.format, tier) else {
                    let one = kernel::<1>(self.format, tier);
                    for c in cols {
                        put(r, c, one(weights(c), &a)[0]);
                    }
                    return;
                };
                let mut got = [0f32; 64];
                for first in cols.clone().step_by(got.len()) {
                    let last = (first + got.len()).min(cols.end);
                    let got = &mut got[..last - first];
                    rows_of(&self.bytes[first * row_bytes..last * row_bytes], &a[0], got);
                    for (i, v) in got.iter().enumerate() {
                        put(r, first + i, *v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// One product of [`matmul_many`]: `out = acts · wᵀ`, with `acts` already rounded to the
/// matrix's [`Format::act_format`] and `out` holding `acts.rows() × n` values.
pub struct Product<'a, 'b> {
    /// The weights.
    pub matrix: QuantMatrix<'a>,
    /// The rounded activations.
    pub acts: &'b Acts,
    /// The result, row-major.
    pub out: &'b mut [f32],
}

/// Several products in one pass over the compute threads (the q, k and v projections of one
/// input, a feed-forward's gate and up): the threads are woken once, and small products that
/// would not be worth a pass of their own share one. Each value is computed by the same
/// kernel as alone, so the results are the bits of separate products.
pub fn matmul_many(tier: Tier, products: &mut [Product<'_, '_>]) {
    let mut work = 0;
    for p in products.iter() {
        let (n, rows) = (p.matrix.n, p.acts.rows());
        assert!(p.acts.k == p.matrix.k && p.acts.format == p.matrix.format.act_format());
        assert_eq!(p.out.len(), rows * n);
        work += p.matrix.bytes.len() * rows;
    }
    let threads = super::threads();
    let parallel = work >= PARALLEL_BYTES && threads > 1;
    // (product, first column, last column) per task.
    let mut tasks = Vec::new();
    let outs: Vec<SharedMut> = products
        .iter_mut()
        .map(|p| SharedMut::new(&mut *p.out))
        .collect();
    for (i, p) in products.iter().enumerate() {
        let n = p.matrix.n;
        if n == 0 || p.acts.rows() == 0 {
            continue;
        }
        // A few parts per thread, so a thread slowed by another process does not hold up
        // the pass.
        let parts = if parallel {
            (threads * 4).min(n.div_ceil(8)).max(1)
        } else {
            1
        };
        let per = n.div_ceil(parts);
        for part in 0..parts {
            let (first, last) = ((part * per).min(n), ((part + 1) * per).min(n));
            if first < last {
                tasks.push((i, first, last));
            }
        }
    }
    let inputs: Vec<(QuantMatrix<'_>, &Acts)> =
        products.iter().map(|p| (p.matrix, p.acts)).collect();
    let run = |&(i, first, last): &(usize, usize, usize)| {
        let (matrix, acts) = inputs[i];
        matrix.columns(tier, acts, outs[i], first, last);
    };
    if parallel && tasks.len() > 1 {
        tasks.par_iter().for_each(run);
    } else {
        tasks.iter().for_each(run);
    }
}

/// Whether the GGUF decoder's quantized products run on these kernels: yes unless
/// `XINFERENCE_QUANT_KERNELS=0` (read once; candle's `QMatMul` then computes them, for A/B
/// benchmarks) or [`set_enabled`] turned them off.
pub fn enabled() -> bool {
    static FROM_ENV: OnceLock<()> = OnceLock::new();
    FROM_ENV.get_or_init(|| {
        if std::env::var("XINFERENCE_QUANT_KERNELS").is_ok_and(|v| v == "0") {
            ENABLED.store(false, Ordering::Relaxed);
        }
    });
    ENABLED.load(Ordering::Relaxed)
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns [`enabled`] on or off (A/B benchmarks in one process).
#[doc(hidden)]
pub fn set_enabled(on: bool) {
    enabled();
    ENABLED.store(on, Ordering::Relaxed);
}

/// `x · wᵀ` for a candle quantized tensor `w` `[n, k]` and `x` `[.., k]`, through our
/// kernels; `None` when the weight format has no kernel here (floats) or they are not
/// [`enabled`].
pub fn qtensor_matmul(
    w: &candle_core::quantized::QTensor,
    x: &candle_core::Tensor,
) -> candle_core::Result<Option<candle_core::Tensor>> {
    Ok(qtensor_matmuls(&[w], x)?.map(|mut ys| ys.remove(0)))
}

/// `x · wᵀ` for each of `ws` (candle quantized tensors `[n_i, k]`) and the same `x`
/// `[.., k]`: the activations are rounded once per format they need and the products share
/// one pass over the threads ([`matmul_many`]). `None` unless every format has a kernel here
/// and they are [`enabled`].
pub fn qtensor_matmuls(
    ws: &[&candle_core::quantized::QTensor],
    x: &candle_core::Tensor,
) -> candle_core::Result<Option<Vec<candle_core::Tensor>>> {
    if !enabled() {
        return Ok(None);
    }
    let k = x.dim(candle_core::D::Minus1)?;
    let mut data = Vec::with_capacity(ws.len());
    for w in ws {
        let Some(format) = Format::of(w.dtype()) else {
            return Ok(None);
        };
        let (n, wk) = w.shape().dims2()?;
        if wk != k {
            candle_core::bail!("a product of {wk}-wide weights with {:?}", x.shape());
        }
        data.push((format, w.data()?, n));
    }
    let mut matrices = Vec::with_capacity(ws.len());
    for (format, bytes, n) in &data {
        let Some(matrix) = QuantMatrix::new(*format, bytes, *n, k) else {
            return Ok(None);
        };
        matrices.push(matrix);
    }
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("quantized products run on the CPU");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("a product with a non-contiguous input");
    };
    let xs = &cpu.as_slice::<f32>()?[start..end];
    let rows = xs.len() / k.max(1);
    // The activations rounded once per format the products take.
    let mut acts: Vec<Acts> = Vec::new();
    for m in &matrices {
        let format = m.format.act_format();
        if !acts.iter().any(|a| a.format == format) {
            acts.push(Acts::quantize(format, xs, k));
        }
    }
    let mut outs: Vec<Vec<f32>> = matrices.iter().map(|m| vec![0f32; rows * m.n]).collect();
    let mut products: Vec<Product<'_, '_>> = matrices
        .iter()
        .zip(outs.iter_mut())
        .map(|(m, out)| Product {
            matrix: *m,
            acts: acts
                .iter()
                .find(|a| a.format == m.format.act_format())
                .expect("rounded above"),
            out,
        })
        .collect();
    matmul_many(Tier::current(), &mut products);
    drop(products);
    drop(storage);
    outs.into_iter()
        .zip(&matrices)
        .map(|(out, m)| {
            let mut dims = x.dims().to_vec();
            if let Some(last) = dims.last_mut() {
                *last = m.n;
            }
            candle_core::Tensor::from_vec(out, dims, x.device())
        })
        .collect::<candle_core::Result<Vec<_>>>()
        .map(Some)
}
