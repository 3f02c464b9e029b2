//! One file from the hub into the download folder, so that nothing unverified is ever
//! trusted. The layout is huggingface_hub's (`models--<org>--<name>/blobs/<etag>`,
//! `snapshots/<commit>/<file>` linking to the blob, `refs/<revision>`), so its tools read
//! our downloads and ours read theirs.
//!
//! The body goes into `blobs/<etag>.part`, resumed with a `Range` request after a broken
//! connection. A `.part` larger than the file, a hub that answers a `Range` with the whole
//! body (200) or from another offset, and a body longer than announced all restart the file
//! from byte 0 rather than appending. Only a `.part` of exactly the announced size whose
//! SHA-256 matches the hub's (LFS files carry it as their ETag) is synced and renamed to the
//! blob; a mismatch deletes it. Failures that may pass (dropped connections, timeouts, 5xx,
//! short or corrupted bodies) are retried with exponential backoff; each attempt's outcome is
//! decided here, so the last successful retry is a success. An advisory lock on
//! `<etag>.lock` keeps two launches of the same file apart (the kernel drops it when a
//! process dies, even by `kill -9`).

use super::client::{Failure, HubClient, RemoteFile};
use super::LaunchProgress;
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Attempts after the first one before a file's download fails.
pub const RETRIES: u32 = 5;
/// Pause before the first retry; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The download folder of one repository: `<root>/models--<org>--<name>`.
pub struct RepoFolder {
    dir: PathBuf,
}

impl RepoFolder {
    /// The folder of `repo_id` under `root` (`$XINFERENCE_HOME/huggingface`).
    pub fn new(root: &Path, repo_id: &str) -> RepoFolder {
        RepoFolder {
            dir: root.join(format!("models--{}", repo_id.replace('/', "--"))),
        }
    }

    fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    fn snapshot(&self, commit: &str, name: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit).join(name)
    }

    /// Records which commit `revision` resolved to (`refs/<revision>`), as huggingface_hub.
    fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::registry::write_atomically(&path, commit.as_bytes())
    }
}

/// Fetches `name` of `repo_id` at `revision` into `folder`, answering the path of its
/// snapshot link. Progress goes to `progress` under `name`.
pub fn fetch_file(
    hub: &HubClient,
    folder: &RepoFolder,
    repo_id: &str,
    revision: &str,
    name: &str,
    progress: &LaunchProgress,
) -> Result<PathBuf> {
    check_repo_path(name)?;
    let remote = with_retries(name, |_| hub.metadata(repo_id, revision, name))?;
    folder.write_ref(revision, &remote.commit)?;
    progress.start_file(name, remote.size);
    let blob = folder.blob(&remote.etag);
    std::fs::create_dir_all(folder.dir.join("blobs"))?;
    let lock = File::create(with_suffix(&blob, ".lock"))?;
    lock.lock()?;
    let trusted = std::fs::metadata(&blob).is_ok_and(|m| m.len() == remote.size);
    if !trusted {
        // A blob of the wrong size is not ours (or was replaced): fetch it again.
        let _ = std::fs::remove_file(&blob);
        let part = with_suffix(&blob, ".part");
        with_retries(name, |_| attempt(hub, &remote, &part, name, progress))?;
        std::fs::rename(&part, &blob)?;
    }
    drop(lock);
    let link = folder.snapshot(&remote.commit, name);
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(&link);
    link_or_copy(&std::fs::canonicalize(&blob)?, &link)?;
    progress.finish_file(name, remote.size);
    Ok(link)
}

/// Runs `step` until it succeeds, fails for good, or has failed `RETRIES` + 1 times.
fn with_retries<T>(
    name: &str,
    mut step: impl FnMut(u32) -> std::result::Result<T, Failure>,
) -> Result<T> {
    let mut try_no = 0;
    loop {
        let reason = match step(try_no) {
            Ok(value) => return Ok(value),
            Err(Failure::Permanent(e)) => return Err(e),
            Err(Failure::Transient(reason)) | Err(Failure::BadRange(reason)) => reason,
        };
        if try_no == RETRIES {
            return Err(Error::internal(format!(
                "{name}: giving up after {RETRIES} retries; last failure: {reason}"
            )));
        }
        let pause = BACKOFF.saturating_mul(1 << try_no.min(16)).min(MAX_BACKOFF);
        tracing::warn!(file = name, retry = try_no + 1, ?pause, %reason, "hub download failed, retrying");
        std::thread::sleep(pause);
        try_no += 1;
    }
}

/// One attempt at completing `part`: resume (or restart) the body, then verify.
fn attempt(
    hub: &HubClient,
    remote: &RemoteFile,
    part: &Path,
    name: &str,
    progress: &LaunchProgress,
) -> std::result::Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Permanent(Error::from(e));
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > remote.size {
        tracing::warn!(
            file = name,
            have,
            size = remote.size,
            "discarding an oversized partial download"
        );
        std::fs::remove_file(part).map_err(io)?;
        have = 0;
    }
    if have < remote.size {
        let response = match hub.body(remote, have) {
            Err(Failure::BadRange(reason)) => {
                // The partial file does not fit the remote file: start over next time.
                let _ = std::fs::remove_file(part);
                return Err(Failure::Transient(reason));
            }
            other => other?,
        };
        let start = match response.status() {
            206 => content_range_start(response.header("content-range")),
            200 => Some(0),
            other => {
                return Err(Failure::Transient(format!(
                    "the hub answered {other} to a file request"
                )))
            }
        };
        let Some(start) = start.filter(|&s| s == have || s == 0) else {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Transient(format!(
                "the hub resumed from another offset than {have} ({:?})",
                response.header("content-range")
            )));
        };
        // A body from byte 0 replaces what is there instead of being appended to it.
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .open(part)
            .map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        have = start;
        progress.set_bytes(name, have);
        let mut body = response.into_reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = file.sync_data();
                    return Err(Failure::Transient(format!(
                        "the connection broke after {have} of {} bytes: {e}",
                        remote.size
                    )));
                }
            };
            if have + n as u64 > remote.size {
                drop(file);
                let _ = std::fs::remove_file(part);
                return Err(Failure::Transient(format!(
                    "the hub sent more than the {} bytes it announced",
                    remote.size
                )));
            }
            file.write_all(&buf[..n]).map_err(io)?;
            have += n as u64;
            progress.set_bytes(name, have);
        }
        file.sync_all().map_err(io)?;
        if have < remote.size {
            return Err(Failure::Transient(format!(
                "the body ended after {have} of {} bytes",
                remote.size
            )));
        }
    }
    if let Some(expected) = &remote.sha256 {
        let got = sha256_of(part).map_err(io)?;
        if &got != expected {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Transient(format!(
                "the content's SHA-256 is {got}, the hub announced {expected}"
            )));
        }
    }
    Ok(())
}

/// The first byte of `bytes A-B/N`.
fn content_range_start(value: Option<&str>) -> Option<u64> {
    let range = value?.trim().strip_prefix("bytes ")?;
    range.split_once('-')?.0.trim().parse().ok()
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A repository file name from the hub's listing or a spec: relative, no `..`, no empty
/// parts, so that it stays inside the snapshot folder.
pub fn check_repo_path(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(Error::bad_request(format!(
            "repository file name {name:?} is not a plain relative path"
        )));
    }
    Ok(())
}

fn link_or_copy(source: &Path, target: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(source, target).is_ok() {
            return Ok(());
        }
    }
    std::fs::copy(source, target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_repo_path, content_range_start};

    #[test]
    fn repository_paths_stay_inside_the_snapshot() {
        for ok in ["config.json", "1_Pooling/config.json", "a.b/c..d"] {
            assert!(check_repo_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a\\b",
            "./a",
        ] {
            assert!(check_repo_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_range_gives_the_first_byte() {
        assert_eq!(content_range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(content_range_start(Some("bytes */200")), None);
        assert_eq!(content_range_start(None), None);
    }
}
