//! Our quantized kernels against candle's, A/B and interleaved in one process (so that a
//! machine whose load drifts affects both alike): per real GGUF matrix, one row (decode) and
//! 128 rows (a prompt), beside candle's `QMatMul` and, for prompts, a dequantize-then-f32
//! GEMM (the decoder's former prompt path); then whole-model decode and 128-token prefill
//! tokens/s with our kernels (the decoder's default) and with candle's `QMatMul`
//! (`XINFERENCE_QUANT_KERNELS=0`); and the prompt panels on and off for products of the shapes
//! of Qwen2.5-0.5B and Gemma 3 270M (128 rows, random weights).
//! Prints medians and the ratios.
//!
//!     CANDLE_NUM_THREADS=2 cargo bench --workspace --bench quant
//!
//! `XINFERENCE_BENCH_QUANT=rows` runs only the decode row kernels beside llama.cpp's, one
//! thread, weights in cache (see `rows`):
//!
//!     XINFERENCE_BENCH_QUANT=rows \
//!     XINFERENCE_BENCH_GGML_ROWS=~/.cache/xinference-rs/llamacpp/build/bin/vec-dot-rows \
//!     cargo bench --workspace --bench quant
//!
//! Not a test: it asserts nothing about speed.

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use xinference::kernels::quant::{qtensor_matmul, set_enabled, set_panels};
use xinference::llm::{argmax, LlmEngine};

fn models() -> PathBuf {
    let dir = std::env::var_os("XINFERENCE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/xinference-rs/test-models")
        });
    assert!(
        dir.is_dir(),
        "{} is missing: run `python3 scripts/fetch-test-models.py smollm2 qwen gemma` first",
        dir.display()
    );
    dir
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per call of each of `fs`, interleaved `reps` times, medians.
fn interleaved(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut times = vec![Vec::new(); fs.len()];
    for f in fs.iter_mut() {
        f(); // warm up (and let candle build its repacked copies)
    }
    for _ in 0..reps {
        for (i, f) in fs.iter_mut().enumerate() {
            let t = Instant::now();
            f();
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    times.into_iter().map(median).collect()
}

fn kernels() {
    set_enabled(true);
    println!("## Kernels: one matrix, candle vs ours (medians of interleaved runs)");
    println!("| matrix | type | rows | candle QMatMul ms | dequant + f32 GEMM ms | ours ms | ours vs candle | ours vs dequant |");
    println!("|---|---|---|---|---|---|---|---|");
    let dir = models();
    let picks = [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "blk.0.ffn_up.weight"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "token_embd.weight"),
        (
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "blk.0.ffn_gate.weight",
        ),
        (
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "blk.0.ffn_down.weight",
        ),
        (
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "blk.0.attn_v.weight",
        ),
        ("gemma-3-270m-q4_k_m.gguf", "blk.0.attn_output.weight"),
    ];
    let device = Device::Cpu;
    for (file, name) in picks {
        let mut reader = std::fs::File::open(dir.join(file)).expect("test model");
        let ct = Content::read(&mut reader).expect("gguf");
        let q = Arc::new(ct.tensor(&mut reader, name, &device).expect("tensor"));
        let (n, k) = q.shape().dims2().unwrap();
        let candle = QMatMul::from_arc(q.clone()).unwrap();
        for rows in [1usize, 128] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, k), &device).unwrap();
            let reps = if rows == 1 { 30 } else { 5 };
            let mut ours = || {
                qtensor_matmul(&q, &x).unwrap().unwrap();
            };
            let mut theirs = || {
                candle.forward(&x).unwrap();
            };
            let rounding = match q.dtype() {
                GgmlDType::Q4_0
                | GgmlDType::Q4_1
                | GgmlDType::Q5_0
                | GgmlDType::Q5_1
                | GgmlDType::Q8_0 => GgmlDType::Q8_0,
                _ => GgmlDType::Q8K,
            };
            let mut dequant = || {
                let xr = QTensor::quantize(&x, rounding)
                    .unwrap()
                    .dequantize(&device)
                    .unwrap()
                    .reshape(x.shape())
                    .unwrap();
                let w = q.dequantize(&device).unwrap();
                xr.broadcast_matmul(&w.t().unwrap()).unwrap();
            };
            let t = if rows == 1 {
                let t = interleaved(reps, &mut [&mut theirs, &mut ours]);
                vec![t[0], f64::NAN, t[1]]
            } else {
                interleaved(reps, &mut [&mut theirs, &mut dequant, &mut ours])
            };
            println!(
                "| {file} {name} [{n}x{k}] | {:?} | {rows} | {:.3} | {} | {:.3} | {:.2}x | {} |",
                q.dtype(),
                t[0] * 1e3,
                if t[1].is_nan() {
                    "-".into()
                } else {
                    format!("{:.3}", t[1] * 1e3)
                },
                t[2] * 1e3,
                t[0] / t[2],
                if t[1].is_nan() {
                    "-".into()
                } else {
                    format!("{:.2}x", t[1] / t[2])
                },
            );
        }
    }
}

fn prompt(engine: &LlmEngine, n: usize) -> Vec<u32> {
    let text = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills. "
        .repeat(n);
    let mut ids = engine.tokenize(&text).expect("tokenize");
    ids.truncate(n);
    ids
}

fn decode_and_prefill() {
    println!();
    println!("## Whole model, in process: candle's QMatMul (XINFERENCE_QUANT_KERNELS=0) vs our kernels (interleaved, medians)");
    println!("| model | decode candle tok/s | decode ours tok/s | ratio | prefill 128 candle tok/s | prefill 128 ours tok/s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    let dir = models();
    for file in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ] {
        let mut engine = LlmEngine::load_gguf(&dir.join(file), None, &[], &[]).expect("load");
        let ids = prompt(&engine, 128);
        let steps = 32;
        let mut decode = [Vec::new(), Vec::new()];
        let mut prefill = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (i, ours) in [false, true].into_iter().enumerate() {
                set_enabled(ours);
                let t = Instant::now();
                let mut logits = engine.forward_for_bench(&ids, 0);
                prefill[i].push(ids.len() as f64 / t.elapsed().as_secs_f64());
                let t = Instant::now();
                for s in 0..steps {
                    let next = argmax(&logits);
                    logits = engine.forward_for_bench(&[next], ids.len() + s);
                }
                decode[i].push(steps as f64 / t.elapsed().as_secs_f64());
            }
        }
        set_enabled(true);
        let [dc, dours] = decode.map(median);
        let [pc, pours] = prefill.map(median);
        println!(
            "| {file} | {dc:.1} | {dours:.1} | {:.2}x | {pc:.1} | {pours:.1} | {:.2}x |",
            dours / dc,
            pours / pc
        );
    }
}

/// 128-row products of Qwen2.5-0.5B's shapes (896 -> 4864 Q5_0, 4864 -> 896 Q4_K / Q6_K) and
/// Gemma 3 270M's, random weights, with the prompt panels on and off, alternating.
fn panels() {
    let rows = 128;
    for (dtype, n, k) in [
        (GgmlDType::Q5_0, 4864, 896),
        (GgmlDType::Q8_0, 896, 896),
        (GgmlDType::Q4K, 896, 4864),
        (GgmlDType::Q6K, 896, 4864),
        (GgmlDType::Q5_0, 2048, 640),
        (GgmlDType::Q4K, 640, 2048),
    ] {
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, rows, k), &Device::Cpu).unwrap();
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..7 {
            for (i, on) in [true, false].into_iter().enumerate() {
                set_panels(on);
                let t = Instant::now();
                qtensor_matmul(&q, &x)
                    .unwrap()
                    .expect("our kernels take this format");
                times[i].push(t.elapsed().as_secs_f64());
            }
        }
        set_panels(true);
        let [on, off] = times.map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        });
        println!(
            "{dtype:?} {n}x{k}, {rows} rows: panels {:.2} ms, tiles {:.2} ms: {:.2}x",
            on * 1e3,
            off * 1e3,
            off / on
        );
    }
}

/// llama.cpp's decode row kernels (the `vec-dot-rows` binary named by
/// `XINFERENCE_BENCH_GGML_ROWS`): `"<format> <n>x<k>"` -> microseconds per matrix; empty
/// without that variable.
fn ggml_rows() -> std::collections::HashMap<String, f64> {
    let mut peer = std::collections::HashMap::new();
    if let Some(bin) = std::env::var_os("XINFERENCE_BENCH_GGML_ROWS") {
        let out = std::process::Command::new(&bin)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", PathBuf::from(&bin).display()));
        assert!(out.status.success(), "vec-dot-rows failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((key, us)) = line.rsplit_once(' ') {
                peer.insert(key.to_owned(), us.parse::<f64>().expect("microseconds"));
            }
        }
    }
    peer
}

/// One activation row against every row of a matrix small enough to stay in the L2 cache,
/// one thread, per format and tier: the cost of the decode kernels themselves when memory is
/// not what limits them (as on CPUs whose L3 holds a whole model), without the pass's
/// rounding, splitting or threads. With `XINFERENCE_BENCH_GGML_ROWS` naming the
/// `vec-dot-rows` binary of `scripts/fixtures/build_llama_cpp.sh`
/// (`scripts/ggml/vec_dot_rows.c`), llama.cpp's kernels on the same shapes are timed before
/// and after each tier's (the faster of the two kept: a machine whose speed drifts
/// over the minutes of a run drifts less between neighbours) and the ratio printed.
fn rows() {
    use xinference::kernels::quant::activation::Acts;
    use xinference::kernels::quant::format::Format;
    use xinference::kernels::quant::{rows_kernel, Tier};
    println!("## Decode row kernels, one thread, cache-resident weights (medians of 9)");
    println!("| tier | format | matrix | ours us | llama.cpp us | ratio |");
    println!("|---|---|---|---|---|---|");
    let formats = [
        (GgmlDType::Q4_0, Format::Q4_0),
        (GgmlDType::Q4_1, Format::Q4_1),
        (GgmlDType::Q5_0, Format::Q5_0),
        (GgmlDType::Q5_1, Format::Q5_1),
        (GgmlDType::Q8_0, Format::Q8_0),
        (GgmlDType::Q4K, Format::Q4K),
        (GgmlDType::Q5K, Format::Q5K),
        (GgmlDType::Q6K, Format::Q6K),
    ];
    let mut before = ggml_rows();
    for tier in Tier::available().into_iter().filter(|t| *t != Tier::Scalar) {
        let mut ours = Vec::new();
        for (dtype, format) in formats {
            for (n, k) in [(1536usize, 576usize), (576, 1536), (896, 4864)] {
                if !k.is_multiple_of(format.block_values()) {
                    continue;
                }
                let w = Tensor::randn(0f32, 0.5, (n, k), &Device::Cpu).unwrap();
                let q = QTensor::quantize(&w, dtype).unwrap();
                let bytes = q.data().unwrap();
                let x: Vec<f32> = Tensor::randn(0f32, 0.5, k, &Device::Cpu)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let acts = Acts::quantize(format.act_format(), &x, k);
                let a = [acts.row(0)];
                let rows_of = rows_kernel(format, tier).expect("a decode kernel");
                let mut out = vec![0f32; n];
                let reps = 2_000_000 / n / (k / 256 + 1) + 5;
                let mut times = Vec::new();
                for _ in 0..9 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        rows_of(&bytes, &a[0], &mut out);
                    }
                    times.push(t.elapsed().as_secs_f64() / reps as f64);
                }
                std::hint::black_box(&out);
                ours.push((format!("{format:?} {n}x{k}"), median(times) * 1e6));
            }
        }
        let after = ggml_rows();
        for (key, us) in ours {
            let theirs = match (before.get(&key), after.get(&key)) {
                (Some(a), Some(b)) => Some(a.min(*b)),
                (one, other) => one.or(other).copied(),
            };
            let (format, matrix) = key.split_once(' ').expect("format and shape");
            println!(
                "| {tier:?} | {format} | {matrix} | {us:.1} | {} | {} |",
                theirs.map_or("-".into(), |t| format!("{t:.1}")),
                theirs.map_or("-".into(), |t| format!("{:.2}x", t / us)),
            );
        }
        before = after;
    }
}

fn main() {
    if std::env::var("XINFERENCE_BENCH_QUANT").as_deref() == Ok("rows") {
        rows();
        return;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    kernels();
    panels();
    decode_and_prefill();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
}
