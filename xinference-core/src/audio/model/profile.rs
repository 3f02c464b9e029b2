//! Where Whisper's time goes, for the 4-concurrent-requests target of the audio bench: the
//! encoder by part, decoder steps of 1, 2 and 4 requests (decoder layers and logits apart),
//! their cross-attention alone, and the step on a pool of one thread against two (is it bound
//! by memory?). Not part of the API: `benches/audio.rs` runs these with
//! `XINFERENCE_BENCH_WHISPER_PROFILE` (see there); they print what they measure.

use super::*;
use crate::audio::whisper::WhisperModel;
use rayon::prelude::*;
use std::time::Instant;

/// The log-mel features of the first 30 s window of `audio` (an audio file's bytes), for a
/// model of `n_mels` bins.
pub fn first_window(audio: &[u8], n_mels: usize) -> Result<Vec<f32>> {
    use crate::audio::mel::{log_mel, N_FRAMES};
    let samples = crate::audio::input::decode_audio(audio)?;
    let (features, frames) = log_mel(&samples, n_mels, 160);
    Ok(crate::audio::decode::window_mel(
        &features,
        frames,
        n_mels,
        0,
        N_FRAMES.min(frames - 1),
    ))
}

/// CPU time of this process so far, in ms ([`crate::compute::process_cpu_seconds`]).
fn cpu_ms() -> f64 {
    crate::compute::process_cpu_seconds() * 1000.0
}

fn window_tensor(model: &WhisperModel, mel: &[f32]) -> Tensor {
    Tensor::from_slice(mel, (1, model.n_mels, 3000), &Device::Cpu).unwrap()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One window's encoder pass and cross-attention start, two windows side by side, decoder
/// steps of 1, 2 and 4 requests (layers and logits apart) and their cross-attention alone.
pub fn phases(model: &WhisperModel, mel: &[f32]) {
    let net = &model.net;
    let x = window_tensor(model, mel);
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
    // Two windows side by side (one per pool thread, as `audio::passes` runs them) and one
    // after the other (each on the whole pool), alternating.
    for _ in 0..3 {
        let (t, cpu) = (Instant::now(), cpu_ms());
        kernels::on_pool(|| rayon::join(|| net.encode(&x).unwrap(), || net.encode(&x).unwrap()));
        let (side, side_cpu) = (ms(t), cpu_ms() - cpu);
        let (t, cpu) = (Instant::now(), cpu_ms());
        net.encode(&x).unwrap();
        net.encode(&x).unwrap();
        println!(
            "two windows: side by side {side:.1} ms ({side_cpu:.0} CPU ms), one after the other \
             {:.1} ms ({:.0} CPU ms)",
            ms(t),
            cpu_ms() - cpu
        );
    }
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

/// One window's encoder pass by part (convolutions, projections, attention, MLP), three
/// times.
pub fn encoder(model: &WhisperModel, mel: &[f32]) {
    let net = &model.net;
    let x = window_tensor(model, mel);
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

/// Decoder steps of 1 and 4 requests on a pool of one thread (is the step bound by memory?).
pub fn decoder_one_thread(model: &WhisperModel, mel: &[f32]) {
    let net = &model.net;
    let x = window_tensor(model, mel);
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
