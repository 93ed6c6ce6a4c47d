//! The backup archive: a gzip'd tar holding `data/...` (the data directory's state),
//! `config/...` (configuration files such as `users.toml`) and `MANIFEST.json` (each file's
//! size and sha256), written last so it describes exactly the bytes stored. Reading checks every
//! file against the manifest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's name inside the archive.
pub const MANIFEST: &str = "MANIFEST.json";

/// The format tag of the manifest.
pub const FORMAT: &str = "comfyrs-backup-1";

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path inside the archive (`data/...`, `config/...`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}

/// What the archive holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// comfyrs version that wrote it.
    pub version: String,
    /// Creation time (ms since the epoch).
    pub created_ms: i64,
    /// Files, in archive order.
    pub files: Vec<Entry>,
}

/// Writes an archive entry by entry, recording the manifest.
pub struct Writer {
    tar: tar::Builder<GzEncoder<File>>,
    files: Vec<Entry>,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Writer {
    /// Creates the archive file.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            tar: tar::Builder::new(GzEncoder::new(file, Compression::default())),
            files: Vec::new(),
        })
    }

    /// Adds `bytes` as `name` (relative, `/`-separated).
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        self.tar
            .append_data(&mut header, name, bytes)
            .with_context(|| format!("adding {name}"))?;
        self.files.push(Entry {
            path: name.to_string(),
            size: bytes.len() as u64,
            sha256: sha256(bytes),
        });
        Ok(())
    }

    /// Adds the manifest and finishes the file.
    pub fn finish(mut self, created_ms: i64) -> anyhow::Result<Manifest> {
        let manifest = Manifest {
            format: FORMAT.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            created_ms,
            files: std::mem::take(&mut self.files),
        };
        let json = serde_json::to_vec_pretty(&manifest)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        self.tar
            .append_data(&mut header, MANIFEST, json.as_slice())?;
        self.tar.into_inner()?.finish()?.sync_all()?;
        Ok(manifest)
    }
}

/// Called with each checked file of an archive: its path inside the archive and its bytes.
pub type Visitor<'a> = &'a mut dyn FnMut(&str, &[u8]) -> anyhow::Result<()>;

/// Whether `name` is a relative path of plain components (no `..`, no root).
pub fn is_safe(name: &Path) -> bool {
    name.components().all(|c| matches!(c, Component::Normal(_)))
        && name.components().next().is_some()
}

/// Reads the archive at `path`, checking every file against the manifest; calls `each` with
/// each checked file (path inside the archive and its bytes) when given. Fails on a missing or
/// extra file, a size or sha256 mismatch, a missing manifest or an unsafe path.
pub fn read(path: &Path, mut each: Option<Visitor<'_>>) -> anyhow::Result<Manifest> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in tar.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.into_owned();
        anyhow::ensure!(
            is_safe(&name),
            "unsafe path in the archive: {}",
            name.display()
        );
        let name = name.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {name}"))?;
        if name == MANIFEST {
            manifest = Some(serde_json::from_slice(&bytes).context("MANIFEST.json is not valid")?);
            continue;
        }
        seen.insert(name.clone(), (bytes.len() as u64, sha256(&bytes)));
        if each.is_some() {
            pending.push((name, bytes));
        }
    }
    let manifest = manifest.context("the archive has no MANIFEST.json")?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "unknown backup format {:?}",
        manifest.format
    );
    check(&manifest, &seen)?;
    if let Some(each) = each.as_mut() {
        for (name, bytes) in &pending {
            each(name, bytes)?;
        }
    }
    Ok(manifest)
}

/// Compares the files found with the manifest.
fn check(manifest: &Manifest, seen: &BTreeMap<String, (u64, String)>) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for e in &manifest.files {
        match seen.get(&e.path) {
            None => problems.push(format!("{}: missing", e.path)),
            Some((size, _)) if *size != e.size => problems.push(format!(
                "{}: {size} bytes, the manifest says {}",
                e.path, e.size
            )),
            Some((_, sum)) if *sum != e.sha256 => problems.push(format!(
                "{}: sha256 {sum}, the manifest says {}",
                e.path, e.sha256
            )),
            Some(_) => {}
        }
    }
    for name in seen.keys() {
        if !manifest.files.iter().any(|e| &e.path == name) {
            problems.push(format!("{name}: not in the manifest"));
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "the backup does not match its manifest:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}

/// `root/name` for an archive path below a prefix (checked safe).
pub fn target(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let rel = Path::new(name);
    anyhow::ensure!(is_safe(rel), "unsafe path {name}");
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, files: &[(&str, &[u8])]) -> Manifest {
        let mut w = Writer::create(path).unwrap();
        for (name, bytes) in files {
            w.add(name, bytes).unwrap();
        }
        w.finish(1).unwrap()
    }

    #[test]
    fn round_trip_lists_every_file_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.gz");
        let written = write(
            &path,
            &[("data/a.txt", b"alpha"), ("config/users.toml", b"x")],
        );
        assert_eq!(written.files[0].sha256, sha256(b"alpha"));
        let mut got = Vec::new();
        let mut collect = |name: &str, bytes: &[u8]| {
            got.push((name.to_string(), bytes.to_vec()));
            Ok(())
        };
        let read_back = read(&path, Some(&mut collect)).unwrap();
        assert_eq!(read_back, written);
        assert_eq!(got[0], ("data/a.txt".to_string(), b"alpha".to_vec()));
    }

    /// An archive whose manifest lies about a file (as after corruption or tampering).
    #[test]
    fn a_mismatch_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tar.gz");
        let mut w = Writer::create(&path).unwrap();
        w.add("data/a.txt", b"alpha").unwrap();
        w.files[0].sha256 = sha256(b"something else");
        w.files.push(Entry {
            path: "data/gone.txt".into(),
            size: 1,
            sha256: sha256(b"g"),
        });
        w.finish(1).unwrap();
        let err = read(&path, None).unwrap_err().to_string();
        assert!(err.contains("data/a.txt: sha256"), "{err}");
        assert!(err.contains("data/gone.txt: missing"), "{err}");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(!is_safe(Path::new("../etc/passwd")));
        assert!(!is_safe(Path::new("/etc/passwd")));
        assert!(!is_safe(Path::new("")));
        assert!(is_safe(Path::new("data/users/a/output/x.png")));
    }
}
