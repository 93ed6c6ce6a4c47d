//! Gemma 3 text encoder (LTX-2's prompt encoder): config, decoder, tokenizer, and the two file
//! layouts it is shipped in.
//!
//! * ComfyUI single file (`gemma_3_12B_it.safetensors`): text model under `model.`
//!   (`model.embed_tokens.weight`, `model.layers.N.*`, `model.norm.weight`), tokenizer as the U8
//!   tensor `spiece_model`, config in the metadata entry `config` when present (the real 12B file
//!   has none: [`Gemma3TextConfig::gemma3_12b`] is used and checked against the tensor shapes).
//! * Hugging Face folder (`google/gemma-3-12b-it`): `config.json` (`text_config`), shards listed
//!   by `model.safetensors.index.json` (or every `*.safetensors`), text model under
//!   `language_model.model.` (or `model.language_model.` in newer exports), `tokenizer.json`.
//!
//! [`Gemma3Checkpoint::open`] detects the layout; [`Gemma3Checkpoint::var_builder`] gives a plain
//! memory-mapped `VarBuilder`, but any `VarBuilder` (e.g. one that dequantises fp8/NVFP4 weights)
//! can be passed to [`Gemma3TextModel::new`] with [`Gemma3Checkpoint::text_prefix`].

pub mod attention;
pub mod config;
pub mod model;
mod protobuf;
pub mod sentencepiece;
pub mod tokenizer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

pub use config::Gemma3TextConfig;
pub use model::Gemma3TextModel;
pub use tokenizer::{GemmaTokenizer, PaddedTokens};

use crate::checkpoint::CheckpointHeader;
use crate::{Error, Result};

/// Prefixes of the text model in the known layouts, most specific first.
const TEXT_PREFIXES: [&str; 3] = ["model.language_model", "language_model.model", "model"];

/// How a Gemma checkpoint is packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmaFormat {
    /// One safetensors file in ComfyUI's layout, tokenizer inside.
    ComfySingleFile,
    /// A Hugging Face model folder.
    HfFolder,
}

/// A located Gemma 3 checkpoint: weight files, layout and text config.
#[derive(Debug, Clone)]
pub struct Gemma3Checkpoint {
    /// The file or folder given to [`Self::open`].
    pub path: PathBuf,
    /// Packaging.
    pub format: GemmaFormat,
    /// Safetensors files holding the weights.
    pub weights: Vec<PathBuf>,
    /// Prefix of the text model's tensors (without the trailing dot).
    pub text_prefix: String,
    /// The text config.
    pub config: Gemma3TextConfig,
}

impl Gemma3Checkpoint {
    /// Opens a ComfyUI single file or a Hugging Face folder and checks the config against the
    /// tensor shapes.
    pub fn open(path: &Path) -> Result<Self> {
        let (format, weights) = if path.is_dir() {
            (GemmaFormat::HfFolder, hf_weight_files(path)?)
        } else {
            (GemmaFormat::ComfySingleFile, vec![path.to_path_buf()])
        };
        let headers = weights
            .iter()
            .map(|p| CheckpointHeader::read(p))
            .collect::<Result<Vec<_>>>()?;
        let text_prefix = detect_text_prefix(&headers, path)?;
        let config = match format {
            GemmaFormat::HfFolder => Gemma3TextConfig::from_config_file(&path.join("config.json"))?,
            GemmaFormat::ComfySingleFile => match headers[0].metadata.get("config") {
                Some(raw) => {
                    let json: serde_json::Value = serde_json::from_str(raw).map_err(|e| {
                        Error::Config(format!("{}: metadata `config`: {e}", path.display()))
                    })?;
                    Gemma3TextConfig::from_json(&json)?
                }
                None => Gemma3TextConfig::gemma3_12b(),
            },
        };
        check_shapes(&config, &headers, &text_prefix, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            format,
            weights,
            text_prefix,
            config,
        })
    }

    /// The tokenizer: `tokenizer.json` (or `tokenizer.model`) of a folder, `spiece_model` of a
    /// single file.
    pub fn tokenizer(&self) -> Result<GemmaTokenizer> {
        match self.format {
            GemmaFormat::ComfySingleFile => GemmaTokenizer::from_checkpoint(&self.path),
            GemmaFormat::HfFolder => {
                let json = self.path.join("tokenizer.json");
                if json.is_file() {
                    return GemmaTokenizer::from_tokenizer_json(&json);
                }
                let model = self.path.join("tokenizer.model");
                let bytes = std::fs::read(&model).map_err(|source| Error::Io {
                    path: model.display().to_string(),
                    source,
                })?;
                GemmaTokenizer::from_sentencepiece(&bytes)
            }
        }
    }

    /// A memory-mapped `VarBuilder` over the weight files, at the root (no prefix).
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        // SAFETY: the files are mapped read-only and must not be modified while mapped.
        Ok(unsafe { VarBuilder::from_mmaped_safetensors(&self.weights, dtype, device)? })
    }

    /// Loads the text model with plain (unquantised) weights cast to `dtype`.
    pub fn load_model(&self, dtype: DType, device: &Device) -> Result<Gemma3TextModel> {
        let vb = self.var_builder(dtype, device)?;
        Gemma3TextModel::new(&self.config, vb.pp(&self.text_prefix))
    }
}

/// Shards of a Hugging Face folder: those named by `model.safetensors.index.json`, else every
/// `*.safetensors` file, sorted.
fn hf_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| Error::Io { path, source }
    };
    let index = dir.join("model.safetensors.index.json");
    let mut files: Vec<PathBuf> = if index.is_file() {
        let raw = std::fs::read(&index).map_err(io(&index))?;
        let json: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", index.display())))?;
        let map = json["weight_map"]
            .as_object()
            .ok_or_else(|| Error::Checkpoint(format!("{}: no weight_map", index.display())))?;
        let names: HashSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect()
    };
    files.sort();
    if files.is_empty() {
        return Err(Error::Checkpoint(format!(
            "{}: no safetensors weights",
            dir.display()
        )));
    }
    Ok(files)
}

fn detect_text_prefix(headers: &[CheckpointHeader], path: &Path) -> Result<String> {
    TEXT_PREFIXES
        .iter()
        .find(|p| {
            let key = format!("{p}.embed_tokens.weight");
            headers.iter().any(|h| h.tensors.contains_key(&key))
        })
        .map(|p| p.to_string())
        .ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: no Gemma text model (no `*.embed_tokens.weight` under {TEXT_PREFIXES:?})",
                path.display()
            ))
        })
}

/// Checks the config against tensors that are never quantised (embedding, norms) and the layer
/// count, so a checkpoint without config (ComfyUI's 12B file) cannot be another model.
fn check_shapes(
    cfg: &Gemma3TextConfig,
    headers: &[CheckpointHeader],
    prefix: &str,
    path: &Path,
) -> Result<()> {
    let shape = |name: String| {
        headers
            .iter()
            .find_map(|h| h.shape(&name).map(<[usize]>::to_vec))
            .ok_or_else(|| Error::Checkpoint(format!("{}: missing `{name}`", path.display())))
    };
    let expect_shape = |name: String, want: Vec<usize>| -> Result<()> {
        let got = shape(name.clone())?;
        if got != want {
            return Err(Error::Checkpoint(format!(
                "{}: `{name}` is {got:?}, the Gemma 3 config says {want:?}",
                path.display()
            )));
        }
        Ok(())
    };
    expect_shape(
        format!("{prefix}.embed_tokens.weight"),
        vec![cfg.vocab_size, cfg.hidden_size],
    )?;
    expect_shape(format!("{prefix}.norm.weight"), vec![cfg.hidden_size])?;
    expect_shape(
        format!("{prefix}.layers.0.self_attn.q_norm.weight"),
        vec![cfg.head_dim],
    )?;
    let layer_prefix = format!("{prefix}.layers.");
    let layers: HashSet<&str> = headers
        .iter()
        .flat_map(|h| h.tensors.keys())
        .filter_map(|k| k.strip_prefix(&layer_prefix)?.split('.').next())
        .collect();
    if layers.len() != cfg.num_hidden_layers {
        return Err(Error::Checkpoint(format!(
            "{}: {} decoder layers, the Gemma 3 config says {}",
            path.display(),
            layers.len(),
            cfg.num_hidden_layers
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    /// A single file without metadata is taken for ComfyUI's Gemma-3-12B and must match it.
    #[test]
    fn single_file_without_config_must_have_12b_shapes() {
        let dir = std::env::temp_dir().join(format!("comfyrs-gemma3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("small.safetensors");
        let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        let tensors = std::collections::HashMap::from([
            ("model.embed_tokens.weight".to_string(), zeros(&[8, 4])),
            ("model.norm.weight".to_string(), zeros(&[4])),
            (
                "model.layers.0.self_attn.q_norm.weight".to_string(),
                zeros(&[2]),
            ),
        ]);
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let err = Gemma3Checkpoint::open(&path).unwrap_err().to_string();
        assert!(err.contains("embed_tokens"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_without_gemma_weights_is_rejected() {
        let ltx = crate::parity::model_path("ltx2-tiny.safetensors");
        assert!(matches!(
            Gemma3Checkpoint::open(&ltx),
            Err(Error::Checkpoint(_))
        ));
    }

    #[test]
    fn fixture_layouts_are_detected() {
        let hf = Gemma3Checkpoint::open(&crate::parity::model_path("gemma3-tiny")).unwrap();
        assert_eq!(hf.format, GemmaFormat::HfFolder);
        assert_eq!(hf.text_prefix, "language_model.model");
        let comfy =
            Gemma3Checkpoint::open(&crate::parity::model_path("gemma3-tiny-comfy.safetensors"))
                .unwrap();
        assert_eq!(comfy.format, GemmaFormat::ComfySingleFile);
        assert_eq!(comfy.text_prefix, "model");
        assert_eq!(hf.config, comfy.config);
    }
}
