//! A models mirror in S3-compatible object storage (Cloudflare R2, MinIO, AWS): the second
//! source for `comfyrs models pull --from s3://bucket/prefix`, filled by
//! `comfyrs models push --to s3://bucket/prefix`.
//!
//! The mirror has ComfyUI's layout under the prefix (`<prefix>/<folder>/<file name>`), and each
//! file has a sidecar object `<file name>.sha256` holding its hex sha256, so a pull verifies what
//! it downloaded the way a hub pull verifies against the hub's LFS sha256. A GPU box in the same
//! region as the bucket gets its ~45 GB much faster than from the hub, and without a hub token.

use std::path::Path;

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::ProgressBar;

use super::hub::Remote;
use super::manifest::{Entry, is_sha256};
use super::partial::{self, Failure, Partial, Transfer};
use crate::storage::{self, Location};

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
        partial::download(partial, size, &location.to_string(), bar, async |to| {
            append_from(&location, to, bar).await
        })
        .await
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

/// Appends the bytes of `location` from the partial's end to it (every failure is worth another
/// try from where it stopped).
async fn append_from(
    location: &Location,
    to: &mut Partial,
    bar: &ProgressBar,
) -> Result<Transfer, Failure> {
    let mut stream = storage::read_from(location, to.have())
        .await
        .map_err(Failure::Transient)?;
    while let Some(chunk) = stream.next().await {
        to.append(&chunk.map_err(Failure::Transient)?, bar).await?;
    }
    Ok(Transfer::Complete)
}
