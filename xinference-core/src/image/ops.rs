//! The UNet's convolutions and group norms over plain `f32` buffers (NCHW), on the shared
//! [`crate::kernels`]. candle's CPU conv2d copies its input into an im2col matrix, multiplies,
//! transposes the product back to NCHW and adds the bias in two more passes, each a fresh
//! tensor; here a 3x3 convolution is nine matrix products over one zero-padded copy of the input
//! (an implicit GEMM: no im2col matrix), written straight into NCHW with the bias, the time
//! embedding and the residual already in place, and scratch buffers are reused between calls.

use super::packed::{self, lhs_product, Packed, Rows};
use super::pool;
use super::winograd;
use crate::kernels;
use crate::{Error, Result};
use candle_core::{CpuStorage, Device, Storage, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// Zero-padded input (3x3 convolutions) or im2col matrix (strided ones).
    static INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Product on the padded grid, before its border columns are dropped.
    static PRODUCT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a reused scratch buffer of `len` values (contents unspecified).
pub(super) fn with_scratch<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = key.with(|b| b.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.with(|b| b.replace(buf));
    r
}

/// Runs `f` over the values of a CPU `f32` tensor, in row-major order.
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return Err(Error::internal("the UNet runs on CPU f32 tensors"));
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::internal("a contiguous tensor without contiguous offsets"))?;
    Ok(f(&data[start..end]))
}

/// A CPU tensor of `shape` owning `values`.
pub fn tensor(values: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// The values of weight `name` under `vb`, checked against `shape`.
pub fn weight(vb: &VarBuilder, shape: &[usize], name: &str) -> Result<Vec<f32>> {
    Ok(vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()?)
}

/// A 2-D convolution (square kernel, same stride and padding on both axes), with bias.
#[derive(Clone)]
pub struct Conv {
    /// The weight packed for [`lhs_product`], once at load: 3x3 stride-1 padding-1 kernels
    /// as Winograd's 16 transformed `[out, in]` matrices ([`winograd`]) or tap by tap (nine
    /// `[out, in]` matrices); others as one `[out, in · k · k]` matrix.
    weight: Arc<Vec<Packed>>,
    /// Whether `weight` holds Winograd's transformed matrices.
    winograd: bool,
    bias: Vec<f32>,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    /// Zero rows / columns added before and after the input on both axes.
    padding: (usize, usize),
    /// Product values per band of a 3x3 convolution ([`BAND_VALUES`]; smaller in tests).
    band_values: usize,
}

impl Conv {
    /// Reads `weight` and `bias` under `vb`. A 3x3 stride-1 convolution runs by Winograd's
    /// F(2x2, 3x3) ([`winograd`]) when both sides have at least [`WINOGRAD_MIN_CHANNELS`]
    /// channels, else (and with [`Method::Direct`]) as nine products.
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        Conv::with_method(vb, (cin, cout), (k, stride, padding), Method::Auto)
    }

    /// [`Conv::new`] with the method of 3x3 stride-1 convolutions chosen (for benches and
    /// tests: the A/B of the two).
    pub fn with_method(
        vb: VarBuilder,
        (cin, cout): (usize, usize),
        (k, stride, padding): (usize, usize, usize),
        method: Method,
    ) -> Result<Self> {
        let w = weight(&vb, &[cout, cin, k, k], "weight")?;
        let use_winograd = (k, stride, padding) == (3, 1, 1)
            && match method {
                Method::Auto => cin.min(cout) >= WINOGRAD_MIN_CHANNELS && !taps_forced(),
                Method::Winograd => true,
                Method::Direct => false,
            };
        let packed = if use_winograd {
            winograd::transform_weights(&w, cout, cin)
        } else if (k, stride, padding) == (3, 1, 1) {
            // Tap by tap, so that each tap's weights are one [out, in] matrix.
            let mut tap_weights = vec![0f32; cout * cin];
            (0..9)
                .map(|tap| {
                    for (i, v) in tap_weights.iter_mut().enumerate() {
                        *v = w[i * 9 + tap];
                    }
                    Packed::lhs(&tap_weights, cout, cin)
                })
                .collect()
        } else {
            vec![Packed::lhs(&w, cout, cin * k * k)]
        };
        drop(w);
        Ok(Conv {
            weight: Arc::new(packed),
            winograd: use_winograd,
            bias: weight_or_zeros(&vb, cout)?,
            cin,
            cout,
            k,
            stride,
            padding: (padding, padding),
            band_values: BAND_VALUES,
        })
    }

    /// diffusers' `Downsample2D` convolution (3x3, stride 2, `channels` in and out): with
    /// `padding` 0 the input is padded by one at the bottom and right only, as diffusers pads
    /// it before the convolution.
    pub fn downsampler(vb: VarBuilder, channels: usize, padding: usize) -> Result<Self> {
        let mut conv = Conv::new(vb, channels, channels, 3, 2, padding)?;
        debug_assert!(!conv.winograd);
        if padding == 0 {
            conv.padding = (0, 1);
        }
        Ok(conv)
    }

    /// The same convolution with `values` products per band of rows instead of the default
    /// (for benches: `usize::MAX` makes one band of the whole plane, the unbanded product).
    pub fn with_band_values(mut self, values: usize) -> Self {
        self.band_values = values.max(1);
        self
    }

    /// A 1x1 convolution from its `[out, in]` weight and bias values.
    pub fn pointwise(weight: Vec<f32>, bias: Vec<f32>, cin: usize, cout: usize) -> Self {
        Conv {
            weight: Arc::new(vec![Packed::lhs(&weight, cout, cin)]),
            winograd: false,
            bias,
            cin,
            cout,
            k: 1,
            stride: 1,
            padding: (0, 0),
            band_values: BAND_VALUES,
        }
    }

    /// A 1x1 convolution from a linear layer's `[out, in]` weight and bias: the same product.
    pub fn from_linear(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Conv::pointwise(
            weight(&vb, &[cout, cin], "weight")?,
            weight_or_zeros(&vb, cout)?,
            cin,
            cout,
        ))
    }

    /// A 1x1 convolution of `x` (`n` x `cin` x `t` pixels) written as tokens: `n · t` rows of
    /// `cout` values, pixel by pixel (the transpose of the NCHW output).
    pub fn tokens_from_planes(&self, x: &[f32], n: usize, t: usize) -> Vec<f32> {
        debug_assert_eq!(self.k, 1);
        let planes = self.forward_values(x, (n, t, 1), None, None);
        let mut out = pool::take(planes.len());
        for (p, o) in planes
            .chunks_exact(self.cout * t)
            .zip(out.chunks_exact_mut(self.cout * t))
        {
            packed::transpose(p, self.cout, t, o);
        }
        pool::give(planes);
        out
    }

    /// A 1x1 convolution of tokens (`n · t` rows of `cin`) back to NCHW planes (`n` x `cout`
    /// x `t`), plus `residual` (shaped like the output).
    pub fn planes_from_tokens(
        &self,
        tokens: &[f32],
        n: usize,
        t: usize,
        residual: &[f32],
    ) -> Vec<f32> {
        debug_assert_eq!(self.k, 1);
        let mut planes = pool::take(n * t * self.cin);
        for (tb, p) in tokens
            .chunks_exact(t * self.cin)
            .zip(planes.chunks_exact_mut(t * self.cin))
        {
            packed::transpose(tb, t, self.cin, p);
        }
        let out = self.forward_values(&planes, (n, t, 1), None, Some(residual));
        pool::give(planes);
        out
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.cout
    }

    /// Output height and width for an input of `h` x `w`.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |x: usize| (x + self.padding.0 + self.padding.1 - self.k) / self.stride + 1;
        (o(h), o(w))
    }

    /// The convolution of `x` (`n` x `cin` x `h` x `w`) plus the bias, plus `channel_bias`
    /// (`n` x `cout`: one more bias per batch row, e.g. the time embedding) and `residual`
    /// (shaped like the output) when given.
    pub fn forward_values(
        &self,
        x: &[f32],
        (n, h, w): (usize, usize, usize),
        channel_bias: Option<&[f32]>,
        residual: Option<&[f32]>,
    ) -> Vec<f32> {
        self.forward_resized(x, (n, h, w), (h, w), channel_bias, residual)
    }

    /// [`Conv::forward_values`] on `x` (`n` x `cin` x `h` x `w`) resized to `size` by nearest
    /// neighbour first, as torch's `interpolate(mode="nearest")` (diffusers' `Upsample2D`):
    /// for a 3x3 stride-1 convolution the resized input is never made, only its padded copy.
    pub fn forward_resized(
        &self,
        x: &[f32],
        (n, h, w): (usize, usize, usize),
        size: (usize, usize),
        channel_bias: Option<&[f32]>,
        residual: Option<&[f32]>,
    ) -> Vec<f32> {
        let resized;
        let (x, (h, w)) = if size == (h, w) || self.is_3x3() {
            (x, (h, w))
        } else {
            resized = resize_nearest(x, n * self.cin, (h, w), size);
            (&resized[..], size)
        };
        let (ho, wo) = self.out_size(size.0, size.1);
        let plane = ho * wo;
        let extra = |b: usize, o: usize| channel_bias.map_or(0.0, |c| c[b * self.cout + o]);
        if self.is_3x3() {
            // Every value is written (bias, residual and product).
            let mut out = pool::take(n * self.cout * plane);
            let bias: Vec<f32> = (0..n * self.cout)
                .map(|i| self.bias[i % self.cout] + extra(i / self.cout, i % self.cout))
                .collect();
            self.conv3x3(x, &mut out, (n, h, w), size, (&bias, residual));
            return out;
        }
        let mut out = match residual {
            Some(r) => pool::copy(&r[..n * self.cout * plane]),
            None => pool::zeroed(n * self.cout * plane),
        };
        for b in 0..n {
            let xb = &x[b * self.cin * h * w..][..self.cin * h * w];
            let ob = &mut out[b * self.cout * plane..][..self.cout * plane];
            for (o, row) in ob.chunks_exact_mut(plane).enumerate() {
                let add = self.bias[o] + extra(b, o);
                row.iter_mut().for_each(|v| *v += add);
            }
            if (self.k, self.stride, self.padding) == (1, 1, (0, 0)) {
                lhs_product(
                    &self.weight[0],
                    xb,
                    Rows::new(0, plane),
                    plane,
                    ob,
                    Rows::new(0, plane),
                    true,
                    true,
                );
            } else {
                self.im2col_conv(xb, ob, (h, w), (ho, wo));
            }
        }
        out
    }

    fn is_3x3(&self) -> bool {
        (self.k, self.stride, self.padding) == (3, 1, (1, 1))
    }

    /// 3x3, stride 1, padding 1, of `x` (`n` x `cin` x `h` x `w`, read as if resized to
    /// `size` by nearest neighbour), into `out` (`n` x `cout` x `size`): `bias` per batch row
    /// and channel, plus `residual` when given, plus the convolution. The input is copied
    /// once with a one-pixel zero border; with Winograd's weights, [`winograd::conv`] runs on
    /// that copy. Else (rows of `pw = width + 2`) output pixel `(y, x)` of
    /// tap `(ky, kx)` then reads padded pixel `(y + ky, x + kx)`, so each tap is one product
    /// over the padded plane shifted by `ky · pw + kx`, computed on a grid of rows of `pw`
    /// whose two extra columns are dropped. The grid is cut into bands of rows, each band's
    /// nine products summed in a per-thread buffer small enough to stay in cache, and the
    /// bands of every batch row run in parallel.
    fn conv3x3(
        &self,
        x: &[f32],
        out: &mut [f32],
        (n, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
        (bias, residual): (&[f32], Option<&[f32]>),
    ) {
        let (ph, pw) = if self.winograd {
            winograd::padded_size(oh, ow)
        } else {
            (oh + 2, ow + 2)
        };
        let pplane = ph * pw;
        let (cin, cout) = (self.cin, self.cout);
        // Spare values past the planes: the last tap of the last channel reads up to 2 past
        // the plane, Winograd's last tiles further.
        let slack = if self.winograd { winograd::SLACK } else { 2 };
        with_scratch(&INPUT, n * cin * pplane + slack, |padded| {
            pad_into(x, padded, (h, w), (oh, ow), (ph, pw));
            let tail = padded.len();
            padded[tail - slack..].fill(0.0);
            if self.winograd {
                winograd::conv(
                    &self.weight,
                    padded,
                    (n, cin, cout),
                    (oh, ow),
                    out,
                    bias,
                    residual,
                );
                return;
            }
            let padded = &*padded;
            let band_rows = band_rows(oh, pw, cout, n, self.band_values);
            let bands = oh.div_ceil(band_rows);
            let jobs = n * bands;
            let parallel_jobs = kernels::threads() > 1 && jobs >= kernels::threads();
            let plane = oh * ow;
            let shared = Disjoint::new(out);
            let job = |index: usize| {
                let (b, band) = (index / bands, index % bands);
                let y0 = band * band_rows;
                let y1 = (y0 + band_rows).min(oh);
                let grid = (y1 - y0) * pw;
                with_scratch(&PRODUCT, cout * grid, |product| {
                    for tap in 0..9 {
                        let (ky, kx) = (tap / 3, tap % 3);
                        lhs_product(
                            &self.weight[tap],
                            padded,
                            Rows::new(b * cin * pplane + (y0 + ky) * pw + kx, pplane),
                            grid,
                            product,
                            Rows::new(0, grid),
                            tap > 0,
                            !parallel_jobs,
                        );
                    }
                    for (o, p) in product.chunks_exact(grid).enumerate() {
                        let at = (b * cout + o) * plane + y0 * ow;
                        // SAFETY: each job writes only its own rows of its batch row's
                        // channels: jobs never overlap, and `out` is not otherwise used
                        // meanwhile.
                        let dst = unsafe { shared.slice(at, (y1 - y0) * ow) };
                        let add = bias[b * cout + o];
                        for (y, (drow, prow)) in
                            dst.chunks_exact_mut(ow).zip(p.chunks_exact(pw)).enumerate()
                        {
                            match residual {
                                Some(r) => {
                                    let rrow = &r[at + y * ow..][..ow];
                                    for ((d, p), r) in drow.iter_mut().zip(prow).zip(rrow) {
                                        *d = r + add + p;
                                    }
                                }
                                None => {
                                    for (d, p) in drow.iter_mut().zip(prow) {
                                        *d = add + p;
                                    }
                                }
                            }
                        }
                    }
                });
            };
            if parallel_jobs {
                (0..jobs).into_par_iter().for_each(job);
            } else {
                (0..jobs).for_each(job);
            }
        });
    }

    /// Any other kernel, stride or padding: an im2col matrix (`cin · k · k` x output pixels)
    /// and one product.
    fn im2col_conv(
        &self,
        x: &[f32],
        out: &mut [f32],
        (h, w): (usize, usize),
        (ho, wo): (usize, usize),
    ) {
        let (k, s, p) = (self.k, self.stride, self.padding.0);
        let rows = self.cin * k * k;
        let plane = ho * wo;
        with_scratch(&INPUT, rows * plane, |col| {
            col.par_chunks_mut(plane).enumerate().for_each(|(r, dst)| {
                let (c, ky, kx) = (r / (k * k), r / k % k, r % k);
                let xc = &x[c * h * w..][..h * w];
                for oy in 0..ho {
                    let iy = (oy * s + ky) as isize - p as isize;
                    let drow = &mut dst[oy * wo..][..wo];
                    if iy < 0 || iy >= h as isize {
                        drow.fill(0.0);
                        continue;
                    }
                    let xrow = &xc[iy as usize * w..][..w];
                    for (ox, d) in drow.iter_mut().enumerate() {
                        let ix = (ox * s + kx) as isize - p as isize;
                        *d = if ix < 0 || ix >= w as isize {
                            0.0
                        } else {
                            xrow[ix as usize]
                        };
                    }
                }
            });
            lhs_product(
                &self.weight[0],
                col,
                Rows::new(0, plane),
                plane,
                out,
                Rows::new(0, plane),
                true,
                true,
            );
        });
    }

    /// [`Conv::forward_values`] on a tensor.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let (ho, wo) = self.out_size(h, w);
        let out = with_values(x, |v| self.forward_values(v, (n, h, w), None, None))?;
        tensor(out, &[n, self.cout, ho, wo])
    }
}

/// Copies the planes of `x` (`h` x `w` each, read as if resized to `oh` x `ow` by nearest
/// neighbour) into `padded`'s planes of `ph` x `pw` with one zero row and column before and
/// zeros after (`ph >= oh + 2`, `pw >= ow + 2`).
fn pad_into(
    x: &[f32],
    padded: &mut [f32],
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    (ph, pw): (usize, usize),
) {
    let resized = (h, w) != (oh, ow);
    let rows: Vec<usize> = (0..oh).map(|y| nearest(y, h, oh)).collect();
    let cols: Vec<usize> = (0..ow).map(|x| nearest(x, w, ow)).collect();
    padded
        .par_chunks_exact_mut(ph * pw)
        .zip(x.par_chunks(h * w))
        .for_each(|(p, xc)| {
            p[..pw].fill(0.0);
            p[(oh + 1) * pw..].fill(0.0);
            for (y, prow) in p[pw..(oh + 1) * pw].chunks_exact_mut(pw).enumerate() {
                prow[0] = 0.0;
                prow[ow + 1..].fill(0.0);
                let src = &xc[rows[y] * w..][..w];
                if resized {
                    for (d, &c) in prow[1..=ow].iter_mut().zip(&cols) {
                        *d = src[c];
                    }
                } else {
                    prow[1..=ow].copy_from_slice(src);
                }
            }
        });
}

/// How a 3x3 stride-1 convolution is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Winograd when both sides have at least [`WINOGRAD_MIN_CHANNELS`] channels (unless
    /// `XINFERENCE_IMAGE_CONV=taps`).
    Auto,
    /// Winograd's F(2x2, 3x3) ([`winograd`]).
    Winograd,
    /// Nine products over the padded input, one per tap.
    Direct,
}

/// Whether `XINFERENCE_IMAGE_CONV=taps` asks for the nine-tap method everywhere (read once;
/// for benches' A/B of a whole pipeline).
fn taps_forced() -> bool {
    static TAPS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TAPS.get_or_init(|| std::env::var("XINFERENCE_IMAGE_CONV").is_ok_and(|v| v == "taps"))
}

/// Channels in and out from which a 3x3 convolution runs by Winograd: below, its transforms
/// cost more than the products they save.
pub const WINOGRAD_MIN_CHANNELS: usize = 8;

/// A bias vector, or zeros when the layer has none.
fn weight_or_zeros(vb: &VarBuilder, n: usize) -> Result<Vec<f32>> {
    if vb.contains_tensor("bias") {
        weight(vb, &[n], "bias")
    } else {
        Ok(vec![0.0; n])
    }
}

/// Source index of output index `i` of `to` when `from` values are resized to `to` by
/// nearest neighbour (torch's `floor(i · from / to)`, in double precision as candle does).
fn nearest(i: usize, from: usize, to: usize) -> usize {
    if from == to {
        return i;
    }
    ((i as f64 * (from as f64 / to as f64)) as usize).min(from - 1)
}

/// `planes` planes of `h` x `w` resized to `size` by nearest neighbour.
pub fn resize_nearest(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let cols: Vec<usize> = (0..ow).map(|c| nearest(c, w, ow)).collect();
    let mut out = vec![0f32; planes * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, xc)| {
            for (y, orow) in o.chunks_exact_mut(ow).enumerate() {
                let src = &xc[nearest(y, h, oh) * w..][..w];
                for (d, &c) in orow.iter_mut().zip(&cols) {
                    *d = src[c];
                }
            }
        });
    out
}

/// A buffer that parallel jobs write in disjoint pieces.
pub(super) struct Disjoint(*mut f32, usize);

// SAFETY: only a pointer and a length; `slice`'s callers guarantee that pieces do not overlap.
unsafe impl Send for Disjoint {}
// SAFETY: as above.
unsafe impl Sync for Disjoint {}

impl Disjoint {
    /// The whole of `xs`.
    pub(super) fn new(xs: &mut [f32]) -> Self {
        Disjoint(xs.as_mut_ptr(), xs.len())
    }

    /// The `len` values from `at`.
    ///
    /// # Safety
    /// No other live slice of this buffer may overlap them.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.1, "piece out of bounds");
        std::slice::from_raw_parts_mut(self.0.add(at), len)
    }
}

/// Values of a 3x3 convolution's per-band product buffer: small enough to stay in a core's
/// L2 cache across the nine taps.
const BAND_VALUES: usize = 1 << 17;

/// Rows per band of a 3x3 convolution with `oh` rows of `pw` padded columns and `cout`
/// channels out, over `batch` batch rows: at most `budget` products, at least one row, and
/// the bands of all batch rows in whole rounds over the threads when there are at least as
/// many bands as threads (else one band a batch row, each product split over the threads).
fn band_rows(oh: usize, pw: usize, cout: usize, batch: usize, budget: usize) -> usize {
    let by_cache = (budget / (cout * pw)).max(1).min(oh);
    let mut bands = oh.div_ceil(by_cache);
    let threads = kernels::threads();
    let total = batch * bands;
    if threads > 1 && total > threads && !total.is_multiple_of(threads) && bands < oh {
        bands = (total.div_ceil(threads) * threads).div_ceil(batch).min(oh);
    }
    oh.div_ceil(bands)
}

#[cfg(test)]
pub(crate) mod tests;
