//! Downloading one file from a Hugging Face compatible hub, resumably.
//!
//! Why not the `hf-hub` crate: it downloads into its own cache layout (`blobs/` + `snapshots/`
//! symlinks under `HF_HOME`), while a GPU box needs the files in ComfyUI's models folder; copying
//! ~45 GB out of the cache doubles the disk and the time. The protocol is small, so this module
//! speaks it directly with reqwest: `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` (not
//! following the redirect) gives `X-Linked-Size` and `X-Linked-Etag` (the sha256 of an LFS
//! object), and `GET` with `Range: bytes=N-` resumes a `.partial` file. `HF_ENDPOINT` and
//! `HF_TOKEN` are honoured like `huggingface_hub` does (the token is sent as a bearer token;
//! reqwest drops it when the hub redirects to its CDN on another host).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_RANGE, HeaderMap, RANGE};
use sha2::{Digest, Sha256};

use super::manifest::{Entry, is_sha256};
use super::partial::{self, Failure, Partial, Transfer};

/// The public hub, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A hub client.
pub struct Hub {
    client: reqwest::Client,
    probe_client: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

/// What the hub says about a file before it is downloaded.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// Size in bytes, when the hub reports it.
    pub size: Option<u64>,
    /// The sha256 of the content, when the hub reports it (LFS files).
    pub sha256: Option<String>,
}

impl Hub {
    /// A client for `HF_ENDPOINT` (default the public hub) with `HF_TOKEN` when set.
    pub fn from_env() -> anyhow::Result<Self> {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|s| !s.trim().is_empty());
        Self::new(&endpoint, token)
    }

    /// A client for `endpoint`, authenticating with `token` when given.
    pub fn new(endpoint: &str, token: Option<String>) -> anyhow::Result<Self> {
        let agent = concat!("comfyrs/", env!("CARGO_PKG_VERSION"));
        let client = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()?;
        let probe_client = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            probe_client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The hub URL that serves `entry`.
    pub fn url(&self, entry: &Entry) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint, entry.repo, entry.revision, entry.file
        )
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    /// Asks the hub for the file's size and sha256 without downloading it.
    pub async fn probe(&self, entry: &Entry) -> anyhow::Result<Remote> {
        let url = self.url(entry);
        let response = self
            .authorized(self.probe_client.head(&url))
            .send()
            .await
            .with_context(|| format!("cannot reach the hub at {}", self.endpoint))?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            bail!("{}", self.status_reason(status));
        }
        let headers = response.headers();
        let size = header_u64(headers, "x-linked-size").or(if status.is_success() {
            header_u64(headers, "content-length")
        } else {
            None
        });
        let sha256 = header_str(headers, "x-linked-etag")
            .map(|s| {
                s.trim_start_matches("W/")
                    .trim_matches('"')
                    .to_ascii_lowercase()
            })
            .filter(|s| is_sha256(s));
        Ok(Remote { size, sha256 })
    }

    fn status_reason(&self, status: StatusCode) -> String {
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "the hub refused access ({status}): a gated or private repo needs HF_TOKEN{}",
                if self.token.is_some() {
                    " with access to it (accept its licence on the hub)"
                } else {
                    ""
                }
            ),
            StatusCode::NOT_FOUND => {
                format!("not found on the hub ({status}): check repo, revision and file")
            }
            other => format!("the hub answered {other}"),
        }
    }

    /// Downloads `entry` into `partial`, resuming from what `partial` already holds, and returns
    /// the sha256 of the whole file. `size` is the expected size when known. Transfer errors and
    /// cut connections are retried from where they stopped; HTTP errors are not.
    pub async fn download(
        &self,
        entry: &Entry,
        partial: &Path,
        size: Option<u64>,
        bar: &ProgressBar,
    ) -> anyhow::Result<String> {
        partial::download(partial, size, &entry.file, bar, async |to| {
            self.transfer(entry, to, bar).await
        })
        .await
    }

    /// One GET from the partial's end, appending to it.
    async fn transfer(
        &self,
        entry: &Entry,
        to: &mut Partial,
        bar: &ProgressBar,
    ) -> Result<Transfer, Failure> {
        let have = to.have();
        let mut request = self.authorized(self.client.get(self.url(entry)));
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| Failure::Transient(e.into()))?;
        let status = response.status();
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let start = header_str(response.headers(), CONTENT_RANGE.as_str())
                    .and_then(content_range_start);
                if start != Some(have) {
                    to.restart(bar).await?;
                    return Ok(Transfer::Restarted);
                }
            }
            StatusCode::OK if have > 0 => {
                // The server ignored the range: start over.
                to.restart(bar).await?;
                return Ok(Transfer::Restarted);
            }
            StatusCode::OK => {}
            StatusCode::RANGE_NOT_SATISFIABLE => {
                to.restart(bar).await?;
                return Ok(Transfer::Restarted);
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                return Err(Failure::Transient(anyhow::anyhow!("the hub answered {s}")));
            }
            s => return Err(Failure::Fatal(anyhow::anyhow!("{}", self.status_reason(s)))),
        }
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| Failure::Transient(e.into()))?;
            let Some(chunk) = chunk else {
                return Ok(Transfer::Complete);
            };
            to.append(&chunk, bar).await?;
        }
    }
}

/// The sha256 of a whole file, advancing `bar` by the bytes read.
pub async fn sha256_file(path: &Path, bar: &ProgressBar) -> anyhow::Result<String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    partial::hash_reader(&mut file, &mut hasher, |n| bar.inc(n)).await?;
    Ok(hex::encode(hasher.finalize()))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|v| v.trim().parse().ok())
}

/// The first byte of `bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_is_read() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
