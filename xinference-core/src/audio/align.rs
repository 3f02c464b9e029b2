//! Word timestamps as faster-whisper computes them with CTranslate2's `align`: the window's text
//! is forced through the decoder, the cross-attention of the alignment heads (softmax over the
//! window's frames, normalised over tokens, median filter of width 7, mean over heads) is
//! aligned to the tokens by dynamic time warping, tokens are grouped into words, punctuation is
//! merged into its neighbours, and over-long words at sentence and segment boundaries are
//! clipped by faster-whisper's heuristics.

use super::model::DecoderState;
use super::whisper::WhisperModel;
use crate::Result;

/// Encoder positions per second.
const TOKENS_PER_SECOND: f64 = 50.0;
/// Width of the median filter over the attention.
const MEDIAN_FILTER_WIDTH: usize = 7;
/// Punctuation merged into the following word.
const PREPEND_PUNCTUATIONS: &str = "\"'“¿([{-";
/// Punctuation merged into the preceding word.
const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";
/// Python's `string.punctuation`.
const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// One word with its timing (seconds) and mean token probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word as decoded, with its leading space.
    pub word: String,
    /// Its tokens.
    pub tokens: Vec<u32>,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Mean probability of its tokens.
    pub probability: f64,
}

/// One segment of a window while its words are added: timestamps (seconds) and tokens.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Tokens (text and timestamps).
    pub tokens: Vec<u32>,
    /// Words, once aligned.
    pub words: Vec<Word>,
}

/// Python's `needle in haystack` for strings (a substring test; the empty string is in all).
fn is_in(needle: &str, haystack: &str) -> bool {
    haystack.contains(needle)
}

/// Python's `round(x, 2)`, near enough for timestamps.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Dynamic time warping over `-x` (`x` is `n` rows of `m`), as CTranslate2's `negative_dtw`:
/// the path as (text index, time index) pairs.
pub(crate) fn negative_dtw(x: &[f32], n: usize, m: usize) -> Vec<(usize, usize)> {
    let mut cost = vec![f32::INFINITY; (n + 1) * (m + 1)];
    let mut trace = vec![-1i8; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    cost[0] = 0.0;
    for j in 1..=m {
        for i in 1..=n {
            let c0 = cost[at(i - 1, j - 1)];
            let c1 = cost[at(i - 1, j)];
            let c2 = cost[at(i, j - 1)];
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            cost[at(i, j)] = -x[(i - 1) * m + (j - 1)] + c;
            trace[at(i, j)] = t;
        }
    }
    for j in 0..=m {
        trace[at(0, j)] = 2;
    }
    for i in 0..=n {
        trace[at(i, 0)] = 1;
    }
    let (mut i, mut j) = (n, m);
    let mut path = Vec::new();
    while i > 0 || j > 0 {
        path.push((i.wrapping_sub(1), j.wrapping_sub(1)));
        match trace[at(i, j)] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    path.reverse();
    path
}

/// Median filter of `width` along a row, reflecting at the edges (CTranslate2's `MedianFilter`).
fn median_filter(row: &mut [f32], width: usize) {
    let depth = row.len();
    let rank = width / 2;
    if depth <= rank {
        return;
    }
    let input = row.to_vec();
    let mut window = vec![0f32; width];
    for (j, out) in row.iter_mut().enumerate() {
        for (w, k) in window.iter_mut().zip(-(rank as isize)..=rank as isize) {
            let mut read = (j as isize + k).unsigned_abs();
            if read >= depth {
                read = depth - (read - depth) - 2;
            }
            *w = input[read];
        }
        window.select_nth_unstable_by(rank, f32::total_cmp);
        *out = window[rank];
    }
}

/// The model's cross-attention of the forced sequence `sot_sequence, <|notimestamps|>, text,
/// <|endoftext|>` as the alignment matrix (`text.len() + 1` rows of `frames`), and the
/// probability of each text token.
fn attention_matrix(
    model: &WhisperModel,
    audio: &DecoderState,
    sot_sequence: &[u32],
    text: &[u32],
    frames: usize,
) -> Result<(Vec<f32>, Vec<f64>)> {
    let sp = &model.special;
    let mut input = sot_sequence.to_vec();
    input.push(sp.no_timestamps);
    input.extend_from_slice(text);
    input.push(sp.eot);
    let n = input.len();
    let mut state = audio.clone();
    let (hidden, scores) = crate::compute::with_budget(|| {
        model
            .net
            .decode_with_scores(&input, &mut state, &model.alignment_heads)
    })?;
    let offset = sot_sequence.len();
    let logits = model
        .net
        .logits_rows(&hidden.narrow(0, offset, text.len())?)?;
    let probs = logits
        .into_iter()
        .zip(text)
        .map(|(row, &t)| {
            let text_logits = &row[..sp.eot as usize];
            let max = text_logits
                .iter()
                .cloned()
                .fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = text_logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
            ((row[t as usize] - max) as f64).exp() / sum
        })
        .collect();
    let mut matrix = vec![0f32; n * frames];
    for head in &scores {
        let rows = head.narrow(2, 0, frames)?.squeeze(0)?.to_vec2::<f32>()?;
        let mut w: Vec<Vec<f32>> = rows
            .into_iter()
            .map(|mut r| {
                super::search::log_softmax(&mut r);
                r.iter_mut().for_each(|x| *x = x.exp());
                r
            })
            .collect();
        // Normalised over the tokens (layer norm along the token axis, no epsilon).
        for j in 0..frames {
            let mean = w.iter().map(|r| r[j]).sum::<f32>() / n as f32;
            let var = w.iter().map(|r| (r[j] - mean).powi(2)).sum::<f32>() / n as f32;
            let std = var.sqrt();
            w.iter_mut().for_each(|r| r[j] = (r[j] - mean) / std);
        }
        for (i, r) in w.iter_mut().enumerate() {
            median_filter(r, MEDIAN_FILTER_WIDTH);
            for (m, &x) in matrix[i * frames..(i + 1) * frames]
                .iter_mut()
                .zip(r.iter())
            {
                *m += x;
            }
        }
    }
    let heads = scores.len().max(1) as f32;
    let rows = &matrix[offset * frames..(offset + text.len() + 1) * frames];
    Ok((rows.iter().map(|x| x / heads).collect(), probs))
}

/// Splits `tokens` where they decode to whole characters (faster-whisper's
/// `split_tokens_on_unicode`).
fn split_on_unicode(model: &WhisperModel, tokens: &[u32]) -> (Vec<String>, Vec<Vec<u32>>) {
    let decode = |ids: &[u32]| model.decode_text(ids);
    let full: Vec<char> = decode(tokens).chars().collect();
    let (mut words, mut groups) = (Vec::new(), Vec::new());
    let mut current = Vec::new();
    let mut offset = 0;
    for &t in tokens {
        current.push(t);
        let decoded = decode(&current);
        let replacement = decoded.chars().position(|c| c == '\u{fffd}');
        let complete = match replacement {
            None => true,
            Some(i) => full.get(i + offset) == Some(&'\u{fffd}'),
        };
        if complete {
            offset += decoded.chars().count();
            words.push(decoded);
            groups.push(std::mem::take(&mut current));
        }
    }
    (words, groups)
}

/// Groups `tokens` into words (faster-whisper's `split_to_word_tokens`): at spaces and
/// punctuation, or at every character for languages written without spaces.
fn split_words(
    model: &WhisperModel,
    tokens: &[u32],
    language: &str,
) -> (Vec<String>, Vec<Vec<u32>>) {
    let (subwords, groups) = split_on_unicode(model, tokens);
    if ["zh", "ja", "th", "lo", "my", "yue"].contains(&language) {
        return (subwords, groups);
    }
    let (mut words, mut word_tokens): (Vec<String>, Vec<Vec<u32>>) = (Vec::new(), Vec::new());
    for (subword, group) in subwords.into_iter().zip(groups) {
        let special = group[0] >= model.special.eot;
        let with_space = subword.starts_with(' ');
        let punctuation = is_in(subword.trim(), ASCII_PUNCTUATION);
        if special || with_space || punctuation || words.is_empty() {
            words.push(subword);
            word_tokens.push(group);
        } else if let (Some(w), Some(t)) = (words.last_mut(), word_tokens.last_mut()) {
            w.push_str(&subword);
            t.extend(group);
        }
    }
    (words, word_tokens)
}

/// faster-whisper's `find_alignment`: the words of `text` with times relative to the window.
fn find_alignment(
    model: &WhisperModel,
    audio: &DecoderState,
    sot_sequence: &[u32],
    text: &[u32],
    num_frames: usize,
    language: &str,
) -> Result<Vec<Word>> {
    let frames = num_frames / 2;
    if text.is_empty() || frames == 0 {
        return Ok(Vec::new());
    }
    let (matrix, probs) = attention_matrix(model, audio, sot_sequence, text, frames)?;
    let path = negative_dtw(&matrix, text.len() + 1, frames);
    let mut with_eot = text.to_vec();
    with_eot.push(model.special.eot);
    let (words, word_tokens) = split_words(model, &with_eot, language);
    if word_tokens.len() <= 1 {
        return Ok(Vec::new());
    }
    let mut boundaries = vec![0usize];
    for t in &word_tokens[..word_tokens.len() - 1] {
        boundaries.push(boundaries.last().copied().unwrap_or(0) + t.len());
    }
    let jump_times: Vec<f64> = path
        .iter()
        .enumerate()
        .filter(|&(k, &(i, _))| k == 0 || i != path[k - 1].0)
        .map(|(_, &(_, j))| j as f64 / TOKENS_PER_SECOND)
        .collect();
    let time = |k: usize| jump_times.get(k).copied().unwrap_or(0.0);
    Ok(words
        .into_iter()
        .zip(word_tokens)
        .zip(boundaries.windows(2))
        .map(|((word, tokens), b)| {
            let p = &probs[b[0].min(probs.len())..b[1].min(probs.len())];
            Word {
                word,
                tokens,
                start: time(b[0]),
                end: time(b[1]),
                probability: p.iter().sum::<f64>() / p.len().max(1) as f64,
            }
        })
        .collect())
}

/// faster-whisper's `merge_punctuations`: opening marks join the next word, closing marks the
/// previous one (the merged entries are left empty).
fn merge_punctuations(words: &mut [Word]) {
    if words.len() < 2 {
        return;
    }
    let mut j = words.len() - 1;
    for i in (0..words.len() - 1).rev() {
        let previous = &words[i];
        if previous.word.starts_with(' ') && is_in(previous.word.trim(), PREPEND_PUNCTUATIONS) {
            let (word, tokens) = (
                std::mem::take(&mut words[i].word),
                std::mem::take(&mut words[i].tokens),
            );
            let following = &mut words[j];
            following.word = word + &following.word;
            following.tokens = tokens
                .into_iter()
                .chain(following.tokens.drain(..))
                .collect();
        } else {
            j = i;
        }
    }
    let mut i = 0;
    for j in 1..words.len() {
        if !words[i].word.ends_with(' ') && is_in(&words[j].word, APPEND_PUNCTUATIONS) {
            let (word, tokens) = (
                std::mem::take(&mut words[j].word),
                std::mem::take(&mut words[j].tokens),
            );
            words[i].word.push_str(&word);
            words[i].tokens.extend(tokens);
        } else {
            i = j;
        }
    }
}

/// The median of the non-zero durations (numpy's median), or 0.
fn median_duration(words: &[Word]) -> (f64, bool) {
    let mut d: Vec<f64> = words
        .iter()
        .map(|w| w.end - w.start)
        .filter(|&d| d != 0.0)
        .collect();
    if d.is_empty() {
        return (0.0, false);
    }
    d.sort_by(f64::total_cmp);
    let m = d.len() / 2;
    let median = if d.len() % 2 == 1 {
        d[m]
    } else {
        (d[m - 1] + d[m]) / 2.0
    };
    (median, true)
}

/// faster-whisper's `add_word_timestamps` for the pieces of one window (which starts at
/// feature frame `seek` and holds `num_frames` frames of audio): sets each piece's words, and
/// moves its start and end to them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_word_timestamps(
    model: &WhisperModel,
    audio: &DecoderState,
    sot_sequence: &[u32],
    pieces: &mut [Piece],
    seek: usize,
    num_frames: usize,
    language: &str,
    mut last_speech_timestamp: f64,
) -> Result<()> {
    if pieces.is_empty() {
        return Ok(());
    }
    let eot = model.special.eot;
    let text_per_piece: Vec<Vec<u32>> = pieces
        .iter()
        .map(|p| p.tokens.iter().copied().filter(|&t| t < eot).collect())
        .collect();
    let text: Vec<u32> = text_per_piece.concat();
    let mut alignment = find_alignment(model, audio, sot_sequence, &text, num_frames, language)?;
    let (median, any) = median_duration(&alignment);
    let median = median.min(0.7);
    let max_duration = median * 2.0;
    if any {
        let marks = ".。!！?？";
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                if is_in(&alignment[i].word, marks) {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if is_in(&alignment[i - 1].word, marks) {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuations(&mut alignment);
    let time_offset = seek as f64 / 100.0;
    let mut word_index = 0;
    for (piece, piece_text) in pieces.iter_mut().zip(&text_per_piece) {
        let mut saved = 0;
        let mut words: Vec<Word> = Vec::new();
        while word_index < alignment.len() && saved < piece_text.len() {
            let timing = &alignment[word_index];
            if !timing.word.is_empty() {
                words.push(Word {
                    start: round2(time_offset + timing.start),
                    end: round2(time_offset + timing.end),
                    ..timing.clone()
                });
            }
            saved += timing.tokens.len();
            word_index += 1;
        }
        if !words.is_empty() {
            let long_first = words[0].end - words[0].start > max_duration;
            let long_pair = words.len() > 1 && words[1].end - words[0].start > max_duration * 2.0;
            if words[0].end - last_speech_timestamp > median * 4.0 && (long_first || long_pair) {
                if words.len() > 1 && words[1].end - words[1].start > max_duration {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max_duration);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max_duration).max(0.0);
            }
            if piece.start < words[0].end && piece.start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median).min(piece.start).max(0.0);
            } else {
                piece.start = words[0].start;
            }
            let last = words.len() - 1;
            if piece.end > words[last].start && piece.end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median).max(piece.end);
            } else {
                piece.end = words[last].end;
            }
            last_speech_timestamp = piece.end;
        }
        piece.words = words;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str) -> Word {
        Word {
            word: w.into(),
            tokens: vec![1],
            start: 0.0,
            end: 0.0,
            probability: 1.0,
        }
    }

    #[test]
    fn dtw_follows_the_diagonal() {
        // Row i is high at column i and low elsewhere: the path steps diagonally.
        let (n, m) = (3, 3);
        let mut x = vec![-1f32; n * m];
        (0..3).for_each(|i| x[i * m + i] = 1.0);
        assert_eq!(negative_dtw(&x, n, m), vec![(0, 0), (1, 1), (2, 2)]);
        // Two text tokens over four frames: each token keeps the frames where it is high.
        let x = [1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0];
        assert_eq!(negative_dtw(&x, 2, 4), vec![(0, 0), (0, 1), (1, 2), (1, 3)]);
    }

    #[test]
    fn median_filter_reflects_at_the_edges() {
        let mut r = vec![5.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0];
        median_filter(&mut r, 7);
        assert!(r.iter().all(|&x| x == 0.0), "{r:?}");
        let mut short = vec![3.0, 1.0];
        median_filter(&mut short, 7);
        assert_eq!(short, vec![3.0, 1.0]);
    }

    #[test]
    fn punctuation_joins_its_neighbours() {
        let mut w: Vec<Word> = [" \"", "Hello", ",", " world", "."]
            .into_iter()
            .map(word)
            .collect();
        merge_punctuations(&mut w);
        let texts: Vec<&str> = w.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(texts, vec!["", " \"Hello,", "", " world.", ""]);
        assert_eq!(w[1].tokens.len(), 3);
    }
}
