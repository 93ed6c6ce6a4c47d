//! Where backups, exports (and later models) live: a local path or an S3-compatible object
//! store (`s3://bucket/key`: AWS S3, Cloudflare R2, MinIO), reached through `object_store`.
//!
//! Endpoint, region and credentials come from the usual environment variables, read by
//! `AmazonS3Builder::from_env`: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and
//! `AWS_ALLOW_HTTP=true` for a plain-http endpoint such as a local MinIO.
//!
//! Uploads stream the file from disk: small files in one request, larger ones as a multipart
//! upload of [`PART_SIZE`] parts; downloads stream into a local file.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of each part of a multipart upload (S3 needs at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts uploaded concurrently.
const PARALLEL_PARTS: usize = 4;

/// A file's location: a local path or an object in an S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on this machine.
    Local(PathBuf),
    /// `s3://bucket/key`; `key` has no leading slash and may be empty (the bucket's root) or
    /// end with `/` (a prefix).
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key or key prefix.
        key: String,
    },
}

impl Location {
    /// Parses `s3://bucket/key...` as an object location and anything else as a local path.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let Some(rest) = text.strip_prefix("s3://") else {
            anyhow::ensure!(
                !text.contains("://"),
                "{text}: unsupported URL scheme (use a local path or s3://bucket/key)"
            );
            anyhow::ensure!(!text.is_empty(), "an empty path is not a location");
            return Ok(Self::Local(PathBuf::from(text)));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(
            !bucket.is_empty(),
            "{text}: bad S3 URL: no bucket name (expected s3://bucket/key)"
        );
        anyhow::ensure!(
            (3..=63).contains(&bucket.len()),
            "{text}: bad S3 URL: bucket name {bucket:?} must be 3 to 63 characters long"
        );
        anyhow::ensure!(
            bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
            "{text}: bad S3 URL: bucket name {bucket:?} may hold only lower-case letters, \
             digits, '-' and '.'"
        );
        anyhow::ensure!(
            !key.starts_with('/') && !key.contains("//"),
            "{text}: bad S3 URL: empty path segment in the key"
        );
        anyhow::ensure!(
            !key.split('/').any(|s| s == "." || s == ".."),
            "{text}: bad S3 URL: '.' or '..' in the key"
        );
        Ok(Self::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// Whether this is a local path.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// The location of `name` inside this folder or key prefix.
    pub fn join(&self, name: &str) -> Self {
        match self {
            Self::Local(dir) => Self::Local(dir.join(name)),
            Self::S3 { bucket, key } => {
                let key = if key.is_empty() || key.ends_with('/') {
                    format!("{key}{name}")
                } else {
                    format!("{key}/{name}")
                };
                Self::S3 {
                    bucket: bucket.clone(),
                    key,
                }
            }
        }
    }

    /// The last segment of the path or key (`None` for a bare bucket or a prefix ending in `/`).
    pub fn file_name(&self) -> Option<String> {
        match self {
            Self::Local(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
            Self::S3 { key, .. } => key
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Environment variables that provide credentials other than an access key (container roles,
/// web identity) or switch signing off.
const OTHER_CREDENTIALS: &[&str] = &[
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_SKIP_SIGNATURE",
];

/// The client for `bucket`, configured from the environment. `url` names the location in
/// errors.
fn bucket_store(bucket: &str, url: &str) -> anyhow::Result<AmazonS3> {
    let has = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    anyhow::ensure!(
        has("AWS_ACCESS_KEY_ID") || OTHER_CREDENTIALS.iter().any(|n| has(n)),
        "{url}: missing credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
         AWS_ENDPOINT_URL for R2 or MinIO)"
    );
    AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| anyhow::anyhow!("{url}: bad S3 configuration: {e}"))
}

/// The `<Code>` and `<Message>` of an S3 error reply quoted in `text`.
fn s3_error(text: &str) -> Option<(&str, &str)> {
    let inside = |tag: &str| {
        let open = format!("<{tag}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{tag}>"))?;
        Some(&text[start..end])
    };
    Some((inside("Code")?, inside("Message").unwrap_or("")))
}

/// A readable reason for a failed request: the bucket or object missing, access refused, the
/// store's error code, or the client's own message (network errors).
fn reason(err: &object_store::Error) -> String {
    let text = err.to_string();
    let denied = |detail: &str| {
        format!(
            "access denied ({detail}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the \
             key's permissions"
        )
    };
    match (s3_error(&text), err) {
        (Some(("NoSuchBucket", _)), _) => "the bucket does not exist".to_string(),
        (_, object_store::Error::NotFound { .. }) => "no such object".to_string(),
        (Some((code, message)), _)
            if [
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
            ]
            .contains(&code) =>
        {
            denied(&format!("{code}: {message}"))
        }
        (_, object_store::Error::PermissionDenied { .. })
        | (_, object_store::Error::Unauthenticated { .. }) => denied(&text),
        (Some((code, message)), _) => format!("{code}: {message}"),
        (None, _) => text,
    }
}

/// Copies the local file `file` to `to` (a local path or an object), streaming it.
pub async fn upload(file: &Path, to: &Location) -> anyhow::Result<()> {
    match to {
        Location::Local(path) => {
            if std::path::absolute(file)? != std::path::absolute(path)? {
                tokio::fs::copy(file, path)
                    .await
                    .with_context(|| format!("copying {} to {}", file.display(), path.display()))?;
            }
            Ok(())
        }
        Location::S3 { bucket, key } => {
            let url = to.to_string();
            anyhow::ensure!(
                !key.is_empty() && !key.ends_with('/'),
                "{url}: names a prefix, not an object"
            );
            let store = bucket_store(bucket, &url)?;
            upload_object(&store, file, &ObjectPath::from(key.as_str()), &url).await
        }
    }
}

async fn upload_object(
    store: &AmazonS3,
    file: &Path,
    key: &ObjectPath,
    url: &str,
) -> anyhow::Result<()> {
    let mut source = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let size = source.metadata().await?.len();
    if size <= PART_SIZE as u64 {
        let mut bytes = Vec::with_capacity(size as usize);
        source.read_to_end(&mut bytes).await?;
        store
            .put(key, bytes.into())
            .await
            .map_err(|e| anyhow::anyhow!("{url}: upload failed: {}", reason(&e)))?;
        return Ok(());
    }
    let upload = store
        .put_multipart(key)
        .await
        .map_err(|e| anyhow::anyhow!("{url}: cannot start the upload: {}", reason(&e)))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let n = match source.read(&mut buffer).await {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e).with_context(|| format!("reading {}", file.display()));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = writer.wait_for_capacity(PARALLEL_PARTS).await {
            let _ = writer.abort().await;
            anyhow::bail!("{url}: upload failed: {}", reason(&e));
        }
        writer.write(&buffer[..n]);
    }
    writer
        .finish()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: upload failed: {}", reason(&e)))?;
    Ok(())
}

/// Copies `from` (a local path or an object) to the local file `file`, streaming it.
pub async fn download(from: &Location, file: &Path) -> anyhow::Result<()> {
    match from {
        Location::Local(path) => {
            tokio::fs::copy(path, file)
                .await
                .with_context(|| format!("copying {} to {}", path.display(), file.display()))?;
            Ok(())
        }
        Location::S3 { bucket, key } => {
            let url = from.to_string();
            let store = bucket_store(bucket, &url)?;
            let got = store
                .get(&ObjectPath::from(key.as_str()))
                .await
                .map_err(|e| anyhow::anyhow!("{url}: download failed: {}", reason(&e)))?;
            let mut out = tokio::fs::File::create(file)
                .await
                .with_context(|| format!("creating {}", file.display()))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|e| anyhow::anyhow!("{url}: download failed: {}", reason(&e)))?;
                out.write_all(&chunk).await?;
            }
            out.sync_all().await?;
            Ok(())
        }
    }
}

/// The store and key of an object location (`None` for a local path).
fn object(location: &Location) -> anyhow::Result<Option<(AmazonS3, ObjectPath)>> {
    match location {
        Location::Local(_) => Ok(None),
        Location::S3 { bucket, key } => {
            let url = location.to_string();
            anyhow::ensure!(
                !key.is_empty() && !key.ends_with('/'),
                "{url}: names a prefix, not an object"
            );
            let store = bucket_store(bucket, &url)?;
            Ok(Some((store, ObjectPath::from(key.as_str()))))
        }
    }
}

/// The size of the file or object at `location`, or `None` when there is none.
pub async fn size_of(location: &Location) -> anyhow::Result<Option<u64>> {
    let Some((store, key)) = object(location)? else {
        let Location::Local(path) = location else {
            unreachable!("object() returns None only for local paths")
        };
        return match tokio::fs::metadata(path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        };
    };
    match store.head(&key).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => anyhow::bail!("{location}: {}", reason(&e)),
    }
}

/// The bytes from `offset` to the end of the file or object at `location`, as a stream of
/// chunks (errors name the location and the reason).
pub async fn read_from(
    location: &Location,
    offset: u64,
) -> anyhow::Result<futures_util::stream::BoxStream<'static, anyhow::Result<bytes::Bytes>>> {
    let Some((store, key)) = object(location)? else {
        let Location::Local(path) = location else {
            unreachable!("object() returns None only for local paths")
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset)).await?;
        let name = path.display().to_string();
        let stream = futures_util::stream::try_unfold(file, move |mut file| {
            let name = name.clone();
            async move {
                let mut buffer = vec![0u8; 1 << 20];
                let n = file
                    .read(&mut buffer)
                    .await
                    .with_context(|| format!("reading {name}"))?;
                buffer.truncate(n);
                Ok((n > 0).then(|| (bytes::Bytes::from(buffer), file)))
            }
        });
        return Ok(stream.boxed());
    };
    let url = location.to_string();
    let options = object_store::GetOptions {
        range: (offset > 0).then_some(object_store::GetRange::Offset(offset)),
        ..Default::default()
    };
    let got = store
        .get_opts(&key, options)
        .await
        .map_err(|e| anyhow::anyhow!("{url}: download failed: {}", reason(&e)))?;
    let stream = got.into_stream().map(move |chunk| {
        chunk.map_err(|e| anyhow::anyhow!("{url}: download failed: {}", reason(&e)))
    });
    Ok(stream.boxed())
}

/// Writes `bytes` as the file or object at `location` (small contents: one request).
pub async fn write_bytes(location: &Location, bytes: Vec<u8>) -> anyhow::Result<()> {
    let Some((store, key)) = object(location)? else {
        let Location::Local(path) = location else {
            unreachable!("object() returns None only for local paths")
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        return tokio::fs::write(path, bytes)
            .await
            .with_context(|| format!("writing {}", path.display()));
    };
    store
        .put(&key, bytes.into())
        .await
        .map_err(|e| anyhow::anyhow!("{location}: upload failed: {}", reason(&e)))?;
    Ok(())
}

/// A file made local for reading: the path itself, or a downloaded copy in a temporary
/// folder removed when this is dropped.
#[derive(Debug)]
pub struct LocalCopy {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl LocalCopy {
    /// The local file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where to write a file bound for `target`: the local path itself, or a file of the same
/// name in a temporary folder (under `TMPDIR`) to [`upload`] afterwards.
pub fn staging(target: &Location) -> anyhow::Result<LocalCopy> {
    match target {
        Location::Local(path) => Ok(LocalCopy {
            path: path.clone(),
            _temp: None,
        }),
        Location::S3 { .. } => {
            let name = target
                .file_name()
                .with_context(|| format!("{target}: names a prefix, not an object"))?;
            let temp = tempfile::tempdir().context("creating a temporary folder")?;
            Ok(LocalCopy {
                path: temp.path().join(name),
                _temp: Some(temp),
            })
        }
    }
}

/// `location` as a local file: a local path as is, an object downloaded to a temporary folder
/// (under `TMPDIR`) with the same file name.
pub async fn fetch(location: &Location) -> anyhow::Result<LocalCopy> {
    let local = staging(location)?;
    if !location.is_local() {
        download(location, local.path()).await?;
    }
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, key: &str) -> Location {
        Location::S3 {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn parses_local_paths_and_s3_urls() {
        assert_eq!(
            Location::parse("out/backup.tar.gz").unwrap(),
            Location::Local("out/backup.tar.gz".into())
        );
        assert_eq!(
            Location::parse("/abs/x").unwrap(),
            Location::Local("/abs/x".into())
        );
        assert_eq!(
            Location::parse("s3://bucket/backups/x.tar.gz").unwrap(),
            s3("bucket", "backups/x.tar.gz")
        );
        assert_eq!(
            Location::parse("s3://my.bucket-1/exports/").unwrap(),
            s3("my.bucket-1", "exports/")
        );
        assert_eq!(Location::parse("s3://bucket").unwrap(), s3("bucket", ""));
        assert_eq!(Location::parse("s3://bucket/").unwrap(), s3("bucket", ""));
    }

    #[test]
    fn rejects_bad_urls_naming_them() {
        for bad in [
            "s3://",
            "s3:///key",
            "s3://Bucket/key",
            "s3://ab/key",
            "s3://bucket//key",
            "s3://bucket/a/../b",
            "gs://bucket/key",
            "",
        ] {
            let err = Location::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn joins_names_and_displays_urls() {
        let prefix = Location::parse("s3://bkt/exports").unwrap();
        assert_eq!(prefix.join("report.md"), s3("bkt", "exports/report.md"));
        assert_eq!(
            Location::parse("s3://bkt/exports/").unwrap().join("r.md"),
            s3("bkt", "exports/r.md")
        );
        assert_eq!(s3("bkt", "").join("r.md"), s3("bkt", "r.md"));
        assert_eq!(
            Location::parse("dir").unwrap().join("r.md"),
            Location::Local("dir/r.md".into())
        );
        assert_eq!(s3("bkt", "x/y.tar.gz").to_string(), "s3://bkt/x/y.tar.gz");
        assert_eq!(
            s3("bkt", "x/y.tar.gz").file_name().as_deref(),
            Some("y.tar.gz")
        );
        assert_eq!(s3("bkt", "x/").file_name(), None);
    }

    #[tokio::test]
    async fn missing_credentials_name_the_url() {
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
            || OTHER_CREDENTIALS
                .iter()
                .any(|n| std::env::var_os(n).is_some())
        {
            return;
        }
        let err = fetch(&s3("bucket", "x.tar.gz")).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("s3://bucket/x.tar.gz"), "{text}");
        assert!(text.contains("missing credentials"), "{text}");
    }
}
