//! Markers forming at the end of streamed text.

/// Length of the longest end of `text` that is a proper start of `marker`: text to hold back
/// while a marker (a stop string, a tag) may still be forming.
pub(crate) fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&len| {
            len <= text.len()
                && text.is_char_boundary(text.len() - len)
                && marker.is_char_boundary(len)
                && text.ends_with(&marker[..len])
        })
        .unwrap_or(0)
}
