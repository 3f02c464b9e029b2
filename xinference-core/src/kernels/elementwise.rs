//! Element-wise kernels over row-major `f32` slices: activations, `exp`/`erf`, layer and group
//! normalisation, SiLU, GEGLU and row softmax, on the pool when the slice is large and on
//! AVX2/FMA code chosen at run time (see [`super`]).

use super::{threads, PARALLEL_CHUNK};
use rayon::prelude::*;

/// Runs `f` over pieces of `xs` of whole rows of `width`, on the pool when `xs` is large.
fn for_rows(xs: &mut [f32], width: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    let rows_per_piece = (PARALLEL_CHUNK / width.max(1)).max(1);
    if xs.len() <= PARALLEL_CHUNK || threads() == 1 {
        f(xs);
    } else {
        xs.par_chunks_mut(rows_per_piece * width).for_each(f);
    }
}

/// The activations encoders use, by their transformers names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact (erf) GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    /// The activation a config's `hidden_act` names, if we have it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }

    /// Applies the activation to every value, in place.
    pub fn apply(self, xs: &mut [f32]) {
        for_rows(xs, 1, |piece| match self {
            Activation::Gelu => gelu_erf_slice(piece),
            Activation::GeluTanh => gelu_tanh_slice(piece),
            Activation::Relu => piece.iter_mut().for_each(|x| *x = x.max(0.0)),
        });
    }
}

/// `e^x` to about 1 ulp, branch-free so that loops over it vectorise (Cephes' `expf`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the bits of `n + 1.5 · 2^23`, whose low bits hold `n` as an integer: the same
    // value as `(n as i32 + 127) << 23`, but integer lane operations that vectorise (`as i32`
    // saturates and maps NaN to 0: scalar conversions and branches, one value at a time).
    let n_bits = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `e^x` as ggml's CPU backend computes it in its AVX2/FMA loops (`ggml_v_expf`, under 1.5 ulp),
/// one value at a time: the same operations, fused where ggml fuses them, so the same bits
/// (where it branches on a whole vector, each value takes the path its own lane takes there).
/// llama.cpp's softmax and SiLU use it; the GGUF path does too, to give llama.cpp's bits.
#[inline(always)]
pub fn exp_ggml(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6) * b);
    if n.abs() > 126.0 {
        let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
        let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
        let s2 = f32::from_bits(e.wrapping_sub(g));
        if n.abs() > 192.0 {
            s1 * s1
        } else {
            s2.mul_add(j, s2) * s1
        }
    } else {
        k.mul_add(j, k)
    }
}

/// `silu(gate) · up` into `gate`, rows of `width` values, as ggml's `swiglu` computes it
/// (`ggml_vec_swiglu_f32` on AVX2/FMA): `g / (1 + exp_ggml(0 - g)) · u` for each row's whole
/// chunks of eight, `g / (1 + expf(-g)) · u` for the rest of the row.
pub fn silu_mul_ggml(gate: &mut [f32], up: &[f32], width: usize) {
    let width = width.max(1);
    assert!(gate.len() == up.len() && gate.len().is_multiple_of(width));
    let rows_per_piece = (PARALLEL_CHUNK / width).max(1);
    if gate.len() <= PARALLEL_CHUNK || threads() == 1 {
        silu_mul_ggml_rows(gate, up, width);
    } else {
        gate.par_chunks_mut(rows_per_piece * width)
            .zip(up.par_chunks(rows_per_piece * width))
            .for_each(|(g, u)| silu_mul_ggml_rows(g, u, width));
    }
}

multiversioned! {
    fn silu_mul_ggml_rows(gate: &mut [f32], up: &[f32], width: usize) {
        let whole = width / 8 * 8;
        for (g, u) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)) {
            let (g_whole, g_rest) = g.split_at_mut(whole);
            for (g, u) in g_whole.iter_mut().zip(&u[..whole]) {
                *g = *g / (1.0 + exp_ggml(0.0 - *g)) * u;
            }
            for (g, u) in g_rest.iter_mut().zip(&u[whole..]) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
        }
    }
}

/// `erf(x)` to within 1.5e-7 (Abramowitz & Stegun 7.1.26), branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

multiversioned! {
    fn gelu_erf_slice(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            let v = *x;
            *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversioned! {
    fn gelu_tanh_slice(xs: &mut [f32]) {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        for x in xs.iter_mut() {
            let v = *x;
            let u = SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v);
            // tanh(u) = 1 - 2 / (e^{2u} + 1)
            let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
            *x = 0.5 * v * (1.0 + tanh);
        }
    }
}

/// Sum of `xs` with eight running sums, so that it vectorises.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// The largest of `xs` (NaNs aside), with eight running maxima so that it vectorises (a fold
/// through `f32::max` runs one comparison after another).
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let pick = |a: f32, b: f32| if b > a { b } else { a };
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| pick(m, x));
    for c in chunks {
        for i in 0..8 {
            acc[i] = pick(acc[i], c[i]);
        }
    }
    acc.iter().fold(rest, |m, &x| pick(m, x))
}

/// Sum of `(x - mean)²` over `xs`, vectorised like [`sum`].
#[inline(always)]
fn sum_sq_dev(xs: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f32 = chunks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    for c in chunks {
        for i in 0..8 {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Layer normalisation of each row of `xs` (rows of `gamma.len()`), in place.
pub fn layer_norm(xs: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    for_rows(xs, width, |piece| layer_norm_rows(piece, gamma, beta, eps));
}

multiversioned! {
    fn layer_norm_rows(xs: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let width = gamma.len();
        for row in xs.chunks_exact_mut(width) {
            let mean = sum(row) / width as f32;
            let var = sum_sq_dev(row, mean) / width as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *x = (*x - mean) * inv * g + b;
            }
        }
    }
}

/// Group normalisation of one batch row in NCHW layout: `xs` holds `gamma.len()` channels of
/// `plane` values each, split into `groups` groups of consecutive channels; each group is
/// normalised over all its values, then scaled and shifted per channel, then (`silu`) passed
/// through SiLU, into `out`. Groups are spread over the pool.
pub fn group_norm(
    xs: &[f32],
    out: &mut [f32],
    (gamma, beta): (&[f32], &[f32]),
    groups: usize,
    plane: usize,
    eps: f32,
    silu: bool,
) {
    let per_group = gamma.len() / groups * plane;
    let job = |(g, (x, o)): (usize, (&[f32], &mut [f32]))| {
        let channels = g * (gamma.len() / groups)..(g + 1) * (gamma.len() / groups);
        group_norm_one(
            x,
            o,
            (&gamma[channels.clone()], &beta[channels]),
            plane,
            eps,
            silu,
        )
    };
    if xs.len() <= PARALLEL_CHUNK || threads() == 1 {
        xs.chunks(per_group)
            .zip(out.chunks_mut(per_group))
            .enumerate()
            .for_each(job);
    } else {
        xs.par_chunks(per_group)
            .zip(out.par_chunks_mut(per_group))
            .enumerate()
            .for_each(job);
    }
}

multiversioned! {
    fn group_norm_one(
        x: &[f32],
        out: &mut [f32],
        affine: (&[f32], &[f32]),
        plane: usize,
        eps: f32,
        silu: bool
    ) {
        let n = x.len() as f32;
        let mean = sum(x) / n;
        let var = sum_sq_dev(x, mean) / n;
        let inv = 1.0 / (var + eps).sqrt();
        let (gamma, beta) = affine;
        for ((xc, oc), (g, b)) in x
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .zip(gamma.iter().zip(beta))
        {
            let scale = inv * g;
            let shift = b - mean * scale;
            if silu {
                for (o, v) in oc.iter_mut().zip(xc) {
                    let y = v * scale + shift;
                    *o = y / (1.0 + exp(-y));
                }
            } else {
                for (o, v) in oc.iter_mut().zip(xc) {
                    *o = v * scale + shift;
                }
            }
        }
    }
}

/// SiLU (`x · sigmoid(x)`) of every value, in place.
pub fn silu(xs: &mut [f32]) {
    for_rows(xs, 1, silu_slice);
}

multiversioned! {
    fn silu_slice(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x /= 1.0 + exp(-*x);
        }
    }
}

/// GEGLU: each row of `xs` (rows of `2 · width`) is a value half and a gate half; `out` rows
/// (of `width`) get `value · gelu(gate)`, GELU exact (erf), as diffusers' `GEGLU`.
pub fn geglu(xs: &[f32], out: &mut [f32], width: usize) {
    let rows_per_piece = (PARALLEL_CHUNK / width.max(1)).max(1);
    let job = |(x, o): (&[f32], &mut [f32])| geglu_rows(x, o, width);
    if out.len() <= PARALLEL_CHUNK || threads() == 1 {
        xs.chunks(rows_per_piece * 2 * width)
            .zip(out.chunks_mut(rows_per_piece * width))
            .for_each(job);
    } else {
        xs.par_chunks(rows_per_piece * 2 * width)
            .zip(out.par_chunks_mut(rows_per_piece * width))
            .for_each(job);
    }
}

multiversioned! {
    fn geglu_rows(xs: &[f32], out: &mut [f32], width: usize) {
        for (x, o) in xs.chunks_exact(2 * width).zip(out.chunks_exact_mut(width)) {
            let (value, gate) = x.split_at(width);
            for ((o, v), g) in o.iter_mut().zip(value).zip(gate) {
                *o = v * 0.5 * g * (1.0 + erf(g * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
    }
}

/// Softmax of each row of `xs` (rows of `width`), in place. Single-threaded: callers run it
/// inside their own parallel work.
pub fn softmax_rows(xs: &mut [f32], width: usize) {
    softmax_rows_inner(xs, width)
}

multiversioned! {
    fn softmax_rows_inner(xs: &mut [f32], width: usize) {
        for row in xs.chunks_exact_mut(width) {
            let max = max(row);
            for x in row.iter_mut() {
                *x = exp(*x - max);
            }
            let inv = 1.0 / sum(row);
            row.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `silu_mul_ggml` gives the bits of llama.cpp's `swiglu` (`ggml_swiglu_split` on its CPU
    /// backend, AVX2/FMA build, recorded once): two rows of 20 values, each row's first 16 in
    /// the vector loop and its last 4 in the scalar one, with gates past `ggml_v_expf`'s range
    /// (-95, -130: its second branch) and at 88.
    #[test]
    fn silu_mul_ggml_gives_llama_cpps_bits() {
        // The recorded inputs: `(i·37 mod 41 - 20)·0.731 + (i mod 3)·0.0137` and
        // `1 + (i mod 7)·0.113` in f32, three gates set apart.
        let mut gate: Vec<f32> = (0..40)
            .map(|i| ((i * 37 % 41) as f32 - 20.0) * 0.731 + (i % 3) as f32 * 0.0137)
            .collect();
        (gate[3], gate[5], gate[7]) = (-95.0, -130.0, 88.0);
        let up: Vec<f32> = (0..40).map(|i| 1.0 + (i % 7) as f32 * 0.113).collect();
        let want: &[u32] = &[
            0xb6db_7020,
            0x415d_8b0a,
            0x413a_ef4d,
            0x8000_0000,
            0x40a6_38e3,
            0x8000_0000,
            0xbebd_2048,
            0x42b0_0000,
            0xbb41_5f94,
            0xb973_cf7f,
            0xb792_ce89,
            0x4199_294c,
            0x4180_2006,
            0x4144_7f3f,
            0x408b_89d8,
            0x3fa9_1774,
            0xbeac_f8a8,
            0xbd97_03c9,
            0xbbe8_7621,
            0xba18_b710,
            0xb837_4f9b,
            0x415e_394a,
            0x4143_815f,
            0x411e_385c,
            0x40d9_f265,
            0x4038_bb66,
            0xbeba_9e9e,
            0xbe1e_52b6,
            0xbc17_4869,
            0xba54_08f8,
            0xb880_1672,
            0x419c_c191,
            0x4188_2d8c,
            0x415b_9deb,
            0x411c_eda1,
            0x4033_81e4,
            0x0000_0000,
            0xbe3c_b31c,
            0xbcbc_cc52,
            0xbb01_5fb6,
        ];
        silu_mul_ggml(&mut gate, &up, 20);
        let got: Vec<u32> = gate.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
    }
}
