//! Launch progress: which stage a launch is in and how many bytes of each file have arrived.

use std::sync::{Arc, Mutex};

pub use crate::protocol::xinference::{FileProgress, ProgressSnapshot, Stage};

#[derive(Debug)]
struct Inner {
    stage: Stage,
    files_expected: usize,
    files: Vec<FileProgress>,
}

/// Shared, thread-safe launch progress, written by the loader thread and read by the API.
#[derive(Debug, Clone)]
pub struct LaunchProgress(Arc<Mutex<Inner>>);

impl Default for LaunchProgress {
    fn default() -> Self {
        LaunchProgress(Arc::new(Mutex::new(Inner {
            stage: Stage::Pending,
            files_expected: 0,
            files: Vec::new(),
        })))
    }
}

impl LaunchProgress {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
    /// Moves to `stage`.
    pub fn set_stage(&self, stage: Stage) {
        self.with(|i| i.stage = stage);
    }
    /// Declares how many files the download will fetch (for the overall fraction).
    pub fn expect_files(&self, n: usize) {
        self.with(|i| i.files_expected = n);
    }
    /// Starts a file of `total` bytes. Starting it again (a resume) keeps the bytes counted so
    /// far, so that a snapshot never sees the count drop; [`Self::set_bytes`] then sets it.
    pub fn start_file(&self, name: &str, total: u64) {
        self.with(|i| match i.files.iter_mut().find(|f| f.file_name == name) {
            Some(f) => f.total_bytes = total,
            None => i.files.push(FileProgress {
                file_name: name.to_owned(),
                downloaded_bytes: 0,
                total_bytes: total,
                done: false,
            }),
        });
    }
    /// Sets a file's count to the `bytes` already on disk (where a download resumes).
    pub fn set_bytes(&self, name: &str, bytes: u64) {
        self.with(|i| {
            if let Some(f) = i.files.iter_mut().find(|f| f.file_name == name) {
                f.downloaded_bytes = bytes;
            }
        });
    }
    /// Adds `bytes` to a file's count.
    pub fn add_bytes(&self, name: &str, bytes: u64) {
        self.with(|i| {
            if let Some(f) = i.files.iter_mut().find(|f| f.file_name == name) {
                f.downloaded_bytes += bytes;
            }
        });
    }
    /// The size of a file as announced when its download started.
    pub fn total_bytes(&self, name: &str) -> Option<u64> {
        self.with(|i| {
            i.files
                .iter()
                .find(|f| f.file_name == name)
                .map(|f| f.total_bytes)
        })
    }
    /// Marks a file complete (also used for files found in the cache).
    pub fn finish_file(&self, name: &str, size: u64) {
        self.with(|i| match i.files.iter_mut().find(|f| f.file_name == name) {
            Some(f) => {
                f.downloaded_bytes = size;
                f.total_bytes = size;
                f.done = true;
            }
            None => i.files.push(FileProgress {
                file_name: name.to_owned(),
                downloaded_bytes: size,
                total_bytes: size,
                done: true,
            }),
        });
    }
    /// The current state. Downloading covers 0.0..0.9 of the bar, loading 0.9..1.0.
    pub fn snapshot(&self) -> ProgressSnapshot {
        self.with(|i| {
            let n = i.files_expected.max(i.files.len()).max(1) as f64;
            let download: f64 = i
                .files
                .iter()
                .map(|f| {
                    if f.done {
                        1.0
                    } else if f.total_bytes > 0 {
                        f.downloaded_bytes as f64 / f.total_bytes as f64
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
                / n;
            let progress = match i.stage {
                Stage::Pending => 0.0,
                Stage::Downloading => 0.9 * download.min(1.0),
                Stage::Loading => 0.9,
                Stage::Ready => 1.0,
                Stage::Error => 0.0,
            };
            ProgressSnapshot {
                progress,
                stage: i.stage,
                download_files: i.files.clone(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LaunchProgress;

    #[test]
    fn a_resume_never_shows_fewer_bytes() {
        let progress = LaunchProgress::default();
        progress.expect_files(1);
        progress.set_stage(super::Stage::Downloading);
        progress.start_file("w", 100);
        progress.set_bytes("w", 0);
        progress.add_bytes("w", 40);
        // A resume: the file starts again, then the offset on disk.
        progress.start_file("w", 100);
        assert_eq!(progress.snapshot().download_files[0].downloaded_bytes, 40);
        progress.set_bytes("w", 40);
        progress.add_bytes("w", 60);
        let snapshot = progress.snapshot();
        assert_eq!(snapshot.download_files[0].downloaded_bytes, 100);
        assert!((snapshot.progress - 0.9).abs() < 1e-9);
    }
}
