//! Output archives: one `tar.gz` per user (their `output/` folder) and one for everyone
//! (`<user>/...` inside).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;

/// A user's output folder to archive.
#[derive(Debug, Clone)]
pub struct UserOutputs {
    /// Name (`default` for the single-user `output/` folder).
    pub user: String,
    /// The folder.
    pub dir: PathBuf,
}

/// Every user folder's `output/` under `<base>/users/`, and `<base>/output` as `default` when
/// it holds files, sorted by name.
pub fn user_outputs(base: &Path) -> anyhow::Result<Vec<UserOutputs>> {
    let mut found = Vec::new();
    let users = base.join("users");
    if users.is_dir() {
        for entry in
            std::fs::read_dir(&users).with_context(|| format!("reading {}", users.display()))?
        {
            let entry = entry?;
            let dir = entry.path().join("output");
            if entry.file_type()?.is_dir() && dir.is_dir() {
                found.push(UserOutputs {
                    user: entry.file_name().to_string_lossy().into_owned(),
                    dir,
                });
            }
        }
    }
    let single = base.join("output");
    if single.is_dir() && std::fs::read_dir(&single)?.next().is_some() {
        found.push(UserOutputs {
            user: "default".into(),
            dir: single,
        });
    }
    found.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(found)
}

/// Writes `path` as a gzip'd tar of `folders`, each under its name inside; returns how many
/// files went in. Symbolic links are stored as links, never followed.
pub fn write_tar_gz(path: &Path, folders: &[(&str, &Path)]) -> anyhow::Result<usize> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    tar.follow_symlinks(false);
    let mut files = 0;
    for (name, dir) in folders {
        tar.append_dir_all(name, dir)
            .with_context(|| format!("archiving {}", dir.display()))?;
        files += count_files(dir)?;
    }
    tar.into_inner()?.finish()?.sync_all()?;
    Ok(files)
}

fn count_files(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}
