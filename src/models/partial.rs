//! A resumable download into `<file>.partial`, shared by both sources (the hub and a models
//! mirror): what the partial file already holds is hashed and kept, each transfer appends from
//! there, cut transfers are retried with a back-off, and the sha256 of the whole file comes out.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Transfers per file before a download is given up (each resumes where the last stopped).
const MAX_ATTEMPTS: u32 = 6;

/// A partial download being appended to.
pub struct Partial {
    file: tokio::fs::File,
    hasher: Sha256,
    have: u64,
}

/// How one transfer ended.
pub enum Transfer {
    /// The source sent everything it had from the offset.
    Complete,
    /// The source cannot resume: the partial was emptied, try again from the start.
    Restarted,
}

/// Why one transfer failed.
pub enum Failure {
    /// Give up (access refused, not found, a local write error).
    Fatal(anyhow::Error),
    /// Try again from where it stopped (a cut connection, a busy server).
    Transient(anyhow::Error),
}

impl Partial {
    /// Bytes held so far (the offset the next transfer starts from).
    pub fn have(&self) -> u64 {
        self.have
    }

    /// Appends a received chunk.
    pub async fn append(&mut self, chunk: &[u8], bar: &ProgressBar) -> Result<(), Failure> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| Failure::Fatal(anyhow::Error::new(e).context("writing")))?;
        self.hasher.update(chunk);
        self.have += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
        Ok(())
    }

    /// Empties the partial file (the source could not resume from its end).
    pub async fn restart(&mut self, bar: &ProgressBar) -> Result<(), Failure> {
        self.file
            .set_len(0)
            .await
            .map_err(|e| Failure::Fatal(anyhow::Error::new(e).context("truncating")))?;
        bar.set_position(bar.position().saturating_sub(self.have));
        self.have = 0;
        self.hasher = Sha256::new();
        Ok(())
    }
}

/// Downloads into `path` (a `.partial` file), resuming from what it already holds, by calling
/// `transfer` until `size` bytes (when known) have arrived; returns the sha256 of the whole file.
/// `what` names the download in messages.
pub async fn download(
    path: &Path,
    size: Option<u64>,
    what: &str,
    bar: &ProgressBar,
    mut transfer: impl AsyncFnMut(&mut Partial) -> Result<Transfer, Failure>,
) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    let have = hash_prefix(path, &mut hasher, size).await?;
    bar.set_position(have);
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let mut partial = Partial { file, hasher, have };
    let mut failures = 0;
    while size != Some(partial.have) {
        let have = partial.have;
        match transfer(&mut partial).await {
            Ok(Transfer::Complete) if size.is_none_or(|s| s == partial.have) => break,
            Ok(Transfer::Complete) if size.is_some_and(|s| partial.have > s) => {
                bail!(
                    "{what}: {} bytes sent, more than the expected {size:?}",
                    partial.have
                )
            }
            Ok(Transfer::Complete) => {
                tracing::warn!(
                    what,
                    have = partial.have,
                    "the download ended early; resuming"
                )
            }
            Ok(Transfer::Restarted) => continue,
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(e)) => {
                tracing::warn!(what, have, "download interrupted: {e:#}; resuming")
            }
        }
        failures += 1;
        if failures >= MAX_ATTEMPTS {
            bail!(
                "{what}: download interrupted {failures} times (have {} bytes; run again to \
                 resume)",
                partial.have
            );
        }
        tokio::time::sleep(Duration::from_millis(250 << failures.min(5))).await;
    }
    partial.file.flush().await?;
    partial.file.sync_all().await?;
    Ok(hex::encode(partial.hasher.finalize()))
}

/// Hashes what `partial` already holds (0 when absent) and returns its length; a partial longer
/// than the expected size is discarded.
async fn hash_prefix(
    partial: &Path,
    hasher: &mut Sha256,
    size: Option<u64>,
) -> anyhow::Result<u64> {
    let mut file = match tokio::fs::File::open(partial).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("opening {}", partial.display())),
    };
    let len = file.metadata().await?.len();
    if size.is_some_and(|s| len > s) {
        drop(file);
        tokio::fs::remove_file(partial).await?;
        return Ok(0);
    }
    hash_reader(&mut file, hasher, |_| {}).await?;
    Ok(len)
}

/// Feeds everything `file` holds from its position into `hasher`, reporting each read's length.
pub async fn hash_reader(
    file: &mut tokio::fs::File,
    hasher: &mut Sha256,
    mut read: impl FnMut(u64),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        read(n as u64);
    }
}
