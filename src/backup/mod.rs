//! `comfyrs backup`, `comfyrs restore` and `comfyrs verify`: all state of a server in one
//! archive: the data directory (the embedded queue/history store `queue.redb`, every user's
//! folder with their inputs, outputs and userdata, the single user's folders) without the
//! shared models, the installed frontend and temp files, plus configuration files such as
//! `users.toml`; a manifest of sha256s; a verify step; a restore into an empty data directory.
//!
//! The embedded store is read under its file lock, so a backup of a server using it needs the
//! server stopped (it says so). With `--redis` the queue lives in Redis: every key under the
//! queue's prefix is read with `DUMP` in one transaction (`redis/keys.json` in the archive) while
//! the server keeps running, and `restore --redis` loads it with `RESTORE`.

pub mod archive;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use fs2::FileExt;

/// Top-level folders of the data directory that a backup leaves out by default.
const SKIPPED: &[&str] = &["models", "frontend", "temp"];

/// `comfyrs backup` arguments.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The data directory (the server's --base-directory).
    #[arg(long, env = "COMFYRS_BASE_DIR", default_value = "data")]
    pub base_directory: PathBuf,
    /// The archive to write (`.tar.gz`).
    #[arg(long, short)]
    pub out: PathBuf,
    /// The workshop users file to include (config/users.toml in the archive).
    #[arg(long, env = "COMFYRS_USERS")]
    pub users: Option<PathBuf>,
    /// More configuration files to include (config/<name>), e.g. extra_model_paths.yaml.
    #[arg(long)]
    pub config: Vec<PathBuf>,
    /// Include the models folder too (large; usually re-downloaded instead).
    #[arg(long)]
    pub include_models: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Only check an existing archive (`--out`) against its manifest.
    #[arg(long)]
    pub verify: bool,
}

/// The Redis queue to snapshot or restore into.
#[derive(Debug, Args)]
pub struct RedisArgs {
    /// The Redis queue's URL (when the server runs with --redis).
    #[arg(long, env = "COMFYRS_REDIS")]
    pub redis: Option<String>,
    /// Prefix of the queue's keys.
    #[arg(long, env = "COMFYRS_REDIS_PREFIX", default_value = "comfyrs")]
    pub redis_prefix: String,
    /// A CA certificate (PEM) to trust for `rediss://`.
    #[arg(long, env = "COMFYRS_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,
}

impl RedisArgs {
    fn options(&self) -> Option<queue::RedisOptions> {
        let url = self.redis.as_ref()?;
        let mut options = queue::RedisOptions::new(url);
        options.prefix = self.redis_prefix.clone();
        options.ca_file = self.redis_ca.clone();
        Some(options)
    }
}

/// The Redis part of the archive.
const REDIS_ENTRY: &str = "redis/keys.json";

/// `comfyrs verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive.
    pub archive: PathBuf,
}

/// `comfyrs restore` arguments.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive.
    pub archive: PathBuf,
    /// The data directory to restore into (must be empty or absent unless --force).
    #[arg(long, env = "COMFYRS_BASE_DIR", default_value = "data")]
    pub base_directory: PathBuf,
    /// Where configuration files go (default: <base>/config).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// Restore into a non-empty data directory, overwriting files (and replace existing Redis
    /// keys).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Files under `dir`, relative, sorted, skipping symbolic links.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type()?;
        let rel = rel.join(entry.file_name());
        if kind.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if kind.is_file() {
            out.push(rel);
        } else {
            tracing::warn!(
                "backup: skipping {} (not a regular file)",
                entry.path().display()
            );
        }
    }
    Ok(())
}

fn archive_name(prefix: &str, rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    format!("{prefix}/{}", parts.join("/"))
}

/// Reads `path`, holding its lock when it is the embedded queue store (a running server holds
/// it: the backup then refuses rather than copy a store being written).
fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "redb") {
        let file = std::fs::File::open(path)?;
        file.try_lock_exclusive().map_err(|_| {
            anyhow::anyhow!(
                "{} is in use by a running server: stop it (systemctl stop comfyrs-server) \
                 before the backup",
                path.display()
            )
        })?;
        let bytes = std::fs::read(path)?;
        FileExt::unlock(&file)?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes the backup.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if args.verify {
        return verify(VerifyArgs { archive: args.out });
    }
    let base = &args.base_directory;
    anyhow::ensure!(base.is_dir(), "{} is not a data directory", base.display());
    let out_abs = std::path::absolute(&args.out)?;
    let mut files = Vec::new();
    walk(base, Path::new(""), &mut files)?;
    let mut writer = archive::Writer::create(&args.out)?;
    let mut bytes_total = 0u64;
    for rel in &files {
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        if top
            .as_deref()
            .is_some_and(|t| SKIPPED.contains(&t) && (t != "models" || !args.include_models))
        {
            continue;
        }
        let path = base.join(rel);
        if std::path::absolute(&path)? == out_abs {
            continue;
        }
        let bytes = read_file(&path)?;
        bytes_total += bytes.len() as u64;
        writer.add(&archive_name("data", rel), &bytes)?;
    }
    for config in args.users.iter().chain(&args.config) {
        let name = config
            .file_name()
            .with_context(|| format!("{} is not a file", config.display()))?;
        let bytes =
            std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
        writer.add(&archive_name("config", Path::new(name)), &bytes)?;
    }
    if let Some(options) = args.redis.options() {
        let keys = queue::redis::snapshot::dump(&options).await?;
        eprintln!(
            "Redis queue: {} keys under {:?}",
            keys.len(),
            options.prefix
        );
        let doc = serde_json::json!({"prefix": options.prefix, "keys": keys});
        writer.add(REDIS_ENTRY, &serde_json::to_vec(&doc)?)?;
    }
    let manifest = writer.finish(engine::events::now_ms())?;
    // Read back what was written: a backup that cannot be restored is worse than none.
    archive::read(&args.out, None).context("the new backup does not verify")?;
    eprintln!(
        "backed up {} files ({:.1} MB) to {}",
        manifest.files.len(),
        bytes_total as f64 / 1e6,
        args.out.display()
    );
    Ok(())
}

/// Checks an archive against its manifest.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let manifest = archive::read(&args.archive, None)?;
    let bytes: u64 = manifest.files.iter().map(|e| e.size).sum();
    println!(
        "ok: {} files ({:.1} MB) match the manifest of {} (comfyrs {}, written {})",
        manifest.files.len(),
        bytes as f64 / 1e6,
        args.archive.display(),
        manifest.version,
        chrono::DateTime::from_timestamp_millis(manifest.created_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    );
    Ok(())
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    Ok(!dir.exists() || std::fs::read_dir(dir)?.next().is_none())
}

/// Restores an archive (verified first) into a data directory (and its Redis snapshot into
/// `--redis`).
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let base = &args.base_directory;
    anyhow::ensure!(
        args.force || is_empty_dir(base)?,
        "{} is not empty (restore into an empty directory, or --force)",
        base.display()
    );
    let config_dir = args
        .config_dir
        .clone()
        .unwrap_or_else(|| base.join("config"));
    let mut written = 0usize;
    let mut redis_keys: Option<Vec<u8>> = None;
    let mut put = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        if name == REDIS_ENTRY {
            redis_keys = Some(bytes.to_vec());
            return Ok(());
        }
        let (root, rest) = match name.split_once('/') {
            Some(("data", rest)) => (base.as_path(), rest),
            Some(("config", rest)) => (config_dir.as_path(), rest),
            _ => anyhow::bail!("unexpected entry {name}"),
        };
        let path = archive::target(root, rest)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
        Ok(())
    };
    let manifest = archive::read(&args.archive, Some(&mut put))?;
    eprintln!(
        "restored {written} files of {} into {} (configuration in {})",
        manifest.files.len(),
        base.display(),
        config_dir.display()
    );
    if let Some(bytes) = redis_keys {
        let doc: serde_json::Value = serde_json::from_slice(&bytes)?;
        let keys: Vec<queue::redis::snapshot::KeyDump> =
            serde_json::from_value(doc["keys"].clone()).context("reading redis/keys.json")?;
        match args.redis.options() {
            Some(options) => {
                let n = queue::redis::snapshot::restore(&options, &keys, args.force).await?;
                eprintln!("restored {n} Redis keys under {:?}", options.prefix);
            }
            None => eprintln!(
                "warning: the backup holds a Redis queue snapshot ({} keys under {}); pass \
                 --redis URL to load it",
                keys.len(),
                doc["prefix"]
            ),
        }
    }
    Ok(())
}
