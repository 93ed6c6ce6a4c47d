//! The model manifest: which files of which Hugging Face repos go into which ComfyUI models
//! sub-folder, with the sha256 and size that verify them (TOML, `[[file]]` entries).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The workshop's LTX-2 set, used when `--manifest` is not given.
pub const DEFAULT_MANIFEST: &str = include_str!("../../manifests/ltx2-workshop.toml");

/// A parsed manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The files, in download order.
    #[serde(rename = "file", default)]
    pub files: Vec<Entry>,
}

/// One file of a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Hugging Face repo id (`owner/name`).
    pub repo: String,
    /// Branch, tag or commit.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Path of the file inside the repo.
    pub file: String,
    /// ComfyUI models sub-folder (`checkpoints`, `loras`, `text_encoders`, ...).
    pub folder: String,
    /// Expected sha256 (hex); when absent the hub's LFS sha256 is used at download time.
    pub sha256: Option<String>,
    /// Expected size in bytes.
    pub size: Option<u64>,
}

fn default_revision() -> String {
    "main".to_string()
}

impl Manifest {
    /// Parses and checks a manifest's text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let manifest: Manifest =
            toml::from_str(text).with_context(|| format!("{origin}: not a valid manifest"))?;
        for entry in &manifest.files {
            entry
                .check()
                .with_context(|| format!("{origin}: entry {}", entry.label()))?;
        }
        Ok(manifest)
    }

    /// Reads `path`, or the default manifest when `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Self::parse(DEFAULT_MANIFEST, "the default manifest"),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the manifest {}", path.display()))?;
                Self::parse(&text, &path.display().to_string())
            }
        }
    }
}

impl Entry {
    /// `repo/file@revision`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{}@{}", self.repo, self.file, self.revision)
    }

    /// The file's name in its folder (the last path component of `file`).
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    /// Where the file goes under `models_dir`.
    pub fn destination(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.folder).join(self.file_name())
    }

    /// The expected sha256, lower-case.
    pub fn sha256(&self) -> Option<String> {
        self.sha256.as_ref().map(|s| s.to_ascii_lowercase())
    }

    fn check(&self) -> anyhow::Result<()> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.split('/')
                    .all(|part| !part.is_empty() && part != "." && part != "..")
        };
        anyhow::ensure!(
            plain(&self.repo) && self.repo.split('/').count() == 2,
            "repo must be owner/name"
        );
        anyhow::ensure!(
            plain(&self.file),
            "file must be a relative path in the repo"
        );
        anyhow::ensure!(
            plain(&self.folder) && !self.folder.contains('/'),
            "folder must be one models sub-folder name"
        );
        anyhow::ensure!(
            !self.revision.is_empty() && !self.revision.contains(".."),
            "bad revision"
        );
        if let Some(sha) = &self.sha256 {
            anyhow::ensure!(is_sha256(sha), "sha256 must be 64 hex digits");
        }
        Ok(())
    }
}

/// Whether `s` looks like a hex sha256 digest.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_manifest_parses_and_names_the_workshop_set() {
        let m = Manifest::load(None).unwrap();
        let folders: Vec<_> = m.files.iter().map(|e| e.folder.as_str()).collect();
        for folder in [
            "checkpoints",
            "loras",
            "text_encoders",
            "latent_upscale_models",
        ] {
            assert!(folders.contains(&folder), "{folder} missing");
        }
        let gemma = m
            .files
            .iter()
            .find(|e| e.folder == "text_encoders")
            .unwrap();
        assert_eq!(gemma.file_name(), "gemma_3_12B_it_fp4_mixed.safetensors");
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let text = "[[file]]\nrepo = \"a/b\"\nfile = \"../x\"\nfolder = \"loras\"\n";
        let err = format!("{:#}", Manifest::parse(text, "m.toml").unwrap_err());
        assert!(err.contains("relative path"), "{err}");
        let text = "[[file]]\nrepo = \"a/b\"\nfile = \"x\"\nfolder = \"loras\"\nsha256 = \"12\"\n";
        let err = format!("{:#}", Manifest::parse(text, "m.toml").unwrap_err());
        assert!(err.contains("64 hex"), "{err}");
    }
}
