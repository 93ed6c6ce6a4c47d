//! Saving files the way ComfyUI names them (`folder_paths.get_save_image_path`:
//! `<prefix>_<counter:05>_.<ext>`, counter = highest existing + 1, subfolders from the prefix) and
//! the image encodings the save nodes use (PNG with `prompt`/`workflow` text chunks).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::env::safe_join;
use crate::error::NodeError;
use crate::value::Json;

/// Where the next file of a prefix goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavePath {
    /// The folder to write into (created).
    pub folder: PathBuf,
    /// The file name stem (prefix without subfolder).
    pub filename: String,
    /// The first free counter.
    pub counter: u64,
    /// The subfolder relative to the output folder (`""` or `"video"`, `/`-separated).
    pub subfolder: String,
}

impl SavePath {
    /// The file name for `counter` with extension `ext` (`"png"`), replacing `%batch_num%`.
    pub fn file_name(&self, counter: u64, batch_num: usize, ext: &str) -> String {
        let stem = self.filename.replace("%batch_num%", &batch_num.to_string());
        format!("{stem}_{counter:05}_.{ext}")
    }
}

fn compute_vars(prefix: &str, width: usize, height: usize) -> String {
    let now = chrono::Local::now();
    prefix
        .replace("%width%", &width.to_string())
        .replace("%height%", &height.to_string())
        .replace("%year%", &now.format("%Y").to_string())
        .replace("%month%", &now.format("%m").to_string())
        .replace("%day%", &now.format("%d").to_string())
        .replace("%hour%", &now.format("%H").to_string())
        .replace("%minute%", &now.format("%M").to_string())
        .replace("%second%", &now.format("%S").to_string())
}

/// ComfyUI's `get_save_image_path`: resolves the prefix's subfolder inside `output_dir`
/// (refusing anything outside it) and finds the next free counter.
pub fn save_path(
    prefix: &str,
    output_dir: &Path,
    width: usize,
    height: usize,
) -> Result<SavePath, NodeError> {
    let prefix = if prefix.contains('%') {
        compute_vars(prefix, width, height)
    } else {
        prefix.to_string()
    };
    let normalized = prefix.replace('\\', "/");
    let (subfolder, filename) = match normalized.rsplit_once('/') {
        Some((dir, name)) => (dir.trim_matches('/').to_string(), name.to_string()),
        None => (String::new(), normalized.clone()),
    };
    let folder = safe_join(output_dir, &subfolder).ok_or_else(|| {
        NodeError::Value(format!(
            "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: {subfolder}\n         output_dir: {}",
            output_dir.display()
        ))
    })?;
    std::fs::create_dir_all(&folder)
        .map_err(|e| NodeError::io(format!("creating {}", folder.display()), e))?;
    let counter = next_counter(&folder, &filename);
    Ok(SavePath {
        folder,
        filename,
        counter,
        subfolder,
    })
}

/// Highest `<filename>_<digits>_...` counter in `folder`, plus one (ComfyUI's `map_filename`).
fn next_counter(folder: &Path, filename: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 1;
    };
    let prefix_len = filename.chars().count();
    let mut best = 0u64;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let chars: Vec<char> = name.chars().collect();
        if chars.len() <= prefix_len {
            continue;
        }
        let head: String = chars[..prefix_len].iter().collect();
        if head.to_lowercase() != filename.to_lowercase() || chars[prefix_len] != '_' {
            continue;
        }
        let rest: String = chars[prefix_len + 1..].iter().collect();
        let digits = rest.split('_').next().unwrap_or("");
        if let Ok(n) = digits.parse::<u64>() {
            best = best.max(n);
        }
    }
    best + 1
}

/// One image of an `IMAGE` batch as 8-bit interleaved pixels (`clip(255x).astype(uint8)`).
pub struct Pixels {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Channels (1, 3 or 4).
    pub channels: usize,
    /// Interleaved bytes.
    pub data: Vec<u8>,
}

/// Splits an `IMAGE` `[N, H, W, C]` into 8-bit images.
pub fn to_pixels(images: &Tensor) -> Result<Vec<Pixels>, NodeError> {
    let images = if images.rank() == 3 {
        images.unsqueeze(0)?
    } else {
        images.clone()
    };
    let (n, h, w, c) = images.dims4().map_err(|_| {
        NodeError::Value(format!(
            "expected an IMAGE [N,H,W,C], got {:?}",
            images.dims()
        ))
    })?;
    if !matches!(c, 1 | 3 | 4) {
        return Err(NodeError::Value(format!(
            "cannot save an image with {c} channels"
        )));
    }
    let data = images
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let per = h * w * c;
    Ok((0..n)
        .map(|i| Pixels {
            width: w,
            height: h,
            channels: c,
            data: data[i * per..(i + 1) * per]
                .iter()
                .map(|v| (255.0 * v).clamp(0.0, 255.0) as u8)
                .collect(),
        })
        .collect())
}

/// Encodes a PNG with `tEXt` chunks (`prompt`, `workflow`, ...) at a zlib level like PIL's
/// `compress_level` (1 fast .. 9 best).
pub fn encode_png(
    px: &Pixels,
    texts: &[(String, String)],
    compress_level: u8,
) -> Result<Vec<u8>, NodeError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, px.width as u32, px.height as u32);
        enc.set_color(match px.channels {
            1 => png::ColorType::Grayscale,
            4 => png::ColorType::Rgba,
            _ => png::ColorType::Rgb,
        });
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(match compress_level {
            0..=2 => png::Compression::Fast,
            3..=6 => png::Compression::Default,
            _ => png::Compression::Best,
        });
        for (key, value) in texts {
            enc.add_text_chunk(key.clone(), value.clone())
                .map_err(|e| NodeError::Runtime(format!("png text chunk: {e}")))?;
        }
        let mut writer = enc
            .write_header()
            .map_err(|e| NodeError::Runtime(format!("png header: {e}")))?;
        writer
            .write_image_data(&px.data)
            .map_err(|e| NodeError::Runtime(format!("png data: {e}")))?;
    }
    Ok(out)
}

/// The text chunks ComfyUI writes: `prompt` (API JSON) and every key of `extra_pnginfo`
/// (usually `workflow`), each as JSON text.
pub fn metadata_chunks(prompt: &Json, extra_pnginfo: Option<&Json>) -> Vec<(String, String)> {
    let mut chunks = vec![("prompt".to_string(), prompt.to_string())];
    if let Some(Json::Object(extra)) = extra_pnginfo {
        for (k, v) in extra {
            chunks.push((k.clone(), v.to_string()));
        }
    }
    chunks
}

/// Writes `bytes` to `path` atomically (temp file + rename), so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .map_err(|e| NodeError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| NodeError::io(format!("renaming to {}", path.display()), e))
}

/// SHA-256 of a file, hex (ComfyUI's `IS_CHANGED` for loaded files).
pub fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(sha2::Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_continue_after_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = save_path("ComfyUI", dir.path(), 0, 0).unwrap();
        assert_eq!(p.counter, 1);
        assert_eq!(p.file_name(1, 0, "png"), "ComfyUI_00001_.png");
        std::fs::write(dir.path().join("ComfyUI_00007_.png"), b"x").unwrap();
        std::fs::write(dir.path().join("Other_00009_.png"), b"x").unwrap();
        assert_eq!(save_path("ComfyUI", dir.path(), 0, 0).unwrap().counter, 8);
    }

    #[test]
    fn subfolders_come_from_the_prefix_and_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let p = save_path("video/LTX-2", dir.path(), 0, 0).unwrap();
        assert_eq!(p.subfolder, "video");
        assert_eq!(p.filename, "LTX-2");
        assert!(dir.path().join("video").is_dir());
        assert!(save_path("../escape", dir.path(), 0, 0).is_err());
        assert!(
            save_path("/etc/x", dir.path(), 0, 0).is_ok_and(|p| p.folder.starts_with(dir.path()))
        );
    }

    #[test]
    fn width_and_height_variables() {
        let dir = tempfile::tempdir().unwrap();
        let p = save_path("img_%width%x%height%", dir.path(), 640, 360).unwrap();
        assert_eq!(p.filename, "img_640x360");
    }

    #[test]
    fn png_carries_text_chunks() {
        let px = Pixels {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![0, 0, 0, 255, 255, 255],
        };
        let bytes = encode_png(&px, &[("prompt".into(), "{\"1\":2}".into())], 4).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let text = &reader.info().uncompressed_latin1_text;
        assert_eq!(text[0].keyword, "prompt");
        assert_eq!(text[0].text, "{\"1\":2}");
    }
}
