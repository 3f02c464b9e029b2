//! Where Whisper's time goes, for the 4-concurrent-requests target of the audio bench: the
//! encoder by part, encoder attention by query block size, decoder steps of 1, 2 and 4
//! requests (decoder layers and logits apart), their cross-attention alone, and the step on a
//! pool of one thread against two (is it bound by memory?). Ignored tests that print; run by hand
//! on tiny.en:
//!
//!     RAYON_NUM_THREADS=2 cargo test --release --workspace --lib audio::model::profile \
//!         -- --ignored --nocapture --test-threads 1

use super::*;
use crate::audio::passes::tests::tiny_en;
use rayon::prelude::*;
use std::time::Instant;

fn window() -> Vec<f32> {
    use crate::audio::mel::{log_mel, N_FRAMES};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/audio/long_en.flac");
    let samples = crate::audio::input::decode_audio(&std::fs::read(path).unwrap()).unwrap();
    let (features, frames) = log_mel(&samples, 80, 160);
    crate::audio::decode::window_mel(&features, frames, 80, 0, N_FRAMES.min(frames - 1))
}

/// CPU time of this process so far (user + system, from `/proc/self/stat`; 10 ms ticks).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the line (utime, stime), 11 and 12 after the command name.
    (ticks(11) + ticks(12)) * 10.0
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

#[test]
#[ignore]
fn profile_phases() {
    let model = tiny_en();
    let net = &model.net;
    let mel = window();
    let x = Tensor::from_slice(&mel, (1, 80, 3000), &Device::Cpu).unwrap();
    let _ = net.encode(&x).unwrap();
    for _ in 0..2 {
        let t = Instant::now();
        let a = net.encode(&x).unwrap();
        let e = ms(t);
        let t = Instant::now();
        let _ = net.start(&a).unwrap();
        println!(
            "encode one window {e:.1} ms, start (cross k/v) {:.1} ms",
            ms(t)
        );
    }
    let t = Instant::now();
    kernels::on_pool(|| rayon::join(|| net.encode(&x).unwrap(), || net.encode(&x).unwrap()));
    println!("two windows side by side {:.1} ms", ms(t));
    let audio = net.start(&net.encode(&x).unwrap()).unwrap();
    let sot = model.special.sot;
    let steps = 60;
    for rows in [1usize, 2, 4] {
        let mut states: Vec<DecoderState> = (0..rows).map(|_| audio.clone()).collect();
        for s in &mut states {
            net.decode(&[sot], s).unwrap();
        }
        let toks: Vec<Vec<u32>> = (0..rows).map(|r| vec![300 + r as u32]).collect();
        let (mut dec, mut lg) = (0.0, 0.0);
        for _ in 0..steps {
            let t = Instant::now();
            let hs = {
                let mut group: Vec<Step> = toks
                    .iter()
                    .zip(states.iter_mut())
                    .map(|(tk, state)| Step { tokens: tk, state })
                    .collect();
                net.decode_many(&mut group).unwrap()
            };
            dec += ms(t);
            let t = Instant::now();
            let _ = net.logits_rows(&Tensor::cat(&hs, 0).unwrap()).unwrap();
            lg += ms(t);
        }
        println!(
            "{rows} request(s) x 1 row: decoder {:.2} ms/step, logits {:.2} ms/step",
            dec / steps as f64,
            lg / steps as f64
        );
    }
    // Cross-attention alone: every layer and head of `rows` requests, as the pass does.
    let d = net.dims.d_model;
    let nh = net.dims.decoder_heads;
    for rows in [1usize, 4] {
        let states: Vec<DecoderState> = (0..rows).map(|_| audio.clone()).collect();
        let q = vec![0.01f32; d];
        let t = Instant::now();
        for _ in 0..steps {
            for l in 0..net.decoder.len() {
                kernels::on_pool(|| {
                    let tasks: Vec<(usize, usize)> = (0..rows)
                        .flat_map(|r| (0..nh).map(move |h| (r, h)))
                        .collect();
                    let _: Vec<_> = tasks
                        .par_iter()
                        .map(|&(r, h)| {
                            let kv = &states[r].cross_kv[l];
                            attention::cross_attention_head(
                                &q,
                                &kv.kt,
                                &kv.v,
                                h,
                                (1, d, nh, kv.frames),
                                false,
                            )
                        })
                        .collect();
                });
            }
        }
        println!(
            "{rows} request(s): cross-attention {:.2} ms/step",
            ms(t) / steps as f64
        );
    }
}

#[test]
#[ignore]
fn profile_encoder() {
    let model = tiny_en();
    let net = &model.net;
    let mel = window();
    let x = Tensor::from_slice(&mel, (1, 80, 3000), &Device::Cpu).unwrap();
    let _ = net.encode(&x).unwrap();
    for _ in 0..3 {
        kernels::on_pool(|| {
            let mut times = [0f64; 7];
            let t = Instant::now();
            let c1 = gelu(&net.conv1.forward(&x).unwrap()).unwrap();
            times[0] += ms(t);
            let t = Instant::now();
            let c2 = gelu(&net.conv2.forward(&c1).unwrap()).unwrap();
            times[1] += ms(t);
            let (_, d, tt) = c2.dims3().unwrap();
            let rows = tt;
            let mut xs = c2
                .squeeze(0)
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for block in &net.encoder {
                let t = Instant::now();
                let qkv = block
                    .qkv
                    .forward_rows(&block.attn_ln.forward(&xs), rows, None)
                    .unwrap();
                times[2] += ms(t);
                let t = Instant::now();
                let mut y = vec![0f32; rows * d];
                encoder_attention(&qkv, &mut y, (1, tt, d, block.heads));
                times[3] += ms(t);
                let t = Instant::now();
                xs = block.attn_out.forward_rows(&y, rows, Some(&xs)).unwrap();
                times[4] += ms(t);
                let t = Instant::now();
                let mut h = block
                    .mlp
                    .fc1
                    .forward_rows(&block.mlp.ln.forward(&xs), rows, None)
                    .unwrap();
                times[5] += ms(t);
                let t = Instant::now();
                kernels::Activation::Gelu.apply(&mut h);
                xs = block.mlp.fc2.forward_rows(&h, rows, Some(&xs)).unwrap();
                times[6] += ms(t);
            }
            println!(
                "conv1 {:.1} conv2 {:.1} qkv {:.1} attention {:.1} out {:.1} fc1 {:.1} gelu+fc2 {:.1} (ms, total {:.1})",
                times[0], times[1], times[2], times[3], times[4], times[5], times[6],
                times.iter().sum::<f64>()
            );
        });
    }
}

/// The fused encoder attention against the `gemm` one it replaced (query blocks of 256),
/// alternating in the same run: wall time per layer of tiny.en's shape on the pool.
#[test]
#[ignore]
fn profile_encoder_attention_blocks() {
    let (t, d, heads) = (1500usize, 384usize, 6usize);
    let qkv: Vec<f32> = (0..t * 3 * d)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut out = vec![0f32; t * d];
    for _ in 0..4 {
        for fused in [false, true] {
            let (start, cpu) = (Instant::now(), cpu_ms());
            kernels::on_pool(|| {
                for _ in 0..8 {
                    if fused {
                        encoder_attention(&qkv, &mut out, (1, t, d, heads));
                    } else {
                        attention::encoder_attention_gemm(&qkv, &mut out, (1, t, d, heads), 256);
                    }
                }
            });
            let name = if fused {
                "fused"
            } else {
                "gemm, blocks of 256"
            };
            println!(
                "{name}: {:.1} ms per layer, {:.1} CPU ms",
                ms(start) / 8.0,
                (cpu_ms() - cpu) / 8.0
            );
        }
    }
}

/// Whole encoder passes of one window with the fused attention and the `gemm` one,
/// alternating (wall time on the pool).
#[test]
#[ignore]
fn profile_encoder_fused_against_gemm() {
    let model = tiny_en();
    let net = &model.net;
    let x = Tensor::from_slice(&window(), (1, 80, 3000), &Device::Cpu).unwrap();
    let _ = net.encode(&x).unwrap();
    for _ in 0..4 {
        let (t, cpu) = (Instant::now(), cpu_ms());
        kernels::on_pool(|| net.encode_with(&x, gemm_attention).unwrap());
        let (before, before_cpu) = (ms(t), cpu_ms() - cpu);
        let (t, cpu) = (Instant::now(), cpu_ms());
        net.encode(&x).unwrap();
        println!(
            "encode one window: gemm attention {before:.1} ms ({before_cpu:.0} CPU ms), fused {:.1} ms ({:.0} CPU ms)",
            ms(t),
            cpu_ms() - cpu
        );
    }
}

/// Decoder steps of 1 and 4 requests on a pool of one thread (is the step bound by memory?).
#[test]
#[ignore]
fn profile_decoder_one_thread() {
    let model = tiny_en();
    let net = &model.net;
    let mel = window();
    let x = Tensor::from_slice(&mel, (1, 80, 3000), &Device::Cpu).unwrap();
    let audio = net.start(&net.encode(&x).unwrap()).unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let sot = model.special.sot;
    let steps = 40;
    for threads in [1usize, 2] {
        for rows in [1usize, 4] {
            let mut states: Vec<DecoderState> = (0..rows).map(|_| audio.clone()).collect();
            for s in &mut states {
                net.decode(&[sot], s).unwrap();
            }
            let toks: Vec<Vec<u32>> = (0..rows).map(|r| vec![300 + r as u32]).collect();
            let mut run = || {
                let t = Instant::now();
                for _ in 0..steps {
                    let mut group: Vec<Step> = toks
                        .iter()
                        .zip(states.iter_mut())
                        .map(|(tk, state)| Step { tokens: tk, state })
                        .collect();
                    let hs = net.decode_many(&mut group).unwrap();
                    let _ = net.logits_rows(&Tensor::cat(&hs, 0).unwrap()).unwrap();
                }
                ms(t) / steps as f64
            };
            let per = if threads == 1 {
                one.install(&mut run)
            } else {
                run()
            };
            println!("{threads} thread(s), {rows} request(s): {per:.2} ms per step with logits");
        }
    }
    let t = Instant::now();
    one.install(|| net.encode(&x).unwrap());
    println!("encode one window on one thread {:.1} ms", ms(t));
}
