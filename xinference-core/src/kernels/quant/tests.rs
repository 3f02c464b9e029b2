//! Every format on every tier this CPU has, against the definition: candle's dequantized weights
//! times our rounded activations, summed in f64; and every tier bit for bit against the portable
//! one, on random blocks (quantized from random values, and raw random bytes) and on rows of
//! the real test GGUFs.

use super::activation::{ActRow, Acts};
use super::format::{ActFormat, Format, QK_K};
use super::*;
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

/// The activations as the kernels see them, back in f64.
fn act_values(acts: &Acts, r: usize) -> Vec<f64> {
    let row = acts.row(r);
    let block = if acts.format == ActFormat::Q8K {
        QK_K
    } else {
        32
    };
    row.qs
        .iter()
        .enumerate()
        .map(|(i, &q)| q as f64 * row.d[i / block] as f64)
        .collect()
}

/// Checks `w` ([n, k], quantized) on every tier against the f64 definition (relative to the
/// size of the terms) and against the scalar tier bit for bit.
fn check_matrix(what: &str, format: Format, bytes: &[u8], weights: &[f32], x: &[f32], n: usize) {
    let k = weights.len() / n;
    let rows = x.len() / k;
    let matrix = QuantMatrix::new(format, bytes, n, k).expect("whole blocks");
    let acts = Acts::quantize(format.act_format(), x, k);
    let mut scalar = vec![0f32; rows * n];
    matrix.matmul_acts(Tier::Scalar, &acts, &mut scalar);
    for r in 0..rows {
        let xs = act_values(&acts, r);
        for c in 0..n {
            let w = &weights[c * k..(c + 1) * k];
            let exact: f64 = xs.iter().zip(w).map(|(a, b)| a * *b as f64).sum();
            let size: f64 = xs.iter().zip(w).map(|(a, b)| (a * *b as f64).abs()).sum();
            let got = scalar[r * n + c] as f64;
            // Q4_1 / Q5_1 take the activation sums rounded to f16 (as llama.cpp does).
            let slack = match format {
                Format::Q4_1 | Format::Q5_1 => 2e-3,
                _ => 1e-5,
            };
            assert!(
                (got - exact).abs() <= slack * size.max(1e-6),
                "{what} {format:?} row {r} column {c}: {got} vs {exact} (terms {size})"
            );
        }
    }
    for tier in Tier::available() {
        let mut out = vec![0f32; rows * n];
        matrix.matmul_acts(tier, &acts, &mut out);
        assert!(
            out == scalar,
            "{what} {format:?}: tier {tier:?} differs from the portable kernels"
        );
    }
}

fn random(rng: &mut rand::rngs::StdRng, n: usize, spread: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-spread..spread)).collect()
}

fn dequantized(q: &QTensor) -> Vec<f32> {
    q.dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Weights quantized by candle from random values, every format, 1 to 18 activation rows (the
/// single-row kernel, the four-row group, the last rows together and the prompt tiles).
#[test]
fn every_format_matches_its_definition_on_random_blocks() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (n, k) = (37, 512);
    for format in Format::ALL {
        let w = random(&mut rng, n * k, 1.0);
        let q = QTensor::quantize(
            &Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap(),
            format.dtype(),
        )
        .unwrap();
        let bytes = q.data().unwrap();
        let weights = dequantized(&q);
        // One row, one group, groups and the last row, and prompt rows (tiles).
        for rows in [1, 4, 9, 18] {
            let x = random(&mut rng, rows * k, 3.0);
            check_matrix("quantized", format, &bytes, &weights, &x, n);
        }
    }
}

/// `rows × k` values of `format` as GGUF blocks: raw random bytes with sane f16 scales and
/// minimums (every bit pattern of values, fifth bits and sub-block scales) when `raw`, else
/// blocks quantized from random values.
fn random_blocks(
    rng: &mut rand::rngs::StdRng,
    format: Format,
    rows: usize,
    k: usize,
    raw: bool,
) -> Vec<u8> {
    if !raw {
        let w = random(rng, rows * k, 1.0);
        let q = QTensor::quantize(
            &Tensor::from_vec(w, (rows, k), &Device::Cpu).unwrap(),
            format.dtype(),
        )
        .unwrap();
        return q.data().unwrap().to_vec();
    }
    let bb = format.block_bytes();
    let mut bytes: Vec<u8> = (0..rows * k / format.block_values() * bb)
        .map(|_| rng.random())
        .collect();
    // f16 fields: small positive or negative scales.
    let f16_offsets: &[usize] = match format {
        Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => &[0],
        Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K => &[0, 2],
        Format::Q2K => &[80, 82],
        Format::Q3K => &[108],
        Format::Q6K => &[208],
    };
    for block in bytes.chunks_exact_mut(bb) {
        for &o in f16_offsets {
            let v = half::f16::from_f32(rng.random_range(-0.05f32..0.05));
            block[o..o + 2].copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    bytes
}

/// Raw random bytes as blocks (every bit pattern of values, scales and high bits), with
/// sane f16 scales.
#[test]
fn every_format_matches_its_definition_on_random_bytes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let (n, k) = (19, 768);
    for format in Format::ALL {
        if k % format.block_values() != 0 {
            continue;
        }
        let bytes = random_blocks(&mut rng, format, n, k, true);
        let q = qtensor_from_ggml(format.dtype(), &bytes, vec![n, k], &Device::Cpu).unwrap();
        let weights = dequantized(&q);
        for rows in [1, 5] {
            let x = random(&mut rng, rows * k, 3.0);
            check_matrix("random bytes", format, &bytes, &weights, &x, n);
        }
    }
}

/// Our Q8_0 and Q8_K rounding is llama.cpp's x86 rounding: candle's (its reference quantizers)
/// but for exact ties, which go to even (candle's go away from zero), and Q8_1's block sums are
/// llama.cpp's `f16(d · Σ q)` with the unrounded `d`.
#[test]
fn activations_round_as_llama_cpp_rounds_them() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let k = 1024;
    let x = random(&mut rng, 3 * k, 5.0);
    for (format, dtype) in [
        (ActFormat::Q8_0, GgmlDType::Q8_0),
        (ActFormat::Q8K, GgmlDType::Q8K),
    ] {
        let ours = Acts::quantize(format, &x, k);
        let theirs = QTensor::quantize(
            &Tensor::from_vec(x.clone(), (3, k), &Device::Cpu).unwrap(),
            dtype,
        )
        .unwrap();
        let theirs = dequantized(&theirs);
        // Random data hits an exact tie about once in 10^5 values: at most one differs here.
        let mut differ = 0;
        for r in 0..3 {
            let mine: Vec<f32> = act_values(&ours, r).iter().map(|v| *v as f32).collect();
            differ += mine
                .iter()
                .zip(&theirs[r * k..(r + 1) * k])
                .filter(|(a, b)| a != b)
                .count();
        }
        assert!(
            differ <= 1,
            "{format:?}: {differ} values differ from candle's"
        );
        if format == ActFormat::Q8K {
            for (b, sums) in ours.bsums.chunks(16).enumerate() {
                let qs = &ours.qs[b * QK_K..(b + 1) * QK_K];
                for (g, s) in sums.iter().enumerate() {
                    let want: i32 = qs[16 * g..16 * g + 16].iter().map(|&q| q as i32).sum();
                    assert_eq!(*s as i32, want);
                }
            }
        }
    }
    // Exact ties: with max|x| = 127 the scale is 1, and 2.5 / -3.5 / 4.5 round to even.
    let mut tie = vec![0f32; QK_K];
    tie[0] = 127.0;
    tie[1] = 2.5;
    tie[2] = -3.5;
    tie[3] = 4.5;
    let q8_0 = Acts::quantize(ActFormat::Q8_0, &tie, QK_K);
    assert_eq!(&q8_0.qs[..4], &[127, 2, -4, 4]);
    // Q8K scales by -127 / max: the same ties, negated.
    let q8k = Acts::quantize(ActFormat::Q8K, &tie, QK_K);
    assert_eq!(&q8k.qs[..4], &[-127, -2, 4, -4]);
    let q8_0 = Acts::quantize(ActFormat::Q8_0, &x, k);
    let q8_1 = Acts::quantize(ActFormat::Q8_1, &x, k);
    assert_eq!(q8_0.qs, q8_1.qs);
    assert_eq!(q8_0.d, q8_1.d);
    for (b, s) in q8_1.s.iter().enumerate() {
        let block = &x[b * 32..(b + 1) * 32];
        let d = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        let sum: i32 = q8_1.qs[b * 32..(b + 1) * 32]
            .iter()
            .map(|&q| q as i32)
            .sum();
        let want = half::f16::from_f32(d * sum as f32);
        assert_eq!(*s, want.to_f32(), "block {b}");
    }
}

/// A row gives the same bits alone, in a group of four, among the last two or three rows, in
/// a product split over threads, and whatever other rows are computed beside it.
#[test]
fn rows_give_the_same_bits_in_any_company() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let (n, k) = (300, 1024);
    for format in [
        Format::Q4_1,
        Format::Q5_0,
        Format::Q8_0,
        Format::Q4K,
        Format::Q6K,
    ] {
        let w = random(&mut rng, n * k, 1.0);
        let q = QTensor::quantize(
            &Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap(),
            format.dtype(),
        )
        .unwrap();
        let bytes = q.data().unwrap();
        let matrix = QuantMatrix::new(format, &bytes, n, k).unwrap();
        // Groups of four, then the last three, two or one rows together; prompt tiles.
        for rows in [11, 10, 9, 3, 2, 17] {
            let x = random(&mut rng, rows * k, 2.0);
            let mut together = vec![0f32; rows * n];
            matrix.matmul(&x, &mut together);
            for r in 0..rows {
                let mut alone = vec![0f32; n];
                matrix.matmul(&x[r * k..(r + 1) * k], &mut alone);
                assert!(
                    alone[..] == together[r * n..(r + 1) * n],
                    "{format:?}: row {r} of {rows} differs beside other rows"
                );
            }
        }
    }
}

use crate::test_models;

/// Rows of every quantized tensor type in the three test GGUFs (SmolLM2 Q4_1: Q4_1, Q8_0;
/// Qwen2.5 and Gemma 3 Q4_K_M: Q5_0, Q8_0, Q4_K, Q6_K), against the definition and across
/// tiers, with activations of a realistic spread.
#[test]
fn real_gguf_rows_match_their_definition() {
    use candle_core::quantized::gguf_file::Content;
    let dir = test_models();
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let mut seen = Vec::new();
    for file in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ] {
        let path = dir.join(file);
        let mut reader = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{} ({e}): fetch the test models", path.display()));
        let ct = Content::read(&mut reader).unwrap();
        let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
        names.sort();
        let mut done = std::collections::HashSet::new();
        for name in names {
            let info = &ct.tensor_infos[name];
            let Some(format) = Format::of(info.ggml_dtype) else {
                continue;
            };
            // One tensor per type and file; the first layer's, or the token table.
            if done.contains(&format)
                || !(name.starts_with("blk.0.") || name == "token_embd.weight")
            {
                continue;
            }
            done.insert(format);
            seen.push(format);
            let q = ct.tensor(&mut reader, name, &Device::Cpu).unwrap();
            let (n, k) = q.shape().dims2().unwrap();
            let take = n.min(24);
            let bytes = q.data().unwrap();
            let row_bytes = bytes.len() / n;
            let weights = dequantized(&q);
            let x = random(&mut rng, 5 * k, 2.0);
            check_matrix(
                &format!("{file} {name}"),
                format,
                &bytes[..take * row_bytes],
                &weights[..take * k],
                &x,
                take,
            );
        }
    }
    for format in [
        Format::Q4_1,
        Format::Q8_0,
        Format::Q5_0,
        Format::Q4K,
        Format::Q6K,
    ] {
        assert!(seen.contains(&format), "no {format:?} tensor was checked");
    }
}

/// `ActRow` is plain borrowed data: the kernels can run on rows of different `Acts`.
#[test]
fn kernels_take_rows_of_separate_activation_sets() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let k = 256;
    let w = random(&mut rng, 2 * k, 1.0);
    let q = QTensor::quantize(
        &Tensor::from_vec(w, (2, k), &Device::Cpu).unwrap(),
        GgmlDType::Q4K,
    )
    .unwrap();
    let bytes = q.data().unwrap();
    let a = Acts::quantize(ActFormat::Q8K, &random(&mut rng, k, 1.0), k);
    let b = Acts::quantize(ActFormat::Q8K, &random(&mut rng, k, 1.0), k);
    let rows: [ActRow<'_>; 2] = [a.row(0), b.row(0)];
    let both = kernel::<2>(Format::Q4K, Tier::current())(&bytes[..144], &rows);
    let one = kernel::<1>(Format::Q4K, Tier::current());
    assert_eq!(
        both,
        [
            one(&bytes[..144], &[a.row(0)])[0],
            one(&bytes[..144], &[b.row(0)])[0]
        ]
    );
}

/// Products run together ([`matmul_many`] / [`qtensor_matmuls`]: q, k and v of one input, of
/// different formats and sizes, large enough to be split over the threads) give each product
/// bit for bit as alone.
#[test]
fn products_together_are_the_products_alone() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let device = Device::Cpu;
    let k = 512;
    for rows in [1, 5] {
        let x = random(&mut rng, rows * k, 3.0);
        let xt = Tensor::from_vec(x.clone(), (1, rows, k), &device).unwrap();
        let ws: Vec<QTensor> = [
            (GgmlDType::Q4_1, 384),
            (GgmlDType::Q5_0, 64),
            (GgmlDType::Q6K, 200),
            (GgmlDType::Q4_1, 1000),
        ]
        .into_iter()
        .map(|(dtype, n)| {
            let w = Tensor::from_vec(random(&mut rng, n * k, 1.0), (n, k), &device).unwrap();
            QTensor::quantize(&w, dtype).unwrap()
        })
        .collect();
        let refs: Vec<&QTensor> = ws.iter().collect();
        let together = qtensor_matmuls(&refs, &xt)
            .unwrap()
            .expect("kernels cover these");
        for (w, got) in ws.iter().zip(&together) {
            let format = Format::of(w.dtype()).unwrap();
            let (n, _) = w.shape().dims2().unwrap();
            let data = w.data().unwrap();
            let matrix = QuantMatrix::new(format, &data, n, k).unwrap();
            let mut alone = vec![0f32; rows * n];
            matrix.matmul(&x, &mut alone);
            assert_eq!(got.dims(), &[1, rows, n]);
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                got == alone,
                "{format:?} ({rows} rows) differs when run with others"
            );
        }
    }
}

/// Every tile kernel (the small-block formats, Q4_K and Q6_K) gives, for each weight row and
/// activation row, the bits of the row kernels (four rows together and one alone) and of the
/// portable kernel, on random bytes (every bit pattern of values, scales and minimums) and on
/// blocks quantized from random values; and the dequantize-then-dot definition in f64.
#[test]
fn tiles_give_the_bits_of_the_row_kernels() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let k = 1024;
    for format in Format::ALL {
        for tier in Tier::available() {
            let Some(tile) = tile_kernel(format, tier) else {
                continue;
            };
            let group = kernel::<GROUP>(format, tier);
            let portable = kernel::<1>(format, Tier::Scalar);
            for random_bytes in [false, true] {
                let bytes = random_blocks(&mut rng, format, TILE, k, random_bytes);
                let q =
                    qtensor_from_ggml(format.dtype(), &bytes, vec![TILE, k], &Device::Cpu).unwrap();
                let weights = dequantized(&q);
                let acts =
                    Acts::quantize(format.act_format(), &random(&mut rng, GROUP * k, 3.0), k);
                let rb = bytes.len() / TILE;
                let w: [&[u8]; TILE] = std::array::from_fn(|i| &bytes[i * rb..(i + 1) * rb]);
                let a: [ActRow<'_>; GROUP] = std::array::from_fn(|j| acts.row(j));
                let got = tile(&w, &a);
                for (i, row) in w.iter().enumerate() {
                    let want = group(row, &a);
                    assert_eq!(
                        got[i], want,
                        "{format:?} {tier:?}: tile row {i} vs rows of four"
                    );
                    for (j, act) in a.iter().enumerate() {
                        let alone = portable(row, &[*act])[0];
                        assert_eq!(
                            got[i][j], alone,
                            "{format:?} {tier:?}: ({i}, {j}) vs portable"
                        );
                        let xs = act_values(&acts, j);
                        let ws = &weights[i * k..(i + 1) * k];
                        let exact: f64 = xs.iter().zip(ws).map(|(x, w)| x * *w as f64).sum();
                        let size: f64 = xs.iter().zip(ws).map(|(x, w)| (x * *w as f64).abs()).sum();
                        let slack = match format {
                            Format::Q4_1 | Format::Q5_1 => 2e-3,
                            _ => 1e-5,
                        };
                        assert!(
                            (got[i][j] as f64 - exact).abs() <= slack * size.max(1e-6),
                            "{format:?} {tier:?} ({i}, {j}): {} vs {exact}",
                            got[i][j]
                        );
                    }
                }
            }
        }
    }
}

/// Every panel kernel (the small-block formats, Q4_K and Q6_K) gives, for each weight row and
/// activation row, the bits of the row kernels (four rows together) and of the portable
/// kernel, on random bytes (every bit pattern of values, fifth bits, scales and minimums) and
/// on blocks quantized from random values; a panel refilled with other rows forgets the first
/// ones.
#[test]
fn panels_give_the_bits_of_the_row_kernels() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    let (rows, k) = (3 * TILE, 768);
    for format in Format::ALL {
        for tier in Tier::available() {
            let Some(panel) = panel_kernel(format, tier) else {
                continue;
            };
            let group = kernel::<GROUP>(format, tier);
            let portable = kernel::<1>(format, Tier::Scalar);
            let mut held = Panel::default();
            for random_bytes in [false, true] {
                let bytes = random_blocks(&mut rng, format, rows, k, random_bytes);
                let acts =
                    Acts::quantize(format.act_format(), &random(&mut rng, GROUP * k, 3.0), k);
                let a: [ActRow<'_>; GROUP] = std::array::from_fn(|j| acts.row(j));
                (panel.unpack)(&bytes, rows, &mut held);
                let mut got = vec![[0f32; GROUP]; rows];
                (panel.run)(&mut held, &a, &mut got);
                let rb = bytes.len() / rows;
                for (i, got) in got.iter().enumerate() {
                    let row = &bytes[i * rb..(i + 1) * rb];
                    assert_eq!(
                        *got,
                        group(row, &a),
                        "{format:?} {tier:?}: panel row {i} vs rows of four"
                    );
                    for (j, act) in a.iter().enumerate() {
                        assert_eq!(
                            got[j],
                            portable(row, &[*act])[0],
                            "{format:?} {tier:?}: ({i}, {j}) vs portable"
                        );
                    }
                }
            }
        }
    }
}

/// Every decode kernel (one activation row against a run of weight rows) gives each row the
/// bits of the portable kernel, on random bytes (every bit pattern of values, fifth bits,
/// scales and minimums) and on blocks quantized from random values, for runs of one and of
/// seven rows.
#[test]
fn decode_kernels_give_the_bits_of_the_portable_kernel() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let k = 512;
    for format in Format::ALL {
        let portable = kernel::<1>(format, Tier::Scalar);
        for tier in Tier::available() {
            let Some(rows_of) = rows_kernel(format, tier) else {
                continue;
            };
            for (random_bytes, n) in [(false, 1), (false, 7), (true, 1), (true, 7)] {
                let bytes = random_blocks(&mut rng, format, n, k, random_bytes);
                let acts = Acts::quantize(format.act_format(), &random(&mut rng, k, 3.0), k);
                let mut got = vec![f32::NAN; n];
                rows_of(&bytes, &acts.row(0), &mut got);
                let rb = bytes.len() / n;
                for (i, got) in got.iter().enumerate() {
                    let want = portable(&bytes[i * rb..(i + 1) * rb], &[acts.row(0)])[0];
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{format:?} {tier:?}: row {i} of {n}"
                    );
                }
            }
        }
    }
}
