//! Tests of the convolutions against the direct sum, and value builders the other image
//! modules' tests share.

use super::*;
use candle_core::DType;
use std::collections::HashMap;

/// Deterministic values in [-1, 1).
pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A VarBuilder over `tensors` (name, shape, seed).
pub(crate) fn builder(tensors: &[(&str, Vec<usize>, u64)]) -> VarBuilder<'static> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(name, shape, seed)| {
            let n = shape.iter().product();
            let t = Tensor::from_vec(values(n, *seed), shape.as_slice(), &Device::Cpu);
            (name.to_string(), t.unwrap())
        })
        .collect();
    VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
}

/// The direct sum: output `(b, o, oy, ox)` of a `k` x `k` convolution of `x` (`n` x `cin`
/// x `h` x `w`) with weight `[cout, cin, k, k]`, `stride`, `pad` (before, after), read
/// through `src(y, x)` (the input position of a resized pixel).
#[allow(clippy::too_many_arguments)]
fn direct(
    x: &[f32],
    weight: &[f32],
    (n, cin, cout): (usize, usize, usize),
    (h, w): (usize, usize),
    (rh, rw): (usize, usize),
    (k, stride, pad): (usize, usize, (usize, usize)),
    src: impl Fn(usize, usize) -> (usize, usize),
) -> Vec<f32> {
    let ho = (rh + pad.0 + pad.1 - k) / stride + 1;
    let wo = (rw + pad.0 + pad.1 - k) / stride + 1;
    let mut out = vec![0f32; n * cout * ho * wo];
    for b in 0..n {
        for o in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0f32;
                    for c in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad.0 as isize;
                                let ix = (ox * stride + kx) as isize - pad.0 as isize;
                                if iy < 0 || ix < 0 || iy >= rh as isize || ix >= rw as isize {
                                    continue;
                                }
                                let (sy, sx) = src(iy as usize, ix as usize);
                                acc += weight[((o * cin + c) * k + ky) * k + kx]
                                    * x[((b * cin + c) * h + sy) * w + sx];
                            }
                        }
                    }
                    out[((b * cout + o) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    out
}

/// [`direct`] of a 3x3, stride-1, padding-1 convolution over the input resized (nearest) to
/// `size`, as the upsampling blocks read it.
fn direct_3x3_resized(
    x: &[f32],
    weight: &[f32],
    channels: (usize, usize, usize),
    (h, w): (usize, usize),
    size: (usize, usize),
) -> Vec<f32> {
    direct(x, weight, channels, (h, w), size, (3, 1, (1, 1)), |y, x| {
        (y * h / size.0, x * w / size.1)
    })
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-4, "{what} at {i}: {g} vs {w}");
    }
}

#[test]
fn convolutions_match_the_direct_sum() {
    let (n, cin, cout, h, w) = (2, 3, 5, 7, 6);
    for (k, stride, padding) in [(3, 1, 1), (3, 2, 1), (3, 2, 0), (1, 1, 0), (3, 1, 0)] {
        let vb = builder(&[
            ("weight", vec![cout, cin, k, k], 1),
            ("bias", vec![cout], 2),
        ]);
        let conv = Conv::new(vb, cin, cout, k, stride, padding).unwrap();
        let bias = values(cout, 2);
        let x = values(n * cin * h * w, 3);
        let extra = values(n * cout, 4);
        let (ho, wo) = conv.out_size(h, w);
        let residual = values(n * cout * ho * wo, 5);
        let got = conv.forward_values(&x, (n, h, w), Some(&extra), Some(&residual));
        let mut want = direct(
            &x,
            &values(cout * cin * k * k, 1),
            (n, cin, cout),
            (h, w),
            (h, w),
            (k, stride, (padding, padding)),
            |y, x| (y, x),
        );
        for (i, v) in want.iter_mut().enumerate() {
            let (b, o) = (i / (cout * ho * wo), i / (ho * wo) % cout);
            *v += bias[o] + extra[b * cout + o] + residual[i];
        }
        assert_close(&got, &want, &format!("k{k} s{stride} p{padding}"));
    }
}

/// A 3x3 convolution cut into bands of one or a few rows (any band size gives the same
/// values), and on an input resized by nearest neighbour (doubled, as diffusers'
/// `Upsample2D`, or to an odd size, as the UNet's `upsample_size`).
#[test]
fn banded_and_resized_convolutions_match_the_direct_sum() {
    let (n, cin, cout, h, w) = (2, 3, 4, 5, 4);
    let vb = builder(&[
        ("weight", vec![cout, cin, 3, 3], 1),
        ("bias", vec![cout], 2),
    ]);
    let conv = Conv::new(vb, cin, cout, 3, 1, 1).unwrap();
    let bias = values(cout, 2);
    let x = values(n * cin * h * w, 3);
    for size in [(h, w), (2 * h, 2 * w), (2 * h + 1, 2 * w - 1)] {
        let mut want =
            direct_3x3_resized(&x, &values(cout * cin * 9, 1), (n, cin, cout), (h, w), size);
        let plane = size.0 * size.1;
        for (i, v) in want.iter_mut().enumerate() {
            *v += bias[i / plane % cout];
        }
        for budget in [1, 3 * cout * (size.1 + 2), BAND_VALUES] {
            let conv = conv.clone().with_band_values(budget);
            let got = conv.forward_resized(&x, (n, h, w), size, None, None);
            assert_close(&got, &want, &format!("{size:?}, band budget {budget}"));
            // The resized input made first, then convolved: the same values.
            let resized = resize_nearest(&x, n * cin, (h, w), size);
            let again = conv.forward_values(&resized, (n, size.0, size.1), None, None);
            assert_close(&again, &want, &format!("{size:?} resized first"));
        }
    }
}

/// diffusers' downsampler with padding 0 pads only the bottom and right by one.
#[test]
fn downsampler_pads_bottom_and_right() {
    let (n, c, h, w) = (1, 3, 8, 6);
    let vb = builder(&[("weight", vec![c, c, 3, 3], 1), ("bias", vec![c], 2)]);
    let conv = Conv::downsampler(vb, c, 0).unwrap();
    assert_eq!(conv.out_size(h, w), (4, 3));
    let x = values(n * c * h * w, 3);
    let got = conv.forward_values(&x, (n, h, w), None, None);
    let mut want = direct(
        &x,
        &values(c * c * 9, 1),
        (n, c, c),
        (h, w),
        (h, w),
        (3, 2, (0, 1)),
        |y, x| (y, x),
    );
    let bias = values(c, 2);
    for (i, v) in want.iter_mut().enumerate() {
        *v += bias[i / 12 % c];
    }
    assert_close(&got, &want, "downsampler");
}

/// Winograd's F(2x2, 3x3) and the nine-tap products give the direct sum's values (bias, time
/// embedding and residual included) on even, odd and single-pixel sizes, resized inputs, and
/// more tiles than one group of lanes; `Method::Auto` picks Winograd from 8 channels.
#[test]
fn winograd_convolutions_match_the_direct_sum() {
    let (n, cin, cout) = (2, 9, 13);
    let vb = builder(&[
        ("weight", vec![cout, cin, 3, 3], 1),
        ("bias", vec![cout], 2),
    ]);
    let weight = values(cout * cin * 9, 1);
    let bias = values(cout, 2);
    let extra = values(n * cout, 4);
    for method in [Method::Winograd, Method::Direct, Method::Auto] {
        let conv = Conv::with_method(vb.clone(), (cin, cout), (3, 1, 1), method).unwrap();
        assert_eq!(conv.winograd, method != Method::Direct);
        for ((h, w), size) in [
            ((1, 1), (1, 1)),
            ((5, 4), (5, 4)),
            ((7, 6), (7, 6)),
            ((6, 37), (6, 37)),
            ((4, 5), (8, 10)),
            ((4, 5), (9, 9)),
            ((20, 3), (20, 3)),
        ] {
            let x = values(n * cin * h * w, 3);
            let mut want = direct_3x3_resized(&x, &weight, (n, cin, cout), (h, w), size);
            let plane = size.0 * size.1;
            let residual = values(n * cout * plane, 5);
            for (i, v) in want.iter_mut().enumerate() {
                let (b, o) = (i / (cout * plane), i / plane % cout);
                *v += bias[o] + extra[b * cout + o] + residual[i];
            }
            let got = conv.forward_resized(&x, (n, h, w), size, Some(&extra), Some(&residual));
            assert_close(&got, &want, &format!("{method:?} {h}x{w} -> {size:?}"));
        }
    }
}
