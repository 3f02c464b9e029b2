//! The token search over one 30 s window, as CTranslate2's `Whisper.generate` runs it for
//! faster-whisper: the logits rules (suppressed tokens, OpenAI's timestamp rules), then greedy
//! decoding, `best_of` independent samples at a temperature above 0, or beam search
//! (`beam_size` beams decoded as one batch, 2 x beam candidates per step, finished hypotheses
//! replaced by the next live candidates, stop after `round(beam_size * patience)` finished
//! hypotheses, scores divided by `length ^ length_penalty`).

use super::model::DecoderState;
use super::whisper::WhisperModel;
use crate::{Error, Result};
use rand::distr::{weighted::WeightedIndex, Distribution};

/// Latest first timestamp (1 s), in timestamp steps.
const MAX_INITIAL_TIMESTAMP_INDEX: usize = 50;

/// How one window is searched (faster-whisper's `beam_size`, `best_of`, `patience`,
/// `length_penalty`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchOptions {
    /// Beams at temperature 0 (1 is greedy).
    pub beam_size: usize,
    /// Samples drawn at a temperature above 0; the best scored is kept.
    pub best_of: usize,
    /// Beam search stops after `round(beam_size * patience)` finished hypotheses.
    pub patience: f32,
    /// Scores are divided by `length ^ length_penalty`.
    pub length_penalty: f32,
}

/// The best sequence of one decode of one window.
pub(crate) struct Decoded {
    /// Generated tokens (text and timestamps, without `<|endoftext|>`).
    pub tokens: Vec<u32>,
    /// Sum of the tokens' log-probabilities (with `<|endoftext|>`) over `tokens.len() + 1`.
    pub avg_logprob: f64,
    /// Probability of `<|nospeech|>` after `<|startoftranscript|>`.
    pub no_speech_prob: f64,
    /// Temperature of this decode.
    pub temperature: f32,
    /// zlib compression ratio of the text (set by the caller).
    pub compression_ratio: f64,
}

/// `log Σ e^l` over `logits`: what [`log_softmax`] subtracts. It runs over the whole
/// vocabulary for every row of every step, so with eight running maxima and sums and a
/// branch-free `exp` ([`crate::kernels::exp`]): loops that vectorise.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let pick = |a: f32, b: f32| if b > a { b } else { a };
    let chunks = logits.chunks_exact(8);
    let rest = chunks.remainder();
    let mut maxima = [f32::NEG_INFINITY; 8];
    for c in chunks.clone() {
        for i in 0..8 {
            maxima[i] = pick(maxima[i], c[i]);
        }
    }
    let max = rest
        .iter()
        .chain(&maxima)
        .fold(f32::NEG_INFINITY, |a, &b| pick(a, b));
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut sums = [0f32; 8];
    for c in chunks {
        for i in 0..8 {
            sums[i] += crate::kernels::exp(c[i] - max);
        }
    }
    let tail: f32 = rest.iter().map(|&l| crate::kernels::exp(l - max)).sum();
    max + (sums.iter().sum::<f32>() + tail).ln()
}

/// Log-softmax of `logits` in place.
pub(crate) fn log_softmax(logits: &mut [f32]) {
    let log_sum = log_sum_exp(logits);
    logits.iter_mut().for_each(|l| *l -= log_sum);
}

/// The logits processors of one row: blank and `<|endoftext|>` not first, the suppress list,
/// no `<|notimestamps|>`, and the timestamp rules over the tokens generated so far.
fn filter(model: &WhisperModel, logits: &mut [f32], generated: &[u32]) {
    let sp = &model.special;
    let vocab = logits.len();
    let mut ban = |t: u32| {
        if (t as usize) < vocab {
            logits[t as usize] = f32::NEG_INFINITY;
        }
    };
    if generated.is_empty() {
        model.suppress_begin.iter().for_each(|&t| ban(t));
    }
    model.suppress.iter().for_each(|&t| ban(t));
    ban(sp.no_timestamps);
    apply_timestamp_rules(
        logits,
        generated,
        sp.timestamp_begin as usize,
        sp.eot as usize,
    );
}

/// OpenAI's `ApplyTimestampRules` on the logits of the next token after `sampled`.
pub(crate) fn apply_timestamp_rules(logits: &mut [f32], sampled: &[u32], ts: usize, eot: usize) {
    let n = sampled.len();
    let first = n == 0;
    let last_was_ts = n >= 1 && sampled[n - 1] as usize >= ts;
    let penultimate_was_ts = n < 2 || sampled[n - 2] as usize >= ts;
    if last_was_ts {
        if penultimate_was_ts {
            logits[ts..].iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
        } else {
            logits[..eot]
                .iter_mut()
                .for_each(|l| *l = f32::NEG_INFINITY);
        }
    }
    if let Some(&last_ts) = sampled.iter().rev().find(|&&t| t as usize >= ts) {
        let bound = if last_was_ts && !penultimate_was_ts {
            last_ts as usize
        } else {
            last_ts as usize + 1
        };
        let bound = bound.min(logits.len());
        logits[ts..bound]
            .iter_mut()
            .for_each(|l| *l = f32::NEG_INFINITY);
    }
    if first {
        logits[..ts].iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
        let last_allowed = ts + MAX_INITIAL_TIMESTAMP_INDEX;
        if last_allowed + 1 < logits.len() {
            logits[last_allowed + 1..]
                .iter_mut()
                .for_each(|l| *l = f32::NEG_INFINITY);
        }
    }
    // The timestamps' total probability against the likeliest text token's: both
    // log-probabilities share the softmax's normaliser, so the logits compare as well (no
    // log-softmax over the whole vocabulary).
    let max_ts = logits[ts..]
        .iter()
        .cloned()
        .fold(f32::NEG_INFINITY, f32::max);
    if max_ts > f32::NEG_INFINITY {
        let ts_logit = max_ts
            + logits[ts..]
                .iter()
                .map(|&l| (l - max_ts).exp())
                .sum::<f32>()
                .ln();
        let max_text = logits[..ts]
            .iter()
            .cloned()
            .fold(f32::NEG_INFINITY, f32::max);
        if ts_logit > max_text {
            logits[..ts].iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
        }
    }
}

/// Index of the first of the largest values, as argmax picks it.
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Decodes one window from `prompt` (`sot_index` is where `<|startoftranscript|>` is): beam
/// search at temperature 0 when `beam_size > 1`, otherwise greedy (temperature 0) or the best of
/// `best_of` samples. `stop` runs before each decoder step (an error from it ends the search).
pub(crate) fn generate(
    model: &WhisperModel,
    audio: &DecoderState,
    (prompt, sot_index): (&[u32], usize),
    temperature: f32,
    options: &SearchOptions,
    rng: &mut rand::rngs::StdRng,
    stop: &mut dyn FnMut() -> Result<()>,
) -> Result<Decoded> {
    stop()?;
    let mut state = audio.clone();
    let mut rows = model.step(prompt, &mut state, &[sot_index, prompt.len() - 1])?;
    let last = rows.pop().unwrap_or_default();
    let mut at_sot = rows.pop().unwrap_or_default();
    log_softmax(&mut at_sot);
    let no_speech_prob = at_sot
        .get(model.special.no_speech as usize)
        .map_or(0.0, |l| l.exp() as f64);
    // CTranslate2 decodes at most half the context, and never past its end.
    let max_length = (model.max_length / 2).min(model.max_length + 1 - prompt.len());
    let (tokens, score) = if temperature > 0.0 {
        let samples = options.best_of.max(1);
        sample(
            model,
            &mut state,
            last,
            (samples, temperature),
            options.length_penalty,
            max_length,
            rng,
            stop,
        )?
    } else if options.beam_size > 1 {
        beam_search(model, &mut state, last, options, max_length, stop)?
    } else {
        sample(
            model,
            &mut state,
            last,
            (1, 0.0),
            options.length_penalty,
            max_length,
            rng,
            stop,
        )?
    };
    let length = tokens.len() as f64;
    let cum_logprob = score as f64 * length.powf(options.length_penalty as f64);
    Ok(Decoded {
        avg_logprob: cum_logprob / (length + 1.0),
        tokens,
        no_speech_prob,
        temperature,
        compression_ratio: 0.0,
    })
}

/// Greedy decoding (`temperature == 0`), or `samples` sequences sampled independently at
/// `temperature` as one batch. Returns the best sequence and its score (sum of log-probabilities / length^penalty).
#[allow(clippy::too_many_arguments)]
fn sample(
    model: &WhisperModel,
    state: &mut DecoderState,
    first_logits: Vec<f32>,
    (samples, temperature): (usize, f32),
    length_penalty: f32,
    max_length: usize,
    rng: &mut rand::rngs::StdRng,
    stop: &mut dyn FnMut() -> Result<()>,
) -> Result<(Vec<u32>, f32)> {
    let eot = model.special.eot;
    // Live rows: (sequence index, logits of its next token).
    let mut live: Vec<(usize, Vec<f32>)> =
        (0..samples).map(|i| (i, first_logits.clone())).collect();
    if samples > 1 {
        state.reorder(&vec![0; samples])?;
    }
    let mut sequences: Vec<Vec<u32>> = vec![Vec::new(); samples];
    let mut sums = vec![0f32; samples];
    for step in 0..max_length {
        let mut next_tokens = Vec::new();
        let mut keep = Vec::new();
        for (row, (seq, logits)) in live.iter_mut().enumerate() {
            filter(model, logits, &sequences[*seq]);
            let log_sum = log_sum_exp(logits);
            let next = if temperature > 0.0 {
                let max = logits.iter().cloned().fold(f32::MIN, f32::max);
                let weights: Vec<f32> = logits
                    .iter()
                    .map(|&l| ((l - max) / temperature).exp())
                    .collect();
                WeightedIndex::new(&weights)
                    .map_err(|e| Error::internal(format!("sampling failed: {e}")))?
                    .sample(rng)
            } else {
                argmax(logits)
            };
            sums[*seq] += logits[next] - log_sum;
            if next as u32 == eot {
                continue;
            }
            sequences[*seq].push(next as u32);
            if step + 1 == max_length {
                continue;
            }
            keep.push(row as u32);
            next_tokens.push(next as u32);
        }
        if keep.is_empty() {
            break;
        }
        state.reorder(&keep)?;
        let seqs: Vec<usize> = keep.iter().map(|&r| live[r as usize].0).collect();
        stop()?;
        let logits = model.step_rows(&next_tokens, state)?;
        live = seqs.into_iter().zip(logits).collect();
    }
    let mut best: Option<(Vec<u32>, f32)> = None;
    for (tokens, sum) in sequences.into_iter().zip(sums) {
        let score = sum / (tokens.len().max(1) as f32).powf(length_penalty);
        if best.as_ref().is_none_or(|(_, s)| score > *s) {
            best = Some((tokens, score));
        }
    }
    Ok(best.unwrap_or_default())
}

/// Indices of the `k` largest values (ties: the lower index first), largest first: one scan
/// that keeps the best `k` so far.
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    for (i, &v) in values.iter().enumerate() {
        if best.len() == k && values[best[k - 1]].total_cmp(&v).is_ge() {
            continue;
        }
        let at = best.partition_point(|&b| values[b].total_cmp(&v).is_ge());
        best.insert(at, i);
        best.truncate(k);
    }
    best
}

/// One candidate of a beam step.
#[derive(Clone, Copy)]
struct Candidate {
    origin: usize,
    token: u32,
    score: f32,
}

/// Beam search as CTranslate2's `BeamSearch` (length penalty applied when hypotheses are
/// finalised; no early exit, since faster-whisper's length penalty is not 0).
fn beam_search(
    model: &WhisperModel,
    state: &mut DecoderState,
    first_logits: Vec<f32>,
    options: &SearchOptions,
    max_length: usize,
    stop: &mut dyn FnMut() -> Result<()>,
) -> Result<(Vec<u32>, f32)> {
    let eot = model.special.eot;
    let beam = options.beam_size;
    let num_candidates = 2 * beam;
    let max_candidates = ((beam as f32) * options.patience).round().max(1.0) as usize;
    let allow_early_exit = options.length_penalty == 0.0;
    let mut rows: Vec<Vec<f32>> = vec![first_logits];
    let mut alive: Vec<Vec<u32>> = vec![Vec::new()];
    let mut scores: Vec<f32> = vec![0.0];
    let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
    let mut top_beam_finished = false;
    for step in 0..max_length {
        let last_step = step + 1 == max_length;
        let mut candidates: Vec<Candidate> = Vec::with_capacity(rows.len() * num_candidates);
        for (r, logits) in rows.iter_mut().enumerate() {
            filter(model, logits, &alive[r]);
            log_softmax(logits);
            // The best `num_candidates` of this row are all a flattened top-k can take from it.
            for t in top_k(logits, num_candidates) {
                candidates.push(Candidate {
                    origin: r,
                    token: t as u32,
                    score: scores[r] + logits[t],
                });
            }
        }
        candidates.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.origin.cmp(&b.origin))
                .then(a.token.cmp(&b.token))
        });
        candidates.truncate(num_candidates);
        let mut next: Vec<Candidate> = Vec::with_capacity(beam);
        let mut secondary = beam;
        for k in 0..beam.min(candidates.len()) {
            let c = candidates[k];
            let mut pick = k;
            if c.token == eot || last_step {
                if k == 0 {
                    top_beam_finished = true;
                }
                let mut tokens = alive[c.origin].clone();
                if c.token != eot {
                    tokens.push(c.token);
                }
                finished.push((tokens, c.score));
                if let Some(j) = (secondary..candidates.len()).find(|&j| candidates[j].token != eot)
                {
                    pick = j;
                    secondary = j + 1;
                }
            }
            next.push(candidates[pick]);
        }
        let done = last_step
            || if allow_early_exit {
                top_beam_finished && !finished.is_empty()
            } else {
                finished.len() >= max_candidates
            };
        if done {
            break;
        }
        let origins: Vec<u32> = next.iter().map(|c| c.origin as u32).collect();
        state.reorder(&origins)?;
        alive = next
            .iter()
            .map(|c| {
                let mut s = alive[c.origin].clone();
                s.push(c.token);
                s
            })
            .collect();
        scores = next.iter().map(|c| c.score).collect();
        let tokens: Vec<u32> = next.iter().map(|c| c.token).collect();
        stop()?;
        rows = model.step_rows(&tokens, state)?;
    }
    let penalty = options.length_penalty;
    finished
        .into_iter()
        .map(|(tokens, score)| {
            let score = score / (tokens.len().max(1) as f32).powf(penalty);
            (tokens, score)
        })
        .reduce(|best, h| if h.1 > best.1 { h } else { best })
        .ok_or_else(|| Error::internal("beam search finished no hypothesis"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_pairs_and_order() {
        let (ts, eot) = (10usize, 5usize);
        // After text then a timestamp: text is banned (a timestamp or eot follows).
        let mut l = vec![0f32; 20];
        apply_timestamp_rules(&mut l, &[11, 1, 12], ts, eot);
        assert!(l[..eot].iter().all(|x| x.is_infinite()));
        assert!(l[12].is_finite() && l[11].is_infinite());
        // After a pair of timestamps: no timestamp may follow.
        let mut l = vec![0f32; 20];
        apply_timestamp_rules(&mut l, &[11, 1, 12, 12], ts, eot);
        assert!(l[ts..].iter().all(|x| x.is_infinite()));
        // First token: a timestamp.
        let mut l = vec![0f32; 100];
        apply_timestamp_rules(&mut l, &[], ts, eot);
        assert!(l[..ts].iter().all(|x| x.is_infinite()) && l[ts].is_finite());
    }

    #[test]
    fn top_k_keeps_the_largest_lower_index_first() {
        let values = [1.0, 5.0, 3.0, 5.0, f32::NEG_INFINITY, 4.0, 3.0];
        assert_eq!(top_k(&values, 4), vec![1, 3, 5, 2]);
        assert_eq!(top_k(&values, 10).len(), values.len());
        assert!(top_k(&values, 0).is_empty());
    }

    #[test]
    fn log_sum_exp_matches_a_plain_f64_sum() {
        // A vocabulary-sized row with a tail, suppressed tokens, and a large maximum.
        let mut logits: Vec<f32> = (0..51_867)
            .map(|i| ((i * 7919) % 1000) as f32 / 40.0 - 12.0)
            .collect();
        logits[17] = 60.0;
        for t in (0..logits.len()).step_by(97) {
            logits[t] = f32::NEG_INFINITY;
        }
        let max = 60.0f64;
        let want = max
            + logits
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let got = log_sum_exp(&logits) as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 1.0, 2.0]), 1);
    }
}
