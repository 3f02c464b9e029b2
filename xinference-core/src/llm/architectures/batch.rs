//! The decoder as a [`CausalLm`]: one sequence's forward over its own cache, handing its cache
//! out and taking one back (prompt-prefix reuse), and decode steps of several sequences in one
//! pass over the weights (continuous batching).

use super::{GgufDecoder, Rows};
use crate::llm::model::{CausalLm, DecodeStep, KvState};
use crate::Result;

impl CausalLm for GgufDecoder {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>> {
        GgufDecoder::forward(self, tokens, position)
    }

    fn fork(&self) -> Option<Box<dyn CausalLm>> {
        let mut copy = self.clone();
        copy.clear_cache();
        Some(Box::new(copy))
    }

    fn kv_state(&self, len: usize) -> Option<KvState> {
        let mut layers = self.cache.clone();
        layers.resize(self.layers.len(), None);
        Some(KvState { layers, len })
    }

    fn take_kv(&mut self, len: usize) -> Option<KvState> {
        let mut layers = std::mem::take(&mut self.cache);
        layers.resize(self.layers.len(), None);
        Some(KvState { layers, len })
    }

    fn load_kv(&mut self, state: &KvState, len: usize) -> Result<bool> {
        if len == 0 || state.layers.len() != self.layers.len() || state.usable_prefix(len) != len {
            return Ok(false);
        }
        let mut cache = Vec::with_capacity(self.layers.len());
        for (i, layer) in state.layers.iter().enumerate() {
            let first = state.first_held(i);
            match layer {
                // Keys first..len (the buffers are shared until either side writes); any a
                // query no longer sees are skipped by the next forward.
                Some(kv) => {
                    let mut kv = kv.clone();
                    kv.truncate(len - first);
                    cache.push(Some(kv));
                }
                None => return Ok(false),
            }
        }
        self.cache = cache;
        Ok(true)
    }

    fn can_batch(&self) -> bool {
        true
    }

    fn keep_whole_windows(&mut self, whole: bool) {
        self.whole_windows = whole;
    }

    fn decode_batch(&self, steps: &mut [DecodeStep]) -> Result<Option<Vec<Vec<f32>>>> {
        // `forward_rows` runs the whole pass on a compute thread: its products' parallel parts
        // then start by work stealing instead of waking this thread's sleeping caller at every
        // product (210 products a pass for SmolLM2; 14-25% of a pass's time on a loaded 2-core
        // machine).
        run_steps(steps, |tokens, rows| self.forward_rows(tokens, rows))
    }
}

/// Runs decode `steps` of several sequences as one `forward` over all their rows (each
/// sequence's tokens at its own position over its own cache), then advances each sequence's
/// length: the batched step of every decoder.
pub(super) fn run_steps(
    steps: &mut [DecodeStep],
    forward: impl FnOnce(&[u32], &mut [Rows<'_>]) -> Result<Vec<Vec<f32>>>,
) -> Result<Option<Vec<Vec<f32>>>> {
    let tokens: Vec<u32> = steps
        .iter()
        .flat_map(|s| s.tokens.iter().copied())
        .collect();
    let mut rows: Vec<Rows<'_>> = steps
        .iter_mut()
        .map(|s| Rows {
            len: s.tokens.len(),
            position: s.kv.len,
            cache: &mut s.kv.layers,
        })
        .collect();
    let logits = forward(&tokens, &mut rows)?;
    for step in steps.iter_mut() {
        step.kv.len += step.tokens.len();
    }
    Ok(Some(logits))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// What a batched pass must reproduce: the decoder's own single-row steps, bit for bit
    /// (`gemma4/batch.rs` checks its decoder with it too).
    pub(in crate::llm::architectures) fn assert_same(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff == 0.0, "{what}: batched logits differ by {diff}");
    }

    /// Decode steps of sequences of different lengths in one pass give bit-identical logits
    /// to each sequence stepped alone, on a small random Llama-layout decoder.
    #[test]
    fn batched_steps_equal_single_steps() {
        assert_batched_equals_single(&super::super::tests::tiny_decoder(), 32);
    }

    /// The same for the mixtures of experts (the tiny Qwen3 MoE and gpt-oss fixtures, Q8_0;
    /// gpt-oss with its sinks and sliding window of 8 positions): rows of different sequences
    /// routed to the same expert share its products, each row still as alone; and for
    /// Qwen3.5 (dense and MoE), each sequence's recurrent state its own.
    #[test]
    fn batched_moe_steps_equal_single_steps() {
        for arch in ["qwen3moe", "gpt-oss", "qwen35", "qwen35moe"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../tests/fixtures/tiny-gguf/{arch}/tiny-Q8_0.gguf"));
            let mut file = std::fs::File::open(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (scripts/fixtures/make_tiny_ggufs.py)",
                    path.display()
                )
            });
            let ct = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
            assert!(GgufDecoder::supports(&ct, arch), "{arch}");
            let decoder = GgufDecoder::load(&ct, &mut file, arch).unwrap();
            assert_batched_equals_single(&decoder, 512);
        }
    }

    /// Steps of nine sequences of different lengths, batched and alone, over four rounds.
    fn assert_batched_equals_single(decoder: &GgufDecoder, vocab: u32) {
        // Nine sequences: more rows than the products' GEMM threshold, which a batch must
        // never take (its rows would round otherwise than alone).
        let prompts: Vec<Vec<u32>> = (0..9u32)
            .map(|i| (0..(2 + 3 * i)).map(|t| (t * 7 + i) % vocab).collect())
            .collect();
        let mut alone: Vec<GgufDecoder> = Vec::new();
        let mut steps: Vec<DecodeStep> = Vec::new();
        for p in &prompts {
            let mut d = decoder.clone();
            d.clear_cache();
            d.forward(p, 0).unwrap();
            steps.push(DecodeStep {
                tokens: vec![0],
                kv: d.kv_state(p.len()).unwrap(),
            });
            alone.push(d);
        }
        for round in 0..4u32 {
            for (i, s) in steps.iter_mut().enumerate() {
                s.tokens = vec![(3 + round + 5 * i as u32) % vocab];
            }
            let batched = decoder.decode_batch(&mut steps).unwrap().unwrap();
            for (i, d) in alone.iter_mut().enumerate() {
                let position = steps[i].kv.len - 1;
                let single = d.forward(&steps[i].tokens, position).unwrap();
                assert_same(
                    &batched[i],
                    &single,
                    &format!("round {round}, sequence {i}"),
                );
            }
        }
    }

    /// Prompt chunks of new sequences in the same passes as decode steps of others (chunked
    /// prefill mixed into decoding): every sequence gets bit for bit what it gets alone, the
    /// prompts' last logits those of the whole prompt fed at once.
    #[test]
    fn prompt_chunks_beside_decode_steps_equal_alone() {
        let decoder = super::super::tests::tiny_decoder();
        let vocab = 32u32;
        // Two sequences decoding, with prompts of 5 and 11 tokens.
        let mut alone: Vec<GgufDecoder> = Vec::new();
        let mut decoding: Vec<DecodeStep> = Vec::new();
        for len in [5u32, 11] {
            let prompt: Vec<u32> = (0..len).map(|t| (t * 3 + len) % vocab).collect();
            let mut d = decoder.clone();
            d.clear_cache();
            d.forward(&prompt, 0).unwrap();
            decoding.push(DecodeStep {
                tokens: vec![0],
                kv: d.kv_state(prompt.len()).unwrap(),
            });
            alone.push(d);
        }
        // Two new prompts fed in chunks of different sizes, from position 0 on an empty cache.
        let prompts: [Vec<u32>; 2] = [
            (0..23u32).map(|t| (t * 7 + 2) % vocab).collect(),
            (0..9u32).map(|t| (t * 5 + 1) % vocab).collect(),
        ];
        let chunk = [6usize, 4];
        let expected: Vec<Vec<f32>> = prompts
            .iter()
            .map(|p| {
                let mut d = decoder.clone();
                d.clear_cache();
                d.forward(p, 0).unwrap()
            })
            .collect();
        let mut feeding: Vec<DecodeStep> = (0..2)
            .map(|_| DecodeStep {
                tokens: Vec::new(),
                kv: KvState {
                    layers: Vec::new(),
                    len: 0,
                },
            })
            .collect();
        let mut last: Vec<Vec<f32>> = vec![Vec::new(); 2];
        for round in 0..6u32 {
            let mut pass: Vec<DecodeStep> = Vec::new();
            let mut feeders = Vec::new();
            for (i, f) in feeding.iter_mut().enumerate() {
                let at = f.kv.len;
                if at < prompts[i].len() {
                    let end = prompts[i].len().min(at + chunk[i]);
                    let kv = std::mem::replace(
                        &mut f.kv,
                        KvState {
                            layers: Vec::new(),
                            len: 0,
                        },
                    );
                    pass.push(DecodeStep {
                        tokens: prompts[i][at..end].to_vec(),
                        kv,
                    });
                    feeders.push(i);
                }
            }
            for (i, s) in decoding.iter_mut().enumerate() {
                s.tokens = vec![(1 + round + 7 * i as u32) % vocab];
            }
            let first_decode = pass.len();
            pass.append(&mut decoding);
            let logits = decoder.decode_batch(&mut pass).unwrap().unwrap();
            decoding = pass.split_off(first_decode);
            for (i, d) in alone.iter_mut().enumerate() {
                let position = decoding[i].kv.len - 1;
                let single = d.forward(&decoding[i].tokens, position).unwrap();
                let at = first_decode + i;
                assert_same(
                    &logits[at],
                    &single,
                    &format!("round {round}, decoding {i}"),
                );
            }
            for (step, (i, l)) in pass.into_iter().zip(feeders.into_iter().zip(logits)) {
                feeding[i].kv = step.kv;
                last[i] = l;
            }
        }
        for i in 0..2 {
            assert_eq!(feeding[i].kv.len, prompts[i].len());
            assert_same(&last[i], &expected[i], &format!("prompt {i} fed in chunks"));
        }
    }

    /// A prompt fed in parts (chunks, or the rest after a cached prefix of any length, taken
    /// from a longer sequence's keys and values) gives bit for bit the logits of the whole
    /// prompt, and so does the next decode step: the prefix cache may resume anywhere.
    #[test]
    fn prompt_parts_equal_whole_prompt() {
        let decoder = super::super::tests::tiny_decoder();
        let prompt: Vec<u32> = (0..40u32).map(|t| (t * 5 + 1) % 32).collect();
        let mut whole = decoder.clone();
        whole.clear_cache();
        let expected = whole.forward(&prompt, 0).unwrap();
        let longer = whole.kv_state(prompt.len()).unwrap();
        let next = whole.forward(&[7], prompt.len()).unwrap();
        for cuts in [vec![1], vec![3], vec![5, 17], vec![31, 39]] {
            let mut d = decoder.clone();
            d.clear_cache();
            let (mut start, mut logits) = (0, Vec::new());
            for end in cuts.iter().copied().chain([prompt.len()]) {
                logits = d.forward(&prompt[start..end], start).unwrap();
                start = end;
            }
            assert_same(&logits, &expected, &format!("prompt cut at {cuts:?}"));
            let step = d.forward(&[7], prompt.len()).unwrap();
            assert_same(
                &step,
                &next,
                &format!("step after a prompt cut at {cuts:?}"),
            );
        }
        for reused in [1, 2, 8, 33] {
            let mut d = decoder.clone();
            assert!(d.load_kv(&longer, reused).unwrap());
            let logits = d.forward(&prompt[reused..], reused).unwrap();
            assert_same(&logits, &expected, &format!("{reused} tokens reused"));
        }
    }
}
