//! The products' rounding, checked against the formats' definitions.

use super::*;
use crate::kernels::quant::format::{ActFormat, Format};
use candle_core::quantized::k_quants::QK_K;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use half::f16;
use std::sync::Arc;

/// llama.cpp's x86 `quantize_row_q8_0`, read back: blocks of 32 with an f16 scale
/// `max|x| / 127` and values `x · 127 / max|x|` rounded to nearest, ties to even.
fn round_q8_0(x: &[f32]) -> Vec<f64> {
    x.chunks(32)
        .flat_map(|block| {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let scale = f16::from_f32(amax / 127.0).to_f32() as f64;
            block
                .iter()
                .map(move |v| (v * id).round_ties_even() as f64 * scale)
        })
        .collect()
}

/// llama.cpp's `quantize_row_q8_K_ref`, read back: blocks of 256, the scale set by the
/// value of largest magnitude (`iscale = -127 / max`), kept in f32, values rounded to
/// nearest, ties to even (`nearest_int`).
fn round_q8k(x: &[f32]) -> Vec<f64> {
    x.chunks(QK_K)
        .flat_map(|block| {
            let (mut max, mut amax) = (0f32, 0f32);
            for &v in block {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let iscale = if amax == 0.0 { 0.0 } else { -127.0 / max };
            let d = if amax == 0.0 { 0.0 } else { 1.0 / iscale };
            block
                .iter()
                .map(move |v| (iscale * v).round_ties_even().min(127.0) as f64 * d as f64)
        })
        .collect()
}

/// `x · wᵀ` by the definition of the weight's format, as llama.cpp computes it: the
/// dequantized weights times the activations rounded to the format's dot-product type
/// (Q8_0 for the 32-blocks, Q8K for the k-quants), summed in f64. Nothing here depends on
/// the CPU or on which kernel candle picks.
fn reference_product(w: &QTensor, x: &[f32]) -> Vec<f64> {
    let (n, k) = w.shape().dims2().unwrap();
    let weights: Vec<f32> = w
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let round: fn(&[f32]) -> Vec<f64> = match Format::of(w.dtype()).map(Format::act_format) {
        Some(ActFormat::Q8_0) => round_q8_0,
        Some(ActFormat::Q8K) => round_q8k,
        other => panic!("{:?} has no reference rounding ({other:?})", w.dtype()),
    };
    x.chunks(k)
        .flat_map(|row| {
            let row = round(row);
            let weights = &weights;
            (0..n).map(move |j| {
                let column = &weights[j * k..(j + 1) * k];
                row.iter()
                    .zip(column)
                    .map(|(a, b)| a * *b as f64)
                    .sum::<f64>()
            })
        })
        .collect()
}

/// The decoder's products (one row, a few, a prompt's many) give the format's definition,
/// for every weight type whose activations round to Q8_0 or Q8K, on whatever CPU and kernel
/// tier runs the test. With candle's own `QMatMul` for Q8_0, a CPU with AVX-512 VNNI is 0.58
/// away here (activations rounded to Q8K).
#[test]
fn products_follow_the_format_definition_on_every_cpu() {
    use rand::{Rng, SeedableRng};
    let device = Device::Cpu;
    let (out, inp) = (48, 512);
    // Fixed data, so that a failure reproduces.
    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    let mut random = |n: usize, spread: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-spread..spread)).collect()
    };
    let w = Tensor::from_vec(random(out * inp, 1.0), (out, inp), &device).unwrap();
    for dtype in [
        GgmlDType::Q4_0,
        GgmlDType::Q5_0,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
        let linear = QLinear {
            matmul: QMatMul::from_arc(q.clone()).unwrap(),
            weight: q.clone(),
            bias: None,
            exact: false,
        };
        // 1 and 3 rows are decode steps; 16 rows a prompt.
        for rows in [1, 3, 16] {
            let x = Tensor::from_vec(random(rows * inp, 4.0), (1, rows, inp), &device).unwrap();
            let ours: Vec<f32> = linear
                .forward_rows(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let reference = reference_product(&q, &xs);
            assert_eq!(ours.len(), reference.len());
            let diff = ours
                .iter()
                .zip(&reference)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0f64, f64::max);
            assert!(diff < 1e-3, "{dtype:?}, {rows} rows: max abs diff {diff}");
        }
    }
}

/// A small random Llama-layout decoder (2 blocks, grouped KV heads, Q4_0 and Q8_0 weights).
pub(super) fn tiny_decoder() -> GgufDecoder {
    use rand::{Rng, SeedableRng};
    let device = Device::Cpu;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut random = |n: usize, spread: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-spread..spread)).collect()
    };
    let (hidden, heads, kv_heads, hd, ffn, vocab) = (64, 4, 2, 16, 128, 32);
    let mut linear = |out: usize, inp: usize, dtype: GgmlDType| {
        let w = Tensor::from_vec(random(out * inp, 0.3), (out, inp), &device).unwrap();
        let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
        QLinear {
            matmul: QMatMul::from_arc(q.clone()).unwrap(),
            weight: q,
            bias: None,
            exact: false,
        }
    };
    let ones = Tensor::ones(hidden, candle_core::DType::F32, &device).unwrap();
    let layers = (0..2)
        .map(|_| Layer {
            attn_norm: ones.clone(),
            q: linear(heads * hd, hidden, GgmlDType::Q4_0),
            k: linear(kv_heads * hd, hidden, GgmlDType::Q4_0),
            v: linear(kv_heads * hd, hidden, GgmlDType::Q8_0),
            o: linear(hidden, heads * hd, GgmlDType::Q4_0),
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            ffn_norm: ones.clone(),
            ffn: FeedForward::Gated {
                gate: linear(ffn, hidden, GgmlDType::Q4_0),
                up: linear(ffn, hidden, GgmlDType::Q4_0),
                down: linear(hidden, ffn, GgmlDType::Q4_0),
            },
            post_ffn_norm: None,
            window: None,
            sinks: None,
            rope: 0,
            mixer: None,
        })
        .collect();
    let output = linear(vocab, hidden, GgmlDType::Q8_0);
    let embeddings = TokenTable::new(Arc::new(
        QTensor::quantize(
            &Tensor::from_vec(random(vocab * hidden, 1.0), (vocab, hidden), &device).unwrap(),
            GgmlDType::F32,
        )
        .unwrap(),
    ))
    .unwrap();
    let shape = Shape {
        heads,
        kv_heads,
        hidden,
        head_dim: hd,
        layers: 2,
        positions: 64,
        eps: 1e-5,
    };
    GgufDecoder::assemble(
        &shape,
        embeddings,
        layers,
        ones,
        output,
        Family {
            embed_scale: None,
            attn_scale: 1.0 / (hd as f64).sqrt(),
            scale_queries: false,
            activation: Activation::Silu,
            neox: false,
            logit_softcap: None,
        },
        vec![Rope::new(hd, 10_000.0, 1.0, 64).unwrap()],
    )
}

/// A product of several rows gives each row bit for bit what the row gives alone (a decode
/// step), for every weight type our GGUFs carry: batched decode steps and prompts fed in
/// parts then answer exactly as single steps and whole prompts.
#[test]
fn exact_rows_match_single_rows_bit_for_bit() {
    use rand::{Rng, SeedableRng};
    let device = Device::Cpu;
    let (out, inp, rows) = (64, 512, 11);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut random = |n: usize, spread: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-spread..spread)).collect()
    };
    let w = Tensor::from_vec(random(out * inp, 1.0), (out, inp), &device).unwrap();
    let x = Tensor::from_vec(random(rows * inp, 4.0), (1, rows, inp), &device).unwrap();
    for dtype in [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
        let linear = QLinear {
            matmul: QMatMul::from_arc(q.clone()).unwrap(),
            weight: q,
            bias: None,
            exact: false,
        };
        let together: Vec<Vec<f32>> = linear
            .forward_rows(&x)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (r, row) in together.iter().enumerate() {
            let alone: Vec<f32> = linear
                .forward_rows(&x.narrow(1, r, 1).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(
                row == &alone,
                "{dtype:?}: row {r} differs when computed beside others"
            );
        }
    }
}
