//! One memory-mapped safetensors file: its header parsed once, tensor bytes read in place.
//!
//! The header rules are ComfyUI's (`comfy/utils.py` `load_safetensors`): a header of at most
//! 100 000 000 bytes, every tensor's byte range inside the data block and exactly as long as its
//! shape and dtype say. Offsets need not be aligned to the element size, tensors need not be in
//! offset order, and zero-element tensors are legal. Tensor bytes are handed out as `&[u8]`, so
//! nothing here reads a misaligned offset as a typed slice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use safetensors::Dtype;
use serde_json::Value;

use crate::{Error, Result};

/// Largest header ComfyUI accepts (`_SAFETENSORS_MAX_HEADER_SIZE`).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the mapping.
    range: std::ops::Range<usize>,
}

/// A tensor's dtype, shape and bytes, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub struct RawTensor<'a> {
    /// The key in the file.
    pub key: &'a str,
    /// The stored safetensors dtype.
    pub dtype: Dtype,
    /// The stored shape.
    pub shape: &'a [usize],
    /// The stored bytes (possibly misaligned).
    pub bytes: &'a [u8],
}

impl RawTensor<'_> {
    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Loads the tensor as stored, through candle's own safetensors conversion (the dtype is
    /// kept; `U16` widens to `U32` as in candle).
    pub fn load(&self, device: &Device) -> Result<Tensor> {
        use candle_core::safetensors::Load;
        let view =
            safetensors::tensor::TensorView::new(self.dtype, self.shape.to_vec(), self.bytes)
                .map_err(|e| Error::Checkpoint(format!("{}: {e}", self.key)))?;
        view.load(device)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", self.key)))
    }

    /// The single value of a one-element floating-point tensor (a per-tensor scale) as F32,
    /// as ComfyUI's `.to(torch.float32)` gives it.
    pub fn scalar_f32(&self) -> Result<f32> {
        let bad = |why: &str| Error::Checkpoint(format!("{}: {why}", self.key));
        if self.elem_count() != 1 {
            return Err(bad(&format!(
                "expected a single scale value, found shape {:?}",
                self.shape
            )));
        }
        let b = self.bytes;
        match self.dtype {
            Dtype::F32 => Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Dtype::F64 => {
                Ok(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            }
            Dtype::BF16 => Ok(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::F16 => Ok(half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            other => Err(bad(&format!(
                "a scale must be floating point, found {other:?}"
            ))),
        }
    }
}

/// A memory-mapped safetensors file with its parsed header.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: memmap2::Mmap,
    entries: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// Maps `path` and parses its header.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < 8 {
            return Err(bad_file(path, format!("{file_len} bytes is too short")));
        }
        // SAFETY: the mapping is read-only and lives as long as `self`; like every mmap-based
        // model loader (candle's included) we rely on checkpoint files not being modified while
        // they are open.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let (entries, metadata) = parse_header(path, &mmap)?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            entries,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `__metadata__` map (empty when the file has none).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Every tensor key of the file, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The tensor stored under `key`.
    pub fn raw(&self, key: &str) -> Option<RawTensor<'_>> {
        let (key, entry) = self.entries.get_key_value(key)?;
        Some(RawTensor {
            key,
            dtype: entry.dtype,
            shape: &entry.shape,
            bytes: &self.mmap[entry.range.clone()],
        })
    }
}

fn bad_file(path: &Path, why: String) -> Error {
    Error::Checkpoint(format!(
        "{}: not a valid safetensors file: {why}",
        path.display()
    ))
}

type Header = (HashMap<String, Entry>, HashMap<String, String>);

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |why: String| bad_file(path, why);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len > (bytes.len() - 8) as u64 {
        return Err(bad(format!(
            "header length {header_len} for a file of {} bytes",
            bytes.len()
        )));
    }
    let data_start = 8 + header_len as usize;
    let data_len = bytes.len() - data_start;
    let json: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
    let mut entries = HashMap::with_capacity(json.len());
    let mut metadata = HashMap::new();
    for (key, value) in json {
        if key == "__metadata__" {
            metadata = parse_metadata(value).map_err(bad)?;
            continue;
        }
        let entry =
            parse_entry(&value, data_len).map_err(|why| bad(format!("tensor `{key}`: {why}")))?;
        let range = data_start + entry.range.start..data_start + entry.range.end;
        entries.insert(key, Entry { range, ..entry });
    }
    Ok((entries, metadata))
}

fn parse_metadata(value: Value) -> std::result::Result<HashMap<String, String>, String> {
    let Value::Object(map) = value else {
        return Err("__metadata__ is not an object".into());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(format!("__metadata__ entry `{k}` is not a string")),
        })
        .collect()
}

/// Parses one tensor entry; the range is relative to the data block.
fn parse_entry(value: &Value, data_len: usize) -> std::result::Result<Entry, String> {
    let dtype: Dtype = serde_json::from_value(value["dtype"].clone())
        .map_err(|_| format!("unknown dtype {}", value["dtype"]))?;
    let shape = value["shape"]
        .as_array()
        .ok_or("no shape")?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or("shape is not a list of sizes")?;
    let offsets = value["data_offsets"]
        .as_array()
        .filter(|o| o.len() == 2)
        .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
        .ok_or("data_offsets is not [start, end]")?;
    let (start, end) = (offsets.0 as usize, offsets.1 as usize);
    if start > end || end > data_len {
        return Err(format!(
            "data_offsets [{start}, {end}] outside the data block of {data_len} bytes"
        ));
    }
    let bits = shape
        .iter()
        .try_fold(dtype.bitsize(), |acc, &d| acc.checked_mul(d))
        .ok_or("shape overflows")?;
    if bits % 8 != 0 || bits / 8 != end - start {
        return Err(format!(
            "{} bytes stored for shape {shape:?} of {dtype:?}",
            end - start
        ));
    }
    Ok(Entry {
        dtype,
        shape,
        range: start..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, header: &str, data: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("comfyrs-container-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_misaligned_and_empty_tensors() {
        let header = r#"{"b":{"dtype":"BF16","shape":[2],"data_offsets":[3,7]},
            "a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},
            "z":{"dtype":"F32","shape":[0],"data_offsets":[7,7]},
            "__metadata__":{"config":"{\"x\":1}"}}"#;
        let data = [1u8, 2, 3, 0x80, 0x3f, 0x00, 0x40];
        let file = SafetensorsFile::open(&write("ok.safetensors", header, &data)).unwrap();
        let b = file.raw("b").unwrap();
        assert_eq!(b.bytes, &[0x80, 0x3f, 0x00, 0x40]);
        let t = b.load(&Device::Cpu).unwrap();
        assert_eq!(
            t.to_dtype(candle_core::DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            vec![1.0, 2.0]
        );
        assert_eq!(file.raw("z").unwrap().elem_count(), 0);
        assert_eq!(file.metadata()["config"], "{\"x\":1}");
    }

    #[test]
    fn rejects_inconsistent_headers() {
        let cases = [
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#,
            r#"{"__metadata__":{"n":1}}"#,
            r#"[1]"#,
        ];
        for (i, header) in cases.iter().enumerate() {
            let path = write(&format!("bad{i}.safetensors"), header, &[0u8; 4]);
            let err = SafetensorsFile::open(&path).err().expect(header);
            assert!(matches!(err, Error::Checkpoint(_)), "{err}");
        }
    }
}
