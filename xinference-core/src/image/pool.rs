//! Reused buffers for the UNet's and the VAE's large temporaries.
//!
//! A 512x512 image's VAE activations are 67-134 MB each, above the allocator's largest
//! `mmap` threshold (32 MB): every one was a fresh mapping, zeroed by the kernel one page
//! fault at a time, and unmapped when dropped (8-10% of a whole image's time). Layers take
//! their outputs and scratch from here and give back what they are done with; a buffer given
//! back is handed to the next request of a size it holds, without faults. The pool keeps a
//! few buffers only, and [`clear`] returns them all to the system after a denoising loop or
//! a decode, so they do not stay resident between requests.

use std::sync::Mutex;

/// Below this many values a buffer is left to the allocator (which reuses small blocks).
const MIN_VALUES: usize = 1 << 16;
/// Buffers kept at most: more than a layer holds at once.
const MAX_BUFFERS: usize = 8;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of `len` values whose contents are unspecified (the caller writes every one):
/// a pooled one of at most four times the size when there is one.
pub fn take(len: usize) -> Vec<f32> {
    if len >= MIN_VALUES {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest buffer that holds `len` values.
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() / 4 <= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut buf = pool.swap_remove(i);
            drop(pool);
            // Within the capacity: no new allocation; only a grown tail is written.
            buf.resize(len, 0.0);
            return buf;
        }
    }
    vec![0f32; len]
}

/// A buffer of `len` zeros.
pub fn zeroed(len: usize) -> Vec<f32> {
    let mut buf = take(len);
    buf.fill(0.0);
    buf
}

/// A copy of `values` in a pooled buffer.
pub fn copy(values: &[f32]) -> Vec<f32> {
    let mut buf = take(values.len());
    buf.copy_from_slice(values);
    buf
}

/// Gives `buf` back for reuse (small buffers go straight back to the allocator; when the
/// pool is full, its smallest buffer does).
pub fn give(buf: Vec<f32>) {
    if buf.capacity() < MIN_VALUES {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.push(buf);
    if pool.len() > MAX_BUFFERS {
        let smallest = (0..pool.len())
            .min_by_key(|&i| pool[i].capacity())
            .unwrap_or(0);
        let dropped = pool.swap_remove(smallest);
        drop(pool);
        drop(dropped);
    }
}

/// Returns every pooled buffer to the system.
pub fn clear() {
    let buffers = std::mem::take(&mut *POOL.lock().unwrap_or_else(|e| e.into_inner()));
    drop(buffers);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A given-back buffer is handed out again for a request it holds, with the requested
    /// length; `zeroed` clears it.
    #[test]
    fn buffers_are_reused_and_zeroed_on_request() {
        let mut a = take(MIN_VALUES * 3);
        a.fill(7.0);
        let ptr = a.as_ptr();
        give(a);
        let b = zeroed(MIN_VALUES * 2);
        assert_eq!(b.len(), MIN_VALUES * 2);
        assert!(b.iter().all(|v| *v == 0.0));
        // Another test may have taken it first; when ours, it is the same memory.
        if b.as_ptr() == ptr {
            assert!(b.capacity() >= MIN_VALUES * 3);
        }
        give(b);
        let c = take(10);
        assert_eq!(c.len(), 10);
    }
}
