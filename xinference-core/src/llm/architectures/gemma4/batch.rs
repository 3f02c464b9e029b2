//! Gemma 4 as a [`CausalLm`]: one sequence's forward over its own cache, handing its cache out
//! and taking one back (prompt-prefix reuse), and steps of several sequences in one pass over
//! the weights (continuous batching), as `architectures/batch.rs` does for the shared decoder.
//! The blocks that share another block's keys hold no cache of their own (`None`).

use super::{Gemma4Decoder, Rows};
use crate::llm::model::{CausalLm, DecodeStep, KvState, LayerKv};
use crate::Result;

impl Gemma4Decoder {
    /// One sequence's pass over `tokens` at `position`, over the decoder's own cache.
    fn forward_one(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>> {
        let mut cache = std::mem::take(&mut self.cache);
        let mut rows = [Rows {
            len: tokens.len(),
            position,
            cache: &mut cache,
        }];
        let logits = crate::kernels::on_pool(|| self.forward_rows_here(tokens, &mut rows));
        self.cache = cache;
        Ok(logits?.remove(0))
    }

    /// The cache in the block layout (a `None` for each block not yet run or sharing).
    fn layers(&self, mut cache: Vec<Option<LayerKv>>) -> Vec<Option<LayerKv>> {
        cache.resize(self.blocks.len(), None);
        cache
    }
}

impl CausalLm for Gemma4Decoder {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>> {
        self.forward_one(tokens, position)
    }

    fn fork(&self) -> Option<Box<dyn CausalLm>> {
        let mut copy = self.clone();
        copy.cache.clear();
        Some(Box::new(copy))
    }

    fn keep_whole_windows(&mut self, whole: bool) {
        self.whole_windows = whole;
    }

    fn kv_state(&self, len: usize) -> Option<KvState> {
        Some(KvState {
            layers: self.layers(self.cache.clone()),
            len,
        })
    }

    fn take_kv(&mut self, len: usize) -> Option<KvState> {
        let cache = std::mem::take(&mut self.cache);
        Some(KvState {
            layers: self.layers(cache),
            len,
        })
    }

    fn load_kv(&mut self, state: &KvState, len: usize) -> Result<bool> {
        if len == 0 || state.layers.len() != self.blocks.len() || state.usable_prefix(len) != len {
            return Ok(false);
        }
        let mut cache = Vec::with_capacity(self.blocks.len());
        for (i, (layer, block)) in state.layers.iter().zip(&self.blocks).enumerate() {
            match (layer, &block.kv) {
                // Keys first..len (the buffers are shared until either side writes); any a
                // query no longer sees are skipped by the next forward.
                (Some(kv), Some(_)) => {
                    let mut kv = kv.clone();
                    kv.truncate(len - state.first_held(i));
                    cache.push(Some(kv));
                }
                // A sharing block reads its source block's keys.
                (None, None) => cache.push(None),
                _ => return Ok(false),
            }
        }
        self.cache = cache;
        Ok(true)
    }

    fn can_batch(&self) -> bool {
        true
    }

    fn decode_batch(&self, steps: &mut [DecodeStep]) -> Result<Option<Vec<Vec<f32>>>> {
        super::super::batch::run_steps(steps, |tokens, rows| {
            crate::kernels::on_pool(|| self.forward_rows_here(tokens, rows))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::batch::tests::assert_same;
    use super::*;

    fn tiny(file: &str) -> Gemma4Decoder {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tiny-gguf/gemma4")
            .join(file);
        let mut f = std::fs::File::open(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/fixtures/make_tiny_gemma4.py)",
                path.display()
            )
        });
        let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
        Gemma4Decoder::load(&ct, &mut f).unwrap()
    }

    /// Decode steps of six sequences of different lengths (past the sliding window of the
    /// fixture's sliding blocks, so their caches were trimmed) in one pass give bit for bit what
    /// each sequence gets stepped alone, over four rounds; a prompt chunk in the same pass too.
    #[test]
    fn batched_steps_equal_single_steps() {
        for file in ["tiny-Q8_0.gguf", "tiny-Q4_K_M.gguf"] {
            let decoder = tiny(file);
            let vocab = 256u32;
            let prompts: Vec<Vec<u32>> = (0..6u32)
                .map(|i| (0..(2 + 7 * i)).map(|t| (t * 7 + i + 10) % vocab).collect())
                .collect();
            let mut alone: Vec<Gemma4Decoder> = Vec::new();
            let mut steps: Vec<DecodeStep> = Vec::new();
            for p in &prompts {
                let mut d = decoder.clone();
                d.cache.clear();
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
                // A new sequence's whole prompt rides along in the second round.
                let fresh: Vec<u32> = (0..9).map(|t| (t * 3 + 1) % vocab).collect();
                if round == 1 {
                    steps.push(DecodeStep {
                        tokens: fresh.clone(),
                        kv: KvState {
                            layers: Vec::new(),
                            len: 0,
                        },
                    });
                }
                let batched = decoder.decode_batch(&mut steps).unwrap().unwrap();
                for (i, d) in alone.iter_mut().enumerate() {
                    let position = steps[i].kv.len - 1;
                    let single = d.forward(&steps[i].tokens, position).unwrap();
                    assert_same(
                        &batched[i],
                        &single,
                        &format!("{file} round {round}, seq {i}"),
                    );
                }
                if round == 1 {
                    let mut d = decoder.clone();
                    d.cache.clear();
                    let single = d.forward(&fresh, 0).unwrap();
                    assert_same(&batched[6], &single, &format!("{file} prompt in a batch"));
                    steps.pop();
                }
            }
        }
    }

    /// A cache handed out and taken back (whole, or a prefix of it) continues exactly as the
    /// sequence fed from the start: the prefix cache's reuse gives the same logits as no cache.
    #[test]
    fn a_reused_prefix_continues_as_a_fresh_sequence() {
        let decoder = tiny("tiny-Q8_0.gguf");
        let prompt: Vec<u32> = (0..40u32).map(|t| (t * 11 + 5) % 256).collect();
        let mut first = decoder.clone();
        first.forward(&prompt, 0).unwrap();
        let state = first.kv_state(prompt.len()).unwrap();
        assert!(state.bytes() > 0);
        // Blocks that share keys hold none of their own.
        for (layer, block) in state.layers.iter().zip(&decoder.blocks) {
            assert_eq!(layer.is_some(), block.kv.is_some());
        }
        let tail: Vec<u32> = vec![7, 99, 3];
        let mut reused_count = 0;
        for keep in [prompt.len(), prompt.len() - 1, 30] {
            let usable = state.usable_prefix(keep);
            let mut reused = decoder.clone();
            let loaded = reused.load_kv(&state, keep).unwrap();
            // A prefix shorter than the sliding window allows is refused, never wrong.
            assert_eq!(loaded, usable == keep, "keep {keep}");
            if !loaded {
                continue;
            }
            reused_count += 1;
            let mut fed = prompt[..keep].to_vec();
            fed.extend(&tail);
            let with_cache = reused.forward(&tail, keep).unwrap();
            let mut fresh = decoder.clone();
            let without = fresh.forward_prompt(&fed, 0, fed.len()).unwrap();
            let tol = 1e-4;
            let diff = with_cache
                .iter()
                .zip(&without)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff <= tol, "keep {keep}: {diff}");
        }
        // The whole prompt always; a prefix only while the sliding blocks still hold its window.
        assert!(reused_count >= 1);
        let mut whole = decoder.clone();
        assert!(whole.load_kv(&state, prompt.len()).unwrap());
    }
}
