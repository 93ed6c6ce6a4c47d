//! `comfyrs models`: download a model set into ComfyUI's models folder layout (`pull`) and show
//! which of its files are present, missing or corrupt (`list`).
//!
//! A manifest (TOML, [`manifest`]) names each file's Hugging Face repo, revision, path, target
//! folder and optionally its sha256 and size; the workshop's LTX-2 set is built in. Downloads
//! resume from `<file>.partial`, show a progress bar per file and overall, are verified by sha256
//! (the manifest's, else the hub's LFS sha256) before they are moved into place, and good files
//! already present are skipped.
//!
//! A models mirror in S3-compatible storage is the second source ([`bucket`]): `models push
//! --to s3://bucket/prefix` fills it from a verified local folder, `models pull --from
//! s3://bucket/prefix` fills a fresh GPU box from it.

mod bucket;
mod hub;
mod manifest;
mod partial;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use bucket::Bucket;
use hub::{Hub, Remote};
use manifest::{Entry, Manifest};

use crate::storage;

/// `comfyrs models` arguments.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download the manifest's files (HF_ENDPOINT and HF_TOKEN are honoured).
    Pull(PullArgs),
    /// Upload the manifest's files (present and verified here) to a models mirror.
    Push(PushArgs),
    /// Show which of the manifest's files are present, missing or corrupt.
    List(ListArgs),
}

/// Which manifest, into which folder.
#[derive(Debug, Args)]
struct Target {
    /// Manifest file (TOML); default: the built-in LTX-2 workshop set.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Models folder (ComfyUI layout); default: <base-directory>/models.
    #[arg(long, env = "COMFYRS_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Base folder whose models/ is used when --models-dir is not given.
    #[arg(long, env = "COMFYRS_BASE_DIR", default_value = "data")]
    base_directory: PathBuf,
}

impl Target {
    fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| self.base_directory.join("models"))
    }
}

#[derive(Debug, Args)]
struct PullArgs {
    #[command(flatten)]
    target: Target,
    /// Download from a models mirror (`s3://bucket/prefix`, filled by `models push`) instead of
    /// the Hugging Face hub.
    #[arg(long, env = "COMFYRS_MODELS_FROM")]
    from: Option<String>,
}

#[derive(Debug, Args)]
struct PushArgs {
    #[command(flatten)]
    target: Target,
    /// The models mirror to fill (`s3://bucket/prefix`).
    #[arg(long)]
    to: String,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// Check sizes only (no sha256 of the files on disk).
    #[arg(long)]
    quick: bool,
}

/// Runs `comfyrs models ...`; the exit status is 1 when a pull failed for any file.
pub async fn run(args: ModelsArgs) -> anyhow::Result<std::process::ExitCode> {
    match args.command {
        ModelsCommand::Pull(pull_args) => pull(&pull_args).await,
        ModelsCommand::Push(push_args) => push(&push_args).await,
        ModelsCommand::List(list_args) => list(&list_args).await,
    }
}

/// The state of one manifest file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// Present and matching everything the manifest says (`verified`: by sha256).
    Present { verified: bool },
    /// Not there (`partial`: bytes of an interrupted download).
    Missing { partial: u64 },
    /// There, but not the file the manifest names.
    Corrupt(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Present { verified: true } => f.write_str("present (sha256 ok)"),
            Status::Present { verified: false } => f.write_str("present (not verified)"),
            Status::Missing { partial: 0 } => f.write_str("missing"),
            Status::Missing { partial } => write!(f, "missing ({partial} bytes downloaded)"),
            Status::Corrupt(why) => write!(f, "corrupt ({why})"),
        }
    }
}

/// Checks `path` against the expected size and sha256 (hashing only when `sha256` is given).
async fn check(
    path: &Path,
    size: Option<u64>,
    sha256: Option<&str>,
    bar: &ProgressBar,
) -> anyhow::Result<Status> {
    let len = match tokio::fs::metadata(path).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let partial = tokio::fs::metadata(partial_path(path))
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            return Ok(Status::Missing { partial });
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(size) = size.filter(|&s| s != len) {
        return Ok(Status::Corrupt(format!("{len} bytes, expected {size}")));
    }
    let Some(expected) = sha256 else {
        return Ok(Status::Present { verified: false });
    };
    bar.set_length(len);
    bar.set_position(0);
    let actual = hub::sha256_file(path, bar).await?;
    Ok(if actual == expected {
        Status::Present { verified: true }
    } else {
        Status::Corrupt(format!("sha256 {actual}, expected {expected}"))
    })
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

async fn list(args: &ListArgs) -> anyhow::Result<std::process::ExitCode> {
    let manifest = Manifest::load(args.target.manifest.as_deref())?;
    let models_dir = args.target.models_dir();
    let bar = ProgressBar::new(0).with_style(bytes_style());
    let mut missing_or_corrupt = 0;
    for entry in &manifest.files {
        let dest = entry.destination(&models_dir);
        bar.set_message(format!("checking {}", entry.file_name()));
        let sha = if args.quick { None } else { entry.sha256() };
        let status = check(&dest, entry.size, sha.as_deref(), &bar).await?;
        if !matches!(status, Status::Present { .. }) {
            missing_or_corrupt += 1;
        }
        let name = format!("{}/{}", entry.folder, entry.file_name());
        bar.suspend(|| println!("{name:<64} {status}"));
    }
    bar.finish_and_clear();
    println!(
        "{} of {} files present in {}",
        manifest.files.len() - missing_or_corrupt,
        manifest.files.len(),
        models_dir.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// A file that needs downloading.
struct Job<'a> {
    entry: &'a Entry,
    dest: PathBuf,
    remote: Remote,
}

impl Job<'_> {
    fn sha256(&self) -> Option<String> {
        self.entry.sha256().or_else(|| self.remote.sha256.clone())
    }

    fn size(&self) -> Option<u64> {
        self.entry.size.or(self.remote.size)
    }
}

/// Where `models pull` downloads from.
enum Source {
    /// A Hugging Face compatible hub.
    Hub(Hub),
    /// A models mirror (`models push`).
    Mirror(Bucket),
}

impl Source {
    fn new(from: Option<&str>) -> anyhow::Result<Self> {
        match from {
            None => Ok(Self::Hub(Hub::from_env()?)),
            Some(from) => Ok(Self::Mirror(Bucket::new(storage::Location::parse(from)?))),
        }
    }

    async fn probe(&self, entry: &Entry) -> anyhow::Result<Remote> {
        match self {
            Self::Hub(hub) => hub.probe(entry).await,
            Self::Mirror(bucket) => bucket.probe(entry).await,
        }
    }

    async fn download(
        &self,
        entry: &Entry,
        partial: &Path,
        size: Option<u64>,
        bar: &ProgressBar,
    ) -> anyhow::Result<String> {
        match self {
            Self::Hub(hub) => hub.download(entry, partial, size, bar).await,
            Self::Mirror(bucket) => bucket.download(entry, partial, size, bar).await,
        }
    }
}

async fn pull(args: &PullArgs) -> anyhow::Result<std::process::ExitCode> {
    let target = &args.target;
    let manifest = Manifest::load(target.manifest.as_deref())?;
    let models_dir = target.models_dir();
    let hub = Source::new(args.from.as_deref())?;
    let bars = MultiProgress::new();
    let current = bars.add(ProgressBar::new(0).with_style(bytes_style()));
    let mut failures = Vec::new();
    let mut jobs = Vec::new();
    for entry in &manifest.files {
        match plan(&hub, entry, &models_dir, &current).await {
            Ok(Some(job)) => jobs.push(job),
            Ok(None) => {
                bars.println(format!("ok          {}", entry.label())).ok();
            }
            Err(e) => failures.push(format!("{}: {e:#}", entry.label())),
        }
    }
    let total: u64 = jobs.iter().filter_map(Job::size).sum();
    let overall = bars.insert(0, ProgressBar::new(total).with_style(bytes_style()));
    overall.set_message(format!("total ({} files)", jobs.len()));
    for job in &jobs {
        let before = overall.position();
        match fetch(&hub, job, &current).await {
            Ok(()) => {
                bars.println(format!("downloaded  {}", job.entry.label()))
                    .ok();
            }
            Err(e) => failures.push(format!("{}: {e:#}", job.entry.label())),
        }
        overall.set_position(before + job.size().unwrap_or(0));
    }
    current.finish_and_clear();
    overall.finish_and_clear();
    if failures.is_empty() {
        println!(
            "{} files ready in {}",
            manifest.files.len(),
            models_dir.display()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    eprintln!(
        "{} of {} files failed",
        failures.len(),
        manifest.files.len()
    );
    Ok(std::process::ExitCode::from(1))
}

/// Decides whether `entry` needs downloading: a good file already there is skipped (without
/// asking the hub when the manifest has its sha256); a corrupt one is replaced.
async fn plan<'a>(
    hub: &Source,
    entry: &'a Entry,
    models_dir: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<Option<Job<'a>>> {
    let dest = entry.destination(models_dir);
    bar.set_message(format!("checking {}", entry.file_name()));
    if let Some(sha) = entry.sha256()
        && check(&dest, entry.size, Some(&sha), bar).await? == (Status::Present { verified: true })
    {
        return Ok(None);
    }
    let remote = hub.probe(entry).await?;
    let job = Job {
        entry,
        dest,
        remote,
    };
    let sha = job.sha256();
    match check(&job.dest, job.size(), sha.as_deref(), bar).await? {
        Status::Present { .. } => Ok(None),
        Status::Missing { .. } => Ok(Some(job)),
        Status::Corrupt(why) => {
            tracing::warn!("{}: {why}; downloading it again", job.dest.display());
            Ok(Some(job))
        }
    }
}

/// Downloads one file into its `.partial`, verifies it and moves it into place.
async fn fetch(hub: &Source, job: &Job<'_>, bar: &ProgressBar) -> anyhow::Result<()> {
    let dir = job.dest.parent().context("destination has no folder")?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let partial = partial_path(&job.dest);
    bar.set_message(job.entry.file_name().to_string());
    bar.set_length(job.size().unwrap_or(0));
    bar.set_position(0);
    let actual = hub.download(job.entry, &partial, job.size(), bar).await?;
    if let Some(expected) = job.sha256()
        && actual != expected
    {
        tokio::fs::remove_file(&partial).await.ok();
        anyhow::bail!(
            "sha256 mismatch: downloaded {actual}, expected {expected} (download discarded)"
        );
    }
    tokio::fs::rename(&partial, &job.dest)
        .await
        .with_context(|| format!("moving the download to {}", job.dest.display()))?;
    Ok(())
}

/// Uploads every file of the manifest to the mirror `args.to`, each checked first (against the
/// manifest's sha256 when it has one); files the mirror already holds are skipped.
async fn push(args: &PushArgs) -> anyhow::Result<std::process::ExitCode> {
    let manifest = Manifest::load(args.target.manifest.as_deref())?;
    let models_dir = args.target.models_dir();
    let mirror = Bucket::new(storage::Location::parse(&args.to)?);
    let bar = ProgressBar::new(0).with_style(bytes_style());
    let mut failures = Vec::new();
    for entry in &manifest.files {
        let path = entry.destination(&models_dir);
        bar.set_message(format!("hashing {}", entry.file_name()));
        match push_one(&mirror, entry, &path, &bar).await {
            Ok(true) => bar.suspend(|| println!("uploaded    {}", mirror.location(entry))),
            Ok(false) => bar.suspend(|| println!("up to date  {}", mirror.location(entry))),
            Err(e) => failures.push(format!("{}: {e:#}", path.display())),
        }
    }
    bar.finish_and_clear();
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    if failures.is_empty() {
        println!("{} files in {}", manifest.files.len(), args.to);
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} of {} files failed",
            failures.len(),
            manifest.files.len()
        );
        Ok(std::process::ExitCode::from(1))
    }
}

async fn push_one(
    mirror: &Bucket,
    entry: &Entry,
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<bool> {
    let len = match tokio::fs::metadata(path).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("not present here (run `comfyrs models pull` first)")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(size) = entry.size.filter(|&s| s != len) {
        anyhow::bail!("corrupt ({len} bytes, expected {size}): not uploaded");
    }
    bar.set_length(len);
    bar.set_position(0);
    let sha = hub::sha256_file(path, bar).await?;
    if let Some(expected) = entry.sha256().filter(|e| *e != sha) {
        anyhow::bail!("corrupt (sha256 {sha}, expected {expected}): not uploaded");
    }
    mirror.upload(entry, path, &sha).await
}
