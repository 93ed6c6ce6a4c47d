//! A models mirror in S3-compatible object storage (Cloudflare R2, MinIO, AWS): the second
//! source for `comfyrs models pull --from s3://bucket/prefix`, filled by
//! `comfyrs models push --to s3://bucket/prefix`.
//!
//! The mirror has ComfyUI's layout under the prefix (`<prefix>/<folder>/<file name>`), and each
//! file has a sidecar object `<file name>.sha256` holding its hex sha256, so a pull verifies what
//! it downloaded the way a hub pull verifies against the hub's LFS sha256. A GPU box in the same
//! region as the bucket gets its ~45 GB much faster than from the hub, and without a hub token.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::hub::{Remote, hash_prefix};
use super::manifest::{Entry, is_sha256};
use crate::storage::{self, Location};

/// Attempts per file before a download is given up (each resumes where the last stopped).
const MAX_ATTEMPTS: u32 = 6;

/// A models mirror under an `s3://` prefix (or a local folder with the same layout).
pub struct Bucket {
    prefix: Location,
}

impl Bucket {
    /// The mirror at `prefix`.
    pub fn new(prefix: Location) -> Self {
        Self { prefix }
    }

    /// Where `entry` lives in the mirror.
    pub fn location(&self, entry: &Entry) -> Location {
        self.prefix.join(&entry.folder).join(entry.file_name())
    }

    /// The sidecar holding the sha256 of `entry`.
    fn sha_location(&self, entry: &Entry) -> Location {
        self.prefix
            .join(&entry.folder)
            .join(&format!("{}.sha256", entry.file_name()))
    }

    /// The file's size and (from its sidecar, when there is one) its sha256.
    pub async fn probe(&self, entry: &Entry) -> anyhow::Result<Remote> {
        let location = self.location(entry);
        let size = storage::size_of(&location)
            .await?
            .with_context(|| format!("{location}: no such object in the models mirror"))?;
        let sha256 = self.recorded_sha256(entry).await?;
        Ok(Remote {
            size: Some(size),
            sha256,
        })
    }

    /// The sha256 the sidecar records, if the sidecar exists.
    async fn recorded_sha256(&self, entry: &Entry) -> anyhow::Result<Option<String>> {
        let sidecar = self.sha_location(entry);
        if storage::size_of(&sidecar).await?.is_none() {
            return Ok(None);
        }
        let mut text = Vec::new();
        let mut stream = storage::read_from(&sidecar, 0).await?;
        while let Some(chunk) = stream.next().await {
            text.extend_from_slice(&chunk?);
            anyhow::ensure!(text.len() <= 1024, "{sidecar}: not a sha256 sidecar");
        }
        let text = String::from_utf8_lossy(&text);
        let sha = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        anyhow::ensure!(is_sha256(&sha), "{sidecar}: not a sha256 sidecar");
        Ok(Some(sha))
    }

    /// Downloads `entry` into `partial`, resuming from what `partial` already holds, and returns
    /// the sha256 of the whole file. Cut transfers are resumed with a ranged read.
    pub async fn download(
        &self,
        entry: &Entry,
        partial: &Path,
        size: Option<u64>,
        bar: &ProgressBar,
    ) -> anyhow::Result<String> {
        let location = self.location(entry);
        let mut hasher = Sha256::new();
        let mut have = hash_prefix(partial, &mut hasher, size).await?;
        bar.set_position(have);
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .await
            .with_context(|| format!("opening {}", partial.display()))?;
        let mut failures = 0;
        while size != Some(have) {
            match append_from(&location, &mut file, &mut have, &mut hasher, bar).await {
                Ok(()) if size.is_none_or(|s| s == have) => break,
                Ok(()) if size.is_some_and(|s| have > s) => {
                    bail!("{location} sent {have} bytes, more than the expected {size:?}")
                }
                Ok(()) => tracing::warn!(%location, have, "the download ended early; resuming"),
                Err(e) => tracing::warn!(%location, have, "download interrupted: {e:#}; resuming"),
            }
            failures += 1;
            if failures >= MAX_ATTEMPTS {
                bail!(
                    "{location}: download interrupted {failures} times (have {have} bytes; run \
                     again to resume)"
                );
            }
            tokio::time::sleep(Duration::from_millis(250 << failures.min(5))).await;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// Uploads the local file `path` as `entry` with its sidecar, unless the mirror already holds
    /// it (same size and recorded sha256). Returns whether it uploaded.
    pub async fn upload(&self, entry: &Entry, path: &Path, sha256: &str) -> anyhow::Result<bool> {
        let location = self.location(entry);
        let len = tokio::fs::metadata(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if storage::size_of(&location).await? == Some(len)
            && self.recorded_sha256(entry).await?.as_deref() == Some(sha256)
        {
            return Ok(false);
        }
        if let Location::Local(dest) = &location
            && let Some(dir) = dest.parent()
        {
            tokio::fs::create_dir_all(dir).await?;
        }
        storage::upload(path, &location).await?;
        let sidecar = format!("{sha256}  {}\n", entry.file_name());
        storage::write_bytes(&self.sha_location(entry), sidecar.into_bytes()).await?;
        Ok(true)
    }
}

/// Appends the bytes of `location` from offset `have` to `file`.
async fn append_from(
    location: &Location,
    file: &mut tokio::fs::File,
    have: &mut u64,
    hasher: &mut Sha256,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut stream = storage::read_from(location, *have).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await.context("writing")?;
        hasher.update(&chunk);
        *have += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    Ok(())
}
