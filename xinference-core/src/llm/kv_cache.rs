//! One layer's keys and values of one sequence, in f16 as llama.cpp keeps them (the rounding is
//! part of the numbers: its attention reads the f16 cache), laid out `[position][kv_head][dim]`.
//!
//! The buffers grow in chunks of [`CHUNK`] positions and are written in place, never
//! re-concatenated. Clones share them (a prefix-cache entry, a batched step's hand-over): the
//! first write to a shared buffer copies the positions in view (copy-on-write), so a stored
//! state never changes. A sliding-window layer drops what no query sees any more by moving its
//! last positions to the front once it holds a chunk more than it needs (unless its decoder keeps
//! whole windows for prompt-prefix reuse: [`crate::llm::CausalLm::keep_whole_windows`]).

use half::f16;
use half::slice::HalfFloatSliceExt;
use std::sync::Arc;

/// Positions a buffer grows by.
pub const CHUNK: usize = 128;

/// One layer's f16 keys and values: the last [`LayerKv::held`] positions of a sequence.
#[derive(Clone, Debug)]
pub struct LayerKv {
    keys: Arc<Vec<f16>>,
    values: Arc<Vec<f16>>,
    /// Values per position (`kv_heads * head_dim`).
    row: usize,
    /// Positions in view: the first `held` rows of the buffers.
    held: usize,
    /// A recurrent layer's state after its `held` positions (f32; Gated DeltaNet: the
    /// convolution's last inputs and the delta rule's matrices), `None` for an attention
    /// layer. It holds no keys or values, and continues a sequence only at exactly `held`
    /// positions: it cannot be cut back to a shorter prefix.
    recurrent: Option<Arc<Vec<f32>>>,
}

impl LayerKv {
    /// An empty layer of `row` values per position (keys and values alike).
    pub fn new(row: usize) -> Self {
        LayerKv {
            keys: Arc::new(Vec::new()),
            values: Arc::new(Vec::new()),
            row,
            held: 0,
            recurrent: None,
        }
    }

    /// A recurrent layer's `state` after `held` positions (no keys or values).
    pub fn recurrent(state: Vec<f32>, held: usize) -> Self {
        LayerKv {
            keys: Arc::new(Vec::new()),
            values: Arc::new(Vec::new()),
            row: 0,
            held,
            recurrent: Some(Arc::new(state)),
        }
    }

    /// A recurrent layer's state, `None` for an attention layer (or a recurrent one cut
    /// back to fewer positions than it was computed for: it cannot be restored).
    pub fn recurrent_state(&self) -> Option<&Arc<Vec<f32>>> {
        self.recurrent.as_ref()
    }

    /// The recurrent state, taken out (to be extended and put back by a new
    /// [`LayerKv::recurrent`]); `None` for an attention layer.
    pub fn into_recurrent(self) -> Option<Arc<Vec<f32>>> {
        self.recurrent
    }

    /// Whether this is a recurrent layer's (see [`LayerKv::recurrent`]; no values per
    /// position), its state held or dropped.
    pub fn is_recurrent(&self) -> bool {
        self.row == 0
    }

    /// Positions held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Values per position.
    pub fn row(&self) -> usize {
        self.row
    }

    /// Bytes allocated for the keys and values (what the memory holds, spare chunk included).
    pub fn bytes(&self) -> usize {
        (self.keys.capacity() + self.values.capacity()) * std::mem::size_of::<f16>()
            + self
                .recurrent
                .as_ref()
                .map_or(0, |s| s.capacity() * std::mem::size_of::<f32>())
    }

    /// The keys held, `[held][row]`.
    pub fn keys(&self) -> &[f16] {
        &self.keys[..self.held * self.row]
    }

    /// The values held, `[held][row]`.
    pub fn values(&self) -> &[f16] {
        &self.values[..self.held * self.row]
    }

    /// Keeps the first `held` positions only (a prefix of a longer sequence).
    /// A recurrent state cut back to fewer positions is dropped (it cannot be restored).
    pub fn truncate(&mut self, held: usize) {
        if held < self.held && self.recurrent.is_some() {
            self.recurrent = None;
        }
        self.held = self.held.min(held);
    }

    /// Appends positions: `keys` and `values` hold whole rows of f32 values, rounded to f16.
    pub fn append(&mut self, keys: &[f32], values: &[f32]) {
        assert!(keys.len() == values.len() && keys.len().is_multiple_of(self.row.max(1)));
        let added = keys.len() / self.row.max(1);
        let want = (self.held + added).div_ceil(CHUNK) * CHUNK * self.row;
        let held = self.held * self.row;
        for (buffer, new) in [(&mut self.keys, keys), (&mut self.values, values)] {
            let buffer = writable(buffer, held, want);
            let start = buffer.len();
            buffer.resize(start + new.len(), f16::ZERO);
            buffer[start..].convert_from_f32_slice(new);
        }
        self.held += added;
    }

    /// Keeps at most the last `keep` positions, once more than a chunk beyond them is held
    /// (a sliding window: the positions before are never seen again). Returns whether it
    /// dropped any.
    pub fn trim_to(&mut self, keep: usize) -> bool {
        if self.held <= keep + CHUNK {
            return false;
        }
        let (row, held) = (self.row, self.held);
        let want = (keep + CHUNK) * row;
        for buffer in [&mut self.keys, &mut self.values] {
            match Arc::get_mut(buffer) {
                Some(b) => {
                    b.copy_within((held - keep) * row..held * row, 0);
                    b.truncate(keep * row);
                    b.shrink_to(want);
                }
                None => {
                    let mut b = Vec::with_capacity(want);
                    b.extend_from_slice(&buffer[(held - keep) * row..held * row]);
                    *buffer = Arc::new(b);
                }
            }
        }
        self.held = keep;
        true
    }
}

/// `buffer` ready for appending after its first `held` values, with room for `want`: itself
/// when no one else holds it, else a copy of those values.
fn writable(buffer: &mut Arc<Vec<f16>>, held: usize, want: usize) -> &mut Vec<f16> {
    if Arc::get_mut(buffer).is_none() {
        let mut copy = Vec::with_capacity(want);
        copy.extend_from_slice(&buffer[..held]);
        *buffer = Arc::new(copy);
    }
    let b = Arc::get_mut(buffer).expect("a buffer of our own");
    b.truncate(held);
    if b.capacity() < want {
        b.reserve_exact(want - b.len());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(from: usize, to: usize, row: usize) -> Vec<f32> {
        (from * row..to * row).map(|i| i as f32).collect()
    }

    /// Appends round to f16 and grow in chunks; a clone is never changed by the original's
    /// appends, nor the original by the clone's; a narrowed view appends after its end.
    #[test]
    fn appends_are_copy_on_write() {
        let mut a = LayerKv::new(2);
        a.append(&rows(0, 3, 2), &rows(0, 3, 2));
        assert_eq!(a.held(), 3);
        assert_eq!(a.bytes(), 2 * CHUNK * 2 * 2);
        let b = a.clone();
        a.append(&rows(3, 5, 2), &rows(3, 5, 2));
        assert_eq!((a.held(), b.held()), (5, 3));
        assert_eq!(b.keys().len(), 6);
        let mut c = a.clone();
        c.truncate(2);
        c.append(&[100.0, 101.0], &[0.1, 0.2]);
        assert_eq!(c.keys()[4].to_f32(), 100.0);
        assert_eq!(c.values()[4], f16::from_f32(0.1));
        assert_eq!(a.keys()[4].to_f32(), 4.0);
        let keys: Vec<f32> = a.keys().iter().map(|k| k.to_f32()).collect();
        assert_eq!(keys, rows(0, 5, 2));
    }

    /// A sliding window drops the oldest positions once a chunk past the window, shared or not.
    #[test]
    fn trimming_keeps_the_last_positions() {
        let mut a = LayerKv::new(1);
        a.append(&rows(0, 10, 1), &rows(0, 10, 1));
        assert!(!a.trim_to(4));
        a.append(&rows(10, CHUNK + 10, 1), &rows(10, CHUNK + 10, 1));
        let shared = a.clone();
        assert!(a.trim_to(4));
        assert_eq!(a.held(), 4);
        let last: Vec<f32> = a.keys().iter().map(|k| k.to_f32()).collect();
        assert_eq!(last, rows(CHUNK + 6, CHUNK + 10, 1));
        assert_eq!(shared.held(), CHUNK + 10);
        let mut b = shared.clone();
        drop(shared);
        assert!(b.trim_to(4));
        assert_eq!(b.keys(), a.keys());
    }
}
