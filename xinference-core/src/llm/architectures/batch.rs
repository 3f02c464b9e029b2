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

    fn decode_batch(&self, steps: &mut [DecodeStep]) -> Result<Option<Vec<Vec<f32>>>> {
        let tokens: Vec<u32> = steps.iter().map(|s| s.token).collect();
        let mut rows: Vec<Rows<'_>> = steps
            .iter_mut()
            .map(|s| Rows {
                len: 1,
                position: s.kv.len,
                cache: &mut s.kv.layers,
            })
            .collect();
        let logits = self.forward_rows(&tokens, &mut rows)?;
        for step in steps.iter_mut() {
            step.kv.len += 1;
        }
        Ok(Some(logits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a batched pass must reproduce: the decoder's own single-row steps.
    fn assert_same(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
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
    /// routed to the same expert share its products, each row still as alone.
    #[test]
    fn batched_moe_steps_equal_single_steps() {
        for arch in ["qwen3moe", "gpt-oss"] {
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
                token: 0,
                kv: d.kv_state(p.len()).unwrap(),
            });
            alone.push(d);
        }
        for round in 0..4u32 {
            for (i, s) in steps.iter_mut().enumerate() {
                s.token = (3 + round + 5 * i as u32) % vocab;
            }
            let batched = decoder.decode_batch(&mut steps).unwrap().unwrap();
            for (i, d) in alone.iter_mut().enumerate() {
                let position = steps[i].kv.len - 1;
                let single = d.forward(&[steps[i].token], position).unwrap();
                assert_same(
                    &batched[i],
                    &single,
                    &format!("round {round}, sequence {i}"),
                );
            }
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
