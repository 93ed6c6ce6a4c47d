//! Checking an untrusted `.safetensors` file (a participant's LoRA upload) before it is accepted:
//! the header must be JSON in safetensors' layout with known dtypes, every tensor's byte range
//! must match its shape and dtype and lie inside the file, the ranges must cover the data block
//! exactly (all checked by the `safetensors` crate's own validation), and PyTorch pickle / zip
//! files are recognised and refused by name. Nothing is ever unpickled.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// Largest header accepted (ComfyUI's `_SAFETENSORS_MAX_HEADER_SIZE`).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// What a valid file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Number of tensors.
    pub tensors: usize,
    /// Tensor names (sorted).
    pub names: Vec<String>,
}

/// Validates `path` as a complete safetensors file; the error says what is wrong.
pub fn check_safetensors(path: &Path) -> Result<Summary> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let bad = |msg: String| Error::Checkpoint(msg);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 8];
    if file_len < 8 {
        return Err(bad(format!(
            "not a safetensors file: only {file_len} bytes"
        )));
    }
    file.read_exact(&mut head).map_err(io)?;
    if let Some(kind) = pickle_kind(&head) {
        return Err(bad(format!(
            "a {kind}, not a safetensors file (pickle files are never loaded; convert it to .safetensors)"
        )));
    }
    let header_len = u64::from_le_bytes(head);
    if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
        return Err(bad(format!(
            "not a safetensors file: header length {header_len} does not fit the file ({file_len} bytes)"
        )));
    }
    // SAFETY: the file is only read; an upload is written completely before it is checked and
    // is not modified while this function runs.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&map)
        .map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let mut names: Vec<String> = metadata.tensors().keys().cloned().collect();
    names.sort();
    Ok(Summary {
        tensors: names.len(),
        names,
    })
}

/// Recognises the openings of PyTorch's pickle-based formats.
fn pickle_kind(head: &[u8; 8]) -> Option<&'static str> {
    if head.starts_with(b"PK\x03\x04") {
        Some("zip archive (PyTorch .pt/.ckpt checkpoint)")
    } else if head[0] == 0x80 && (2..=5).contains(&head[1]) {
        Some("Python pickle (legacy PyTorch checkpoint)")
    } else {
        None
    }
}

/// Whether a tensor name is one of the LoRA formats ComfyUI loads: a name segment `lora_A`,
/// `lora_B`, `lora_up`, `lora_down` (or kohya's `lora_unet_...`), LoHa `hada_*`, LoKr `lokr_*`,
/// `alpha`, or a full-weight `diff` / `diff_b`.
pub fn is_lora_tensor(name: &str) -> bool {
    name.split('.').any(|segment| {
        let s = segment.to_ascii_lowercase();
        s.starts_with("lora_")
            || s.starts_with("hada_")
            || s.starts_with("lokr_")
            || matches!(s.as_str(), "alpha" | "diff" | "diff_b")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn a_valid_file_is_summarised() {
        let header = r#"{"a.lora_A.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#;
        let file = write(&safetensors(header, &[0; 8]));
        let summary = check_safetensors(file.path()).unwrap();
        assert_eq!(summary.names, vec!["a.lora_A.weight".to_string()]);
        assert!(is_lora_tensor(&summary.names[0]));
        assert!(is_lora_tensor("lora_unet_down.alpha"));
        assert!(!is_lora_tensor("model.diffusion_model.x.weight"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"PK\x03\x04rest-of-a-zip".to_vec(), "zip archive"),
            (b"\x80\x02}q\x00(X\x01\x00".to_vec(), "Python pickle"),
            (safetensors("{not json", &[]), "invalid safetensors header"),
            (
                safetensors(
                    r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                    &[0; 8],
                ),
                "invalid safetensors header",
            ),
            (
                safetensors(
                    r#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "invalid safetensors header",
            ),
            (
                safetensors(
                    r#"{"t":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "invalid safetensors header",
            ),
            ((1u64 << 40).to_le_bytes().to_vec(), "does not fit"),
            (b"tiny".to_vec(), "only 4 bytes"),
        ];
        for (bytes, expected) in cases {
            let file = write(&bytes);
            let err = check_safetensors(file.path()).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
