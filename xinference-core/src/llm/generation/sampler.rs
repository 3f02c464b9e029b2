//! Token sampling: penalties, temperature, top-k, top-p, min-p, with a seeded RNG so that the
//! same seed gives the same output. Temperature 0 is greedy (argmax).

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
    ///
    /// Never sorts the whole vocabulary: top-k is a selection, min-p a filter, and top-p sorts
    /// only as many of the most likely candidates as its mass needs (a few hundred, growing
    /// when they do not reach it). Sums are in f64 over the candidates in a fixed order, and
    /// the draw walks them in that order, so a seed gives the same tokens every time.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.penalise(logits);
        let p = &self.params;
        if p.temperature <= 0.0 || p.top_k == 1 || logits.len() < 2 {
            return argmax(logits);
        }
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        // The candidates: the top k, or every token.
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        if p.top_k > 0 && p.top_k < idx.len() {
            idx.select_nth_unstable_by(p.top_k - 1, by_logit);
            idx.truncate(p.top_k);
        }
        let max = idx
            .iter()
            .map(|&i| logits[i as usize])
            .fold(f32::NEG_INFINITY, f32::max);
        let weight = |i: u32| ((logits[i as usize] - max) / p.temperature).exp();
        let total: f64 = idx.iter().map(|&i| weight(i) as f64).sum();
        // min-p relative to the most likely token (whose weight is exp(0) = 1).
        if p.min_p > 0.0 {
            idx.retain(|&i| weight(i) >= p.min_p);
        }
        // top-p: the most likely candidates until their mass reaches top_p of the total.
        if p.top_p < 1.0 {
            let need = p.top_p as f64 * total;
            let mut sorted = 0;
            let mut mass = 0f64;
            let mut take = 256;
            'grow: loop {
                let end = take.min(idx.len());
                let rest = &mut idx[sorted..];
                if end - sorted < rest.len() {
                    rest.select_nth_unstable_by(end - sorted - 1, by_logit);
                }
                idx[sorted..end].sort_unstable_by(by_logit);
                for n in sorted..end {
                    mass += weight(idx[n]) as f64;
                    if mass >= need {
                        idx.truncate(n + 1);
                        break 'grow;
                    }
                }
                if end == idx.len() {
                    break;
                }
                sorted = end;
                take *= 4;
            }
        }
        let kept: f64 = idx.iter().map(|&i| weight(i) as f64).sum();
        let mut target = rand::Rng::random::<f64>(&mut self.rng) * kept;
        for &i in &idx {
            target -= weight(i) as f64;
            if target < 0.0 {
                return i;
            }
        }
        // Rounding left a sliver past the last candidate: the last one.
        idx.last().copied().unwrap_or_else(|| argmax(logits))
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

    /// Over a vocabulary far larger than the first sorted slice, top-p keeps exactly the
    /// nucleus a full sort gives (the most likely tokens until their mass reaches top-p), and
    /// draws follow the weights.
    #[test]
    fn top_p_keeps_the_nucleus_of_a_full_sort() {
        let vocab = 5000;
        let logits: Vec<f32> = (0..vocab)
            .map(|i| ((i * 7919) % 1000) as f32 / 150.0)
            .collect();
        for top_p in [0.3f32, 0.9, 0.99] {
            // The definition: sort everything, accumulate normalised probabilities.
            let mut order: Vec<usize> = (0..vocab).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            let max = logits[order[0]];
            let w: Vec<f64> = logits.iter().map(|l| ((l - max) as f64).exp()).collect();
            let total: f64 = w.iter().sum();
            let mut acc = 0.0;
            let mut nucleus = std::collections::HashSet::new();
            for &i in &order {
                nucleus.insert(i as u32);
                acc += w[i] / total;
                if acc >= top_p as f64 {
                    break;
                }
            }
            let mut s = Sampler::new(params(|p| p.top_p = top_p), &[]);
            let draws: Vec<u32> = (0..300).map(|_| s.sample(&mut logits.clone())).collect();
            assert!(
                draws.iter().all(|t| nucleus.contains(t)),
                "top_p {top_p}: a draw outside the nucleus of {}",
                nucleus.len()
            );
            if top_p > 0.5 {
                // A wide nucleus is sampled widely, not just its head.
                let distinct: std::collections::HashSet<_> = draws.iter().collect();
                assert!(distinct.len() > 20, "top_p {top_p}: {}", distinct.len());
            }
        }
        // Without top-p every token is a candidate; the same seed draws the same tokens.
        let run = || {
            let mut s = Sampler::new(params(|_| {}), &[]);
            (0..100)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
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
