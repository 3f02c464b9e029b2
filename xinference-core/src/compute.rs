//! The one budget of compute threads that every launched model shares.
//!
//! candle runs its CPU kernels on one process-wide spinning thread pool (sized by
//! `CANDLE_NUM_THREADS`, default the machine's cores). Two models computing at the same time
//! would oversubscribe it, and a spinning pool then collapses (20x slower, measured). So every
//! forward pass takes a turn on a fair (first come, first served) lock: two models generating
//! at once alternate token by token, each keeping about half of its solo speed, and the pool
//! never has more work than cores.

use std::sync::{Condvar, Mutex, MutexGuard};

/// A first-come-first-served lock (a ticket lock).
pub struct FairLock {
    state: Mutex<Tickets>,
    turn: Condvar,
}

struct Tickets {
    next: u64,
    serving: u64,
}

/// Holds the compute budget until dropped.
pub struct ComputeTurn<'a> {
    lock: &'a FairLock,
}

impl FairLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        FairLock {
            state: Mutex::new(Tickets {
                next: 0,
                serving: 0,
            }),
            turn: Condvar::new(),
        }
    }

    fn tickets(&self) -> MutexGuard<'_, Tickets> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this caller's turn.
    pub fn lock(&self) -> ComputeTurn<'_> {
        let mut t = self.tickets();
        let mine = t.next;
        t.next += 1;
        while t.serving != mine {
            t = self.turn.wait(t).unwrap_or_else(|p| p.into_inner());
        }
        ComputeTurn { lock: self }
    }
}

impl Default for FairLock {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ComputeTurn<'_> {
    fn drop(&mut self) {
        self.lock.tickets().serving += 1;
        self.lock.turn.notify_all();
    }
}

static BUDGET: FairLock = FairLock::new();

/// Runs one unit of model compute (a forward pass) within the shared budget.
pub fn with_budget<R>(f: impl FnOnce() -> R) -> R {
    let _turn = BUDGET.lock();
    f()
}

/// Sizes the compute threads, once, before any model computes: `threads`, or the
/// `CANDLE_NUM_THREADS` already in the environment, or candle's default (the machine's
/// physical cores). candle 0.11 counts its threads from `RAYON_NUM_THREADS` (which also sizes
/// rayon's pool), not `CANDLE_NUM_THREADS`, and without it reads `/proc/cpuinfo` at every
/// count (each of its matrix products): unless `RAYON_NUM_THREADS` is already set, the count
/// is written there.
pub fn configure_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|n| *n > 0) {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(candle_core::utils::get_num_threads);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// Hands the heap memory freed while a model loaded (each tensor's file bytes, read before
/// candle lays them out; the tokenizer's build) back to the system. glibc keeps freed heap
/// pages otherwise, and the RSS after load stays far above what the model holds (Gemma 3
/// 270M: 669 MB, 399 MB once trimmed).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's `malloc_trim` only returns free heap pages to the system.
        unsafe { malloc_trim(0) };
    }
}

/// The number of compute threads (read once: see [`crate::kernels::threads`]).
pub fn threads() -> usize {
    crate::kernels::threads()
}

/// CPU seconds this process has used so far, all threads, user and system (Linux
/// `/proc/self/stat`, in 1/100 s ticks; `NaN` where there is none): for benchmarks and
/// profiles, the work done where the wall time also counts other processes.
#[doc(hidden)]
pub fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces): state is the 3rd field,
            // utime and stime the 14th and 15th.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
            Some((ticks(14)? + ticks(15)?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn turns_are_exclusive_and_in_arrival_order() {
        let lock = Arc::new(FairLock::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = lock.lock();
        let mut handles = Vec::new();
        for i in 0..4 {
            let (lock, order) = (lock.clone(), order.clone());
            handles.push(std::thread::spawn(move || {
                let _t = lock.lock();
                order.lock().unwrap().push(i);
            }));
            // Let each thread take its ticket before the next one.
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        drop(first);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }
}
