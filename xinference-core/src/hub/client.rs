//! The Hugging Face hub's HTTP API as a download needs it: the repository's file list and one
//! file's metadata (commit, ETag, size), through `ureq` (blocking: downloads run on the
//! loader thread). Honours `HF_ENDPOINT` (a trailing slash is tolerated, as by
//! huggingface_hub), `HF_TOKEN`, the `*_PROXY` variables and `NO_PROXY` (`no_proxy.rs`: a
//! request whose URL's host it names goes direct, and so do the redirects it is answered with).

use super::no_proxy::NoProxy;
use crate::{Error, Result};
use std::time::Duration;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a body may stall before the attempt is abandoned (and retried).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Relative redirects (renamed repositories) followed by the metadata probe.
const MAX_REDIRECTS: usize = 5;

/// A connection to one hub endpoint.
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    /// Follows redirects: file bodies (the hub sends LFS files to a CDN).
    agent: ureq::Agent,
    /// Follows none: the metadata probe reads the hub's own headers on the redirect.
    probe: ureq::Agent,
    /// The same two without a proxy, for the hosts `NO_PROXY` names.
    direct_agent: ureq::Agent,
    direct_probe: ureq::Agent,
    no_proxy: NoProxy,
}

/// What the hub says about one file of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// The URL to download the body from.
    pub url: String,
    /// The commit the revision resolved to.
    pub commit: String,
    /// The ETag (the SHA-256 of the content for LFS files, a git hash for the others).
    pub etag: String,
    /// The size in bytes.
    pub size: u64,
    /// The SHA-256 the content must have, when the hub states it (LFS files).
    pub sha256: Option<String>,
}

/// Why a request failed, and whether trying again may help.
#[derive(Debug)]
pub enum Failure {
    /// A dropped connection, a timeout, a 5xx, a short or corrupted body: try again.
    Transient(String),
    /// The hub said no (404, 401, ...): trying again will not help.
    Permanent(Error),
    /// The hub refused the `Range` (416): the partial file does not fit the remote one.
    BadRange(String),
}

impl HubClient {
    /// A client for `HF_ENDPOINT` (default `https://huggingface.co`) with `HF_TOKEN`.
    pub fn from_env() -> HubClient {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "https://huggingface.co".to_owned());
        let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
        HubClient::new(&endpoint, token)
    }

    /// A client for `endpoint`, sending `token` as a bearer token when given, through the
    /// proxy the environment names but for the hosts in `NO_PROXY`.
    pub fn new(endpoint: &str, token: Option<String>) -> HubClient {
        let builder = |proxy: bool| {
            ureq::AgentBuilder::new()
                .timeout_connect(CONNECT_TIMEOUT)
                .timeout_read(READ_TIMEOUT)
                .try_proxy_from_env(proxy)
                .user_agent(concat!("xinference-rs/", env!("CARGO_PKG_VERSION")))
        };
        HubClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            agent: builder(true).redirects(10).build(),
            probe: builder(true).redirects(0).build(),
            direct_agent: builder(false).redirects(10).build(),
            direct_probe: builder(false).redirects(0).build(),
            no_proxy: NoProxy::from_env(),
        }
    }

    /// A GET of `url`, direct when `NO_PROXY` names its host; `probe`: without following
    /// redirects.
    fn get(&self, probe: bool, url: &str) -> ureq::Request {
        let agent = match (probe, self.no_proxy.bypasses(url)) {
            (false, false) => &self.agent,
            (true, false) => &self.probe,
            (false, true) => &self.direct_agent,
            (true, true) => &self.direct_probe,
        };
        let request = agent.get(url);
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// The file names of `repo_id` at `revision`.
    pub fn list_files(&self, repo_id: &str, revision: &str) -> Result<Vec<String>> {
        let url = format!(
            "{}/api/models/{repo_id}/revision/{}",
            self.endpoint,
            encode(revision)
        );
        let response = self.get(false, &url).call().map_err(|e| {
            match classify(e, &format!("listing the files of {repo_id}")) {
                Failure::Permanent(e) => e,
                Failure::Transient(text) | Failure::BadRange(text) => Error::internal(text),
            }
        })?;
        let info: serde_json::Value = response
            .into_json()
            .map_err(|e| Error::internal(format!("the hub's answer for {repo_id}: {e}")))?;
        let siblings = info["siblings"].as_array().ok_or_else(|| {
            Error::internal(format!("the hub listed no files for {repo_id}: {info}"))
        })?;
        Ok(siblings
            .iter()
            .filter_map(|s| s["rfilename"].as_str().map(str::to_owned))
            .collect())
    }

    /// The URL of `name` in `repo_id` at `revision`.
    pub fn file_url(&self, repo_id: &str, revision: &str, name: &str) -> String {
        let path: Vec<String> = name.split('/').map(encode).collect();
        format!(
            "{}/{repo_id}/resolve/{}/{}",
            self.endpoint,
            encode(revision),
            path.join("/")
        )
    }

    /// Asks the hub for one file's commit, ETag and size, as huggingface_hub does: a
    /// `Range: bytes=0-0` GET that does not follow the redirect to a CDN (the hub's own
    /// headers are on the redirect), following relative redirects by hand.
    pub fn metadata(
        &self,
        repo_id: &str,
        revision: &str,
        name: &str,
    ) -> std::result::Result<RemoteFile, Failure> {
        let url = self.file_url(repo_id, revision, name);
        let mut target = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let response = match self.get(true, &target).set("Range", "bytes=0-0").call() {
                Ok(r) => r,
                Err(e) => return Err(classify(e, &format!("asking the hub about {name}"))),
            };
            let location = response.header("location").map(str::to_owned);
            let relative = (300..400).contains(&response.status())
                && location.as_deref().is_some_and(|l| l.starts_with('/'))
                && response.header("x-repo-commit").is_none();
            if relative {
                target = format!("{}{}", self.endpoint, location.unwrap_or_default());
                continue;
            }
            return remote_file(&response, url, revision, name);
        }
        Err(Failure::Transient(format!(
            "too many redirects asking the hub about {name}"
        )))
    }

    /// Starts the body of `file` at byte `from` (a `Range` request when `from` > 0).
    pub fn body(
        &self,
        file: &RemoteFile,
        from: u64,
    ) -> std::result::Result<ureq::Response, Failure> {
        // Compressed transfer would make byte offsets meaningless for a resume.
        let request = self
            .get(false, &file.url)
            .set("Accept-Encoding", "identity")
            .set("Range", &format!("bytes={from}-"));
        match request.call() {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(416, _)) => Err(Failure::BadRange(format!(
                "the hub refused to resume at byte {from} (416)"
            ))),
            Err(e) => Err(classify(e, "downloading the file")),
        }
    }
}

fn remote_file(
    response: &ureq::Response,
    url: String,
    revision: &str,
    name: &str,
) -> std::result::Result<RemoteFile, Failure> {
    let header = |h: &str| response.header(h).map(str::trim).filter(|v| !v.is_empty());
    let commit = match header("x-repo-commit") {
        Some(c) => c.to_owned(),
        None if is_commit(revision) => revision.to_owned(),
        None => {
            return Err(Failure::Permanent(Error::internal(format!(
                "the hub did not say which commit {name} belongs to (no x-repo-commit)"
            ))))
        }
    };
    let etag = header("x-linked-etag")
        .or_else(|| header("etag"))
        .map(|e| e.trim_start_matches("W/").trim_matches('"').to_owned())
        .filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .ok_or_else(|| {
            Failure::Permanent(Error::internal(format!(
                "the hub sent no usable ETag for {name}"
            )))
        })?;
    let size = header("x-linked-size")
        .and_then(|s| s.parse().ok())
        .or_else(|| {
            header("content-range")
                .and_then(|r| r.rsplit_once('/'))
                .and_then(|(_, total)| total.parse().ok())
        })
        .or_else(|| {
            (response.status() == 200)
                .then(|| header("content-length").and_then(|s| s.parse().ok()))
                .flatten()
        })
        .ok_or_else(|| {
            Failure::Permanent(Error::internal(format!(
                "the hub did not say how large {name} is"
            )))
        })?;
    let sha256 = (etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| etag.to_ascii_lowercase());
    Ok(RemoteFile {
        url,
        commit,
        etag,
        size,
        sha256,
    })
}

/// A 40-hex-digit git commit.
fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// Turns a `ureq` error into a retryable or final failure.
fn classify(error: ureq::Error, action: &str) -> Failure {
    match error {
        ureq::Error::Status(code, response) => {
            let body = response.into_string().unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            let text = format!("{action}: the hub answered {code} {body}");
            match code {
                404 => Failure::Permanent(Error::bad_request(format!(
                    "{action}: not found on the hub (404)"
                ))),
                401 | 403 => Failure::Permanent(Error::bad_request(format!(
                    "{text} (a gated or private repository needs HF_TOKEN)"
                ))),
                408 | 429 | 500..=599 => Failure::Transient(text),
                _ => Failure::Permanent(Error::internal(text)),
            }
        }
        ureq::Error::Transport(t) => Failure::Transient(format!("{action}: {t}")),
    }
}

/// Percent-encodes one path segment.
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
}

#[cfg(test)]
mod tests {
    use super::{encode, is_commit};

    #[test]
    fn segments_keep_the_characters_file_names_use() {
        assert_eq!(encode("model-00001.Q4_K_M.gguf"), "model-00001.Q4_K_M.gguf");
        assert_eq!(encode("a b"), "a%20b");
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main"));
    }
}
