//! Token sampling: penalties, temperature, top-k, top-p, min-p, with a seeded RNG so that the
//! same seed gives the same output. Temperature 0 is greedy (argmax).

use rand::distr::Distribution;
use rand::SeedableRng;
use std::collections::HashMap;

/// Sampling settings of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 disables).
    pub top_p: f32,
    /// Keep the k most likely tokens (0 disables).
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` times the top one (0 disables).
    pub min_p: f32,
    /// CTRL-style repetition penalty over prompt and output (1.0 disables).
    pub repetition_penalty: f32,
    /// OpenAI presence penalty over the output.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty over the output.
    pub frequency_penalty: f32,
    /// RNG seed; `None` draws one.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

/// A sampler for one sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: rand::rngs::StdRng,
    /// Occurrences of each token in the generated output.
    output_counts: HashMap<u32, u32>,
    /// Tokens of the prompt (for the repetition penalty).
    prompt_tokens: std::collections::HashSet<u32>,
}

impl Sampler {
    /// A sampler for a sequence whose prompt was `prompt`.
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let seed = params.seed.unwrap_or_else(rand::random);
        Sampler {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            params,
            output_counts: HashMap::new(),
            prompt_tokens: prompt.iter().copied().collect(),
        }
    }

    /// Records a generated token (for the penalties).
    pub fn accept(&mut self, token: u32) {
        *self.output_counts.entry(token).or_insert(0) += 1;
    }

    /// Applies the penalties to `logits` in place.
    fn penalise(&self, logits: &mut [f32]) {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let seen = self.prompt_tokens.iter().chain(self.output_counts.keys());
            for &t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&t, &count) in &self.output_counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * count as f32;
                }
            }
        }
    }

    /// Picks the next token from the raw logits of the last position.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.penalise(logits);
        let p = &self.params;
        if p.temperature <= 0.0 || p.top_k == 1 {
            return argmax(logits);
        }
        // Candidates sorted by logit, descending.
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = if p.top_k > 0 {
            p.top_k.min(idx.len())
        } else {
            idx.len()
        };
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, |&a, &b| {
                logits[b as usize].total_cmp(&logits[a as usize])
            });
            idx.truncate(k);
        }
        idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let max = logits[idx[0] as usize];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((logits[i as usize] - max) / p.temperature).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        // min-p relative to the most likely token.
        let mut keep = probs.len();
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = probs.iter().take_while(|&&x| x >= floor).count().max(1);
        }
        // top-p over what is left.
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut n = 0;
            for &x in &probs[..keep] {
                acc += x;
                n += 1;
                if acc >= p.top_p {
                    break;
                }
            }
            keep = n.max(1);
        }
        let dist =
            rand::distr::weighted::WeightedIndex::new(&probs[..keep]).expect("positive weights");
        idx[dist.sample(&mut self.rng)]
    }
}

/// Index of the largest value (the first one on ties, like llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-softmax of `logits`: natural-log probabilities.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
    logits.iter().map(|l| l - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            seed: Some(7),
            ..Default::default()
        };
        f(&mut p);
        p
    }

    #[test]
    fn temperature_zero_is_argmax() {
        let mut s = Sampler::new(params(|p| p.temperature = 0.0), &[]);
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.0]), 1);
    }

    #[test]
    fn same_seed_same_choices() {
        let run = || {
            let mut s = Sampler::new(params(|_| {}), &[]);
            (0..50)
                .map(|_| s.sample(&mut [1.0, 1.1, 0.9, 1.05]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert!(run().iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn top_k_top_p_min_p_restrict_the_candidates() {
        let logits = [5.0, 4.9, 0.0, -1.0];
        let mut s = Sampler::new(params(|p| p.top_k = 2), &[]);
        assert!((0..100).all(|_| s.sample(&mut logits.clone()) < 2));
        let mut s = Sampler::new(params(|p| p.top_p = 0.4), &[]);
        assert!((0..100).all(|_| s.sample(&mut logits.clone()) == 0));
        let mut s = Sampler::new(params(|p| p.min_p = 0.5), &[]);
        assert!((0..100).all(|_| s.sample(&mut logits.clone()) < 2));
    }

    #[test]
    fn penalties_push_repeated_tokens_down() {
        let mut s = Sampler::new(
            params(|p| {
                p.temperature = 0.0;
                p.repetition_penalty = 2.0;
            }),
            &[0],
        );
        assert_eq!(s.sample(&mut [2.0, 1.5]), 1);
        let mut s = Sampler::new(
            params(|p| {
                p.temperature = 0.0;
                p.frequency_penalty = 1.0;
            }),
            &[],
        );
        s.accept(0);
        assert_eq!(s.sample(&mut [2.0, 1.5]), 1);
    }

    #[test]
    fn log_softmax_sums_to_one() {
        let l = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f32 = l.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
