//! Reading a safetensors checkpoint's header: tensor names, dtypes, shapes and `__metadata__`.
//!
//! The official LTX-2 single files carry their component configs as JSON in the metadata entry
//! `config` (sections `transformer`, `vae`, `audio_vae`, `vocoder`); loaders read sizes from it
//! and from tensor shapes, never from file names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The safetensors dtype string (`"BF16"`, `"F8_E4M3"`, `"U8"`, ...).
    pub dtype: String,
    /// The tensor's shape.
    pub shape: Vec<usize>,
}

/// The parsed header of a safetensors file (no tensor data is read).
#[derive(Debug, Clone)]
pub struct CheckpointHeader {
    /// The file the header came from.
    pub path: PathBuf,
    /// Tensor name -> dtype and shape.
    pub tensors: HashMap<String, TensorInfo>,
    /// The `__metadata__` map (string values).
    pub metadata: HashMap<String, String>,
}

/// Largest header we accept; real headers are a few MB (the 19B file's is ~1 MB).
const MAX_HEADER_BYTES: u64 = 256 * 1024 * 1024;

impl CheckpointHeader {
    /// Reads and parses the header of `path`.
    pub fn read(path: &Path) -> Result<Self> {
        use std::io::Read;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes).map_err(io)?;
        let header_len = Self::header_len(path, len_bytes, file_len)?;
        let mut header = vec![0u8; header_len];
        file.read_exact(&mut header).map_err(io)?;
        Self::parse(path, &header)
    }

    /// Parses the header of a safetensors file held in memory (`bytes` is the file, or at least
    /// its length prefix and header); `path` only names it in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
            return Err(Error::Checkpoint(format!(
                "{}: not a safetensors file ({} bytes)",
                path.display(),
                bytes.len()
            )));
        };
        let header_len = Self::header_len(path, *len_bytes, bytes.len() as u64)?;
        Self::parse(path, &rest[..header_len])
    }

    /// The header length the 8-byte prefix declares, refused when it exceeds
    /// [`MAX_HEADER_BYTES`] or the file.
    fn header_len(path: &Path, len_bytes: [u8; 8], file_len: u64) -> Result<usize> {
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || header_len.saturating_add(8) > file_len {
            return Err(Error::Checkpoint(format!(
                "{}: not a safetensors file (header length {header_len}, file length {file_len})",
                path.display()
            )));
        }
        Ok(header_len as usize)
    }

    fn parse(path: &Path, header: &[u8]) -> Result<Self> {
        let bad = |msg: String| Error::Checkpoint(format!("{}: {msg}", path.display()));
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let mut tensors = HashMap::new();
        let mut metadata = HashMap::new();
        for (name, entry) in json {
            if name == "__metadata__" {
                let map = entry
                    .as_object()
                    .ok_or_else(|| bad("__metadata__ is not an object".into()))?;
                for (k, v) in map {
                    let v = v
                        .as_str()
                        .ok_or_else(|| bad(format!("metadata {k} is not a string")))?;
                    metadata.insert(k.clone(), v.to_string());
                }
                continue;
            }
            let dtype = entry["dtype"]
                .as_str()
                .ok_or_else(|| bad(format!("{name}: no dtype")))?;
            let shape = entry["shape"]
                .as_array()
                .ok_or_else(|| bad(format!("{name}: no shape")))?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(format!("{name}: bad shape")))?;
            tensors.insert(
                name,
                TensorInfo {
                    dtype: dtype.to_string(),
                    shape,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// The metadata entry `config` parsed as JSON (the LTX-2 component configs).
    pub fn config(&self) -> Result<serde_json::Value> {
        let raw = self.metadata.get("config").ok_or_else(|| {
            Error::Config(format!(
                "{}: no `config` entry in the metadata",
                self.path.display()
            ))
        })?;
        serde_json::from_str(raw).map_err(|e| {
            Error::Config(format!(
                "{}: metadata `config` is not JSON: {e}",
                self.path.display()
            ))
        })
    }

    /// One section of the metadata `config` (e.g. `"transformer"`, `"vae"`), deserialised.
    pub fn config_section<T: serde::de::DeserializeOwned>(&self, section: &str) -> Result<T> {
        let config = self.config()?;
        let value = config.get(section).cloned().ok_or_else(|| {
            Error::Config(format!(
                "{}: metadata config has no `{section}` section",
                self.path.display()
            ))
        })?;
        serde_json::from_value(value).map_err(|e| {
            Error::Config(format!(
                "{}: config section `{section}`: {e}",
                self.path.display()
            ))
        })
    }

    /// Whether any tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|k| k.starts_with(prefix))
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tiny_checkpoint_header() {
        let header =
            CheckpointHeader::read(&crate::parity::model_path("ltx2-tiny.safetensors")).unwrap();
        assert!(header.has_prefix("model.diffusion_model."));
        let config = header.config().unwrap();
        assert!(config.get("transformer").is_some());
    }

    #[test]
    fn rejects_a_file_that_is_not_safetensors() {
        let dir = std::env::temp_dir().join(format!("comfyrs-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.safetensors");
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk").unwrap();
        assert!(matches!(
            CheckpointHeader::read(&path),
            Err(Error::Checkpoint(_))
        ));
        std::fs::write(&path, b"\x02\x00\x00\x00\x00\x00\x00\x00[]").unwrap();
        assert!(CheckpointHeader::read(&path).is_err());
    }

    #[test]
    fn parses_headers_from_memory_and_refuses_bad_lengths() {
        let path = crate::parity::model_path("ltx2-tiny.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let from_file = CheckpointHeader::read(&path).unwrap();
        let from_bytes = CheckpointHeader::from_bytes(&path, &bytes).unwrap();
        assert_eq!(from_file.tensors, from_bytes.tensors);
        assert_eq!(from_file.metadata, from_bytes.metadata);
        let name = Path::new("x.safetensors");
        for bad in [
            &b""[..],
            b"\x01\x00\x00",
            b"\xff\xff\xff\xff\xff\xff\xff\xff{}",
            b"\xf8\xff\xff\xff\xff\xff\xff\xff{}",
            b"\x03\x00\x00\x00\x00\x00\x00\x00{}",
        ] {
            assert!(CheckpointHeader::from_bytes(name, bad).is_err(), "{bad:?}");
        }
        let empty =
            CheckpointHeader::from_bytes(name, b"\x02\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
        assert!(empty.tensors.is_empty());
    }
}
