//! Stop strings in the text a sequence generates: where one starts, and how much of the end
//! of the pending text must be held back because a stop string may be forming there.

use super::engine::{StepOutput, TokenLogprob};
use crate::llm::output::marker::partial_suffix;

/// Where the first stop string starts in `pending`, and its length. A stop string can only
/// straddle emitted and pending text if its start was held back, so the pending text suffices.
pub(super) fn find_stop(pending: &str, stops: &[&str]) -> Option<(usize, usize)> {
    stops
        .iter()
        .filter_map(|s| pending.find(s).map(|at| (at, s.len())))
        .min_by_key(|(at, _)| *at)
}

/// Bytes at the end of `text` that could be the start of a stop string: keep them back.
pub(super) fn held_back(text: &str, stops: &[&str]) -> usize {
    stops
        .iter()
        .map(|stop| partial_suffix(text, stop))
        .max()
        .unwrap_or(0)
}

/// Sends (and adds to `emitted`) the text and log-probabilities held back while a stop string
/// might have been forming, once generation has ended without one.
pub(super) fn release_held_back(
    pending: String,
    logprobs: Vec<TokenLogprob>,
    emitted: &mut String,
    on_step: &mut dyn FnMut(StepOutput) -> bool,
) {
    if !pending.is_empty() || !logprobs.is_empty() {
        emitted.push_str(&pending);
        on_step(StepOutput {
            text: pending,
            logprobs,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_stop_strings_are_held_back() {
        assert_eq!(held_back("hello wor", &["world"]), 3);
        assert_eq!(held_back("hello", &["world"]), 0);
        assert_eq!(held_back("ab<|", &["<|end|>", "b<|x"]), 3);
        assert_eq!(find_stop("say STOP now", &["STOP"]), Some((4, 4)));
        assert_eq!(find_stop("nothing", &["STOP"]), None);
    }
}
