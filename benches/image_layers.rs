//! Our UNet layers beside candle's, same weights, same input, same run (A/B): a 3x3
//! convolution, a resnet block and a spatial transformer of Stable Diffusion 1.5's first level
//! (320 channels, 8 heads, context 77 x 768), batch 2 (one classifier-free-guided step), on
//! latents of `XINFERENCE_BENCH_LATENT` pixels a side (default 64: a 512x512 image). Prints
//! each layer's median time both ways, the ratio, and the largest difference between the two
//! outputs. The weights are candle's random initialisation. Not a test: it asserts nothing.
//!
//! Then the matrix products alone, the `gemm` crate (which packs the weights again on every
//! call) beside our products over weights packed once at load (`image::packed`), same shapes
//! as the UNet's: one band of a 3x3 convolution's tap (320 channels, a cache-sized band of
//! 64x64 latents, run band after band as the convolution does), and the transformer's linear
//! layers on 4096 tokens (batch 2). The A/B for item 1 of issue #10.
//!
//! Then the whole VAE decoder and encoder, candle's `AutoEncoderKL` beside ours, on the
//! bench's SD 1.5 folder (`vae/` of `~/.cache/xinference-rs/bench/sd15-random`, or
//! `XINFERENCE_BENCH_SD15_DIR`; skipped when missing), decoding latents of
//! `XINFERENCE_BENCH_VAE_LATENT` a side (default 32: a 256x256 image) and encoding that image.
//!
//!     RAYON_NUM_THREADS=2 CANDLE_NUM_THREADS=2 cargo bench --bench image_layers
//!
//! `XINFERENCE_BENCH_PRODUCTS_ONLY=1` runs the products' rows alone.
//!
//! The 3x3 convolutions' two methods, nine tap products (A) beside Winograd's F(2x2, 3x3)
//! (B), same weights, timed alternately in one run, on the UNet's levels at 512x512 (320
//! channels on 64x64 latents, 640 on 32x32, 1280 on 16x16 and 8x8, an up block's 2560 -> 1280
//! on 16x16), batch 2: `XINFERENCE_BENCH_CONVS_ONLY=1` runs those rows alone.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::attention::{
    SpatialTransformer, SpatialTransformerConfig,
};
use candle_transformers::models::stable_diffusion::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
use std::path::PathBuf;
use std::time::Instant;
use xinference_core::image::config::VaeSettings;
use xinference_core::image::layers;
use xinference_core::image::ops::Conv;
use xinference_core::image::vae::Vae;

fn median_s(reps: usize, mut f: impl FnMut() -> Tensor) -> (f64, Tensor) {
    let mut out = f();
    let mut times = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        out = f();
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], out)
}

fn report(name: &str, (candle_s, a): (f64, Tensor), (ours_s, b): (f64, Tensor)) {
    let diff = (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("diff");
    println!(
        "| {name} | {candle_s:.3} | {ours_s:.3} | {:.2}x | {diff:.2e} |",
        candle_s / ours_s
    );
}

fn main() {
    let side: usize = std::env::var("XINFERENCE_BENCH_LATENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let reps: usize = std::env::var("XINFERENCE_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if std::env::var_os("XINFERENCE_BENCH_PRODUCTS_ONLY").is_some() {
        products(reps);
        return;
    }
    if std::env::var_os("XINFERENCE_BENCH_CONVS_ONLY").is_some() {
        convs(reps);
        return;
    }
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let (c, groups, eps) = (320, 32, 1e-5);
    let x = Tensor::randn(0f32, 1.0, (2, c, side, side), &dev).expect("x");
    let temb = Tensor::randn(0f32, 1.0, (2, 1280), &dev).expect("temb");
    let context = Tensor::randn(0f32, 1.0, (2, 77, 768), &dev).expect("context");
    println!(
        "{side}x{side} latents, batch 2, {} threads",
        candle_core::utils::get_num_threads()
    );
    println!("| layer | candle s | ours s | candle / ours | max abs diff |");
    println!("|---|---|---|---|---|");

    let pad1 = candle_nn::Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let theirs = candle_nn::conv2d(c, c, 3, pad1, vb.pp("conv")).expect("conv");
    let ours = Conv::new(vb.pp("conv"), c, c, 3, 1, 1).expect("conv");
    report(
        "conv 3x3 320->320",
        median_s(reps, || theirs.forward(&x).expect("candle conv")),
        median_s(reps, || ours.forward(&x).expect("our conv")),
    );

    // Our convolution in one band of the whole plane (each product split over the threads)
    // beside the default cache-sized bands run in parallel.
    let whole = ours.clone().with_band_values(usize::MAX);
    let banded = ours;
    let (whole_s, a) = median_s(reps, || whole.forward(&x).expect("whole"));
    let (banded_s, b) = median_s(reps, || banded.forward(&x).expect("banded"));
    let diff = (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("diff");
    println!(
        "| conv 3x3 320->320, ours: one band (A) / bands (B) | {whole_s:.3} | {banded_s:.3} | {:.2}x | {diff:.2e} |",
        whole_s / banded_s
    );

    let config = ResnetBlock2DConfig {
        out_channels: Some(c),
        temb_channels: Some(1280),
        groups,
        groups_out: None,
        eps,
        use_in_shortcut: None,
        output_scale_factor: 1.0,
    };
    let theirs = ResnetBlock2D::new(vb.pp("resnet"), c, config).expect("resnet");
    let ours =
        layers::ResnetBlock::new(vb.pp("resnet"), (c, c, 1280), groups, eps, 1.0).expect("resnet");
    report(
        "resnet 320",
        median_s(reps, || {
            theirs.forward(&x, Some(&temb)).expect("candle resnet")
        }),
        median_s(reps, || ours.forward(&x, &temb).expect("our resnet")),
    );

    let config = SpatialTransformerConfig {
        depth: 1,
        num_groups: groups,
        context_dim: Some(768),
        sliced_attention_size: None,
        use_linear_projection: false,
    };
    let theirs =
        SpatialTransformer::new(vb.pp("attn"), c, 8, c / 8, false, config).expect("transformer");
    let ours = layers::SpatialTransformer::new(vb.pp("attn"), c, (8, 1), 768, groups, false)
        .expect("transformer");
    report(
        "transformer 320, 8 heads",
        median_s(reps, || {
            theirs
                .forward(&x, Some(&context))
                .expect("candle transformer")
        }),
        median_s(reps, || {
            ours.forward(&x, &context).expect("our transformer")
        }),
    );

    convs(reps);
    products(reps);
    vae(reps);
}

/// The 3x3 convolution's nine tap products (A) beside Winograd's F(2x2, 3x3) (B) on the
/// UNet's shapes, timed alternately (A, B, A, B, ...); medians, ratio, largest difference.
fn convs(reps: usize) {
    use xinference_core::image::ops::Method;
    let dev = Device::Cpu;
    println!("| 3x3 conv, batch 2 | nine taps s | Winograd s | taps / Winograd | max abs diff |");
    println!("|---|---|---|---|---|");
    for (cin, cout, side) in [
        (320, 320, 64),
        (640, 640, 32),
        (1280, 1280, 16),
        (2560, 1280, 16),
        (1280, 1280, 8),
    ] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        // Random weights and bias (a VarMap's plain `get` would make zeros).
        let scale = (1.0 / (9 * cin) as f64).sqrt();
        vb.get_with_hints(
            (cout, cin, 3, 3),
            "conv.weight",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: scale,
            },
        )
        .expect("weight");
        vb.get_with_hints(
            (cout,),
            "conv.bias",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: scale,
            },
        )
        .expect("bias");
        let x = Tensor::randn(0f32, 1.0, (2, cin, side, side), &dev).expect("x");
        let build = |method| {
            Conv::with_method(vb.pp("conv"), (cin, cout), (3, 1, 1), method).expect("conv")
        };
        let (taps, winograd) = (build(Method::Direct), build(Method::Winograd));
        let mut a = taps.forward(&x).expect("taps");
        let mut b = winograd.forward(&x).expect("winograd");
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let start = Instant::now();
            a = taps.forward(&x).expect("taps");
            ta.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            b = winograd.forward(&x).expect("winograd");
            tb.push(start.elapsed().as_secs_f64());
        }
        let median = |mut t: Vec<f64>| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let (ta, tb) = (median(ta), median(tb));
        let diff = (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .expect("diff");
        println!(
            "| {cin}->{cout} on {side}x{side} | {ta:.3} | {tb:.3} | {:.2}x | {diff:.2e} |",
            ta / tb
        );
    }
}

/// The same product through `gemm` and through our packed weights; prints both times and the
/// largest difference.
fn products(reps: usize) {
    use xinference_core::image::packed::{lhs_product, rhs_product, Packed, Rows};
    use xinference_core::kernels::{self, View};
    let values = |n: usize, seed: u32| -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    let time = |f: &mut dyn FnMut()| -> f64 {
        f();
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    println!("| product | gemm s | packed s | gemm / packed | max abs diff |");
    // A 3x3 convolution's tap products, band by band, as `ops::Conv` runs them: 320 -> 320
    // channels on 64x64 latents (66-wide padded rows, 6-row bands: 131072 / (320 · 66)), and
    // 1280 -> 1280 on the deepest level's 8x8 (one band a batch row), batch 2.
    for (c, side, band) in [(320usize, 64usize, 6usize), (1280, 8, 8)] {
        let (cout, cin, pw) = (c, c, side + 2);
        let pplane = pw * pw;
        let grid = band * pw;
        let w = values(cout * cin, 1);
        let x = values(cin * pplane + 2, 2);
        let packed = Packed::lhs(&w, cout, cin);
        let bands = 2 * side.div_ceil(band);
        // Band `i`'s first row (the last band ends at the plane's last row), shifted by the tap.
        let offset = |i: usize, tap: usize| {
            ((i % side.div_ceil(band)) * band).min(side - band) * pw + tap / 3 * pw + tap % 3
        };
        let mut c1 = vec![0f32; cout * grid];
        let mut c2 = vec![0f32; cout * grid];
        let gemm_s = time(&mut || {
            for i in 0..bands {
                for tap in 0..9 {
                    kernels::matmul(
                        (cout, cin, grid),
                        &mut c1,
                        View::rows(0, grid),
                        &w,
                        View::rows(0, cin),
                        &x,
                        View {
                            offset: offset(i, tap),
                            row_stride: pplane,
                            col_stride: 1,
                        },
                        1.0,
                        tap > 0,
                        true,
                    );
                }
            }
        });
        let packed_s = time(&mut || {
            for i in 0..bands {
                for tap in 0..9 {
                    lhs_product(
                        &packed,
                        &x,
                        Rows::new(offset(i, tap), pplane),
                        grid,
                        &mut c2,
                        Rows::new(0, grid),
                        tap > 0,
                        true,
                    );
                }
            }
        });
        println!(
            "| 3x3 conv taps {c}->{c} on {side}x{side}, {bands} bands of {grid} | {gemm_s:.3} | {packed_s:.3} | {:.2}x | {:.2e} |",
            gemm_s / packed_s,
            diff(&c1, &c2)
        );
    }
    // Linear layers on 2 x 4096 tokens: q/k/v/out (320 -> 320), the feed-forward (320 -> 2560,
    // 1280 -> 320).
    for (k, n) in [(320, 320), (320, 2560), (1280, 320)] {
        let t = 8192;
        let w = values(n * k, 3);
        let xs = values(t * k, 4);
        let packed = Packed::rhs(&w, n, k);
        let mut o1 = Vec::new();
        let gemm_s = time(&mut || kernels::linear(&xs, &w, None, None, &mut o1, (t, k, n)));
        let mut o2 = vec![0f32; t * n];
        let packed_s = time(&mut || {
            rhs_product(
                &xs,
                Rows::new(0, k),
                t,
                &packed,
                &mut o2,
                Rows::new(0, n),
                false,
                true,
            )
        });
        println!(
            "| linear {t}x{k} -> {n} | {gemm_s:.3} | {packed_s:.3} | {:.2}x | {:.2e} |",
            gemm_s / packed_s,
            diff(&o1, &o2)
        );
    }
}

/// candle's AutoEncoderKL beside ours on the bench folder's VAE, same weights, same latents.
fn vae(reps: usize) {
    let dir = std::env::var_os("XINFERENCE_BENCH_SD15_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/xinference-rs/bench/sd15-random")
        })
        .join("vae");
    if !dir.join("config.json").exists() {
        println!("(no {}: VAE rows skipped)", dir.display());
        return;
    }
    let side: usize = std::env::var("XINFERENCE_BENCH_VAE_LATENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let dev = Device::Cpu;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("config JSON");
    let settings = VaeSettings::from_json(&config).expect("settings");
    let file = dir.join("diffusion_pytorch_model.safetensors");
    // SAFETY: the bench's weight file is not modified while it runs.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &dev) }.expect("weights");
    let theirs = candle_transformers::models::stable_diffusion::vae::AutoEncoderKL::new(
        vb.clone(),
        settings.in_channels,
        settings.out_channels,
        settings.config.clone(),
    )
    .expect("candle VAE");
    let ours = Vae::new(vb, &settings).expect("our VAE");
    let latent = settings.config.latent_channels;
    let z = Tensor::randn(0f32, 1.0, (1, latent, side, side), &dev).expect("latents");
    let zv = z
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("latents");
    let to_tensor = |(v, (h, w)): (Vec<f32>, (usize, usize)), c: usize| {
        Tensor::from_vec(v, (1, c, h, w), &dev).expect("tensor")
    };
    println!("| VAE (sd15-random, {side}x{side} latents) | candle s | ours s | candle / ours | max abs diff |");
    let decoded = median_s(reps, || theirs.decode(&z).expect("candle decode"));
    report(
        "decoder",
        decoded.clone(),
        median_s(reps, || {
            to_tensor(ours.decode(&zv, (1, side, side)), settings.out_channels)
        }),
    );
    let image = decoded.1.clamp(-1f32, 1f32).expect("image");
    let (_, _, h, w) = image.dims4().expect("dims");
    let iv = image
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("image");
    // candle's encode returns only its own sample of the distribution (mean + std · noise),
    // so the encoder row gives times, not a difference.
    let (candle_s, _) = median_s(reps, || {
        theirs
            .encode(&image)
            .and_then(|d| d.sample())
            .expect("candle encode")
    });
    let (ours_s, _) = median_s(reps, || {
        let (mean, _, size) = ours.encode(&iv, (1, h, w));
        to_tensor((mean, size), latent)
    });
    println!(
        "| encoder | {candle_s:.3} | {ours_s:.3} | {:.2}x | - |",
        candle_s / ours_s
    );
}
