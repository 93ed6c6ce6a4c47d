//! Checkpoint weights: official safetensors files read unchanged, quantised layers included.
//!
//! [`WeightFiles`] memory-maps one or several safetensors files, recognises every quantised
//! layer the way ComfyUI does (per-tensor FP8 as in `ltx-2-19b-*-fp8`, NVFP4, MXFP8, the
//! `gemma_3_12B_it_fp4_mixed` mix; `checkpoint-formats.md` §3, §4, §7.3) and serves tensors
//! through a candle [`VarBuilder`], dequantising on the fly, so model code written against
//! `vb.pp("...").get(...)` loads a bf16 and a quantised checkpoint alike.
//!
//! Lookups see the *logical* state dict: a quantised layer's `weight` is a regular tensor of the
//! module's shape, its companions (`weight_scale`, `weight_scale_2`, `input_scale`,
//! `pre_quant_scale`, `comfy_quant`, legacy `scale_weight`/`scale_input`/`scaled_fp8`) are not
//! visible as tensors. A layer that looks quantised but whose format is unknown or whose
//! companions do not fit is an error naming the key whenever it is read.
//!
//! A layer that wants to keep the compact form (FP8 GEMM, dequantise per forward) asks
//! [`WeightFiles::quantized_weight`] for a [`QuantizedWeight`] instead.

mod backend;
mod container;
pub mod elements;
mod layout;
mod markers;
mod quantized;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Shape};
use candle_nn::VarBuilder;

use crate::{Error, Result};
use container::SafetensorsFile;
use markers::{LayerSpec, QuantMap};

pub use markers::MarkerSource;
pub use quantized::{Payload, QuantFormat, QuantScales, QuantizedWeight, Rounding};

/// One or several safetensors files seen as a single state dict.
///
/// Cheap to clone (the mappings are shared). Keys must be unique across the files.
#[derive(Clone)]
pub struct WeightFiles {
    inner: Arc<Inner>,
    rounding: Rounding,
}

struct Inner {
    files: Vec<SafetensorsFile>,
    quant: Vec<QuantMap>,
    index: HashMap<String, Slot>,
}

/// Where a key lives and what it is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    file: usize,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A tensor served as stored (cast to the requested dtype).
    Plain,
    /// The `weight` of a quantised layer (or of one whose quantisation cannot be read).
    Quantized,
    /// A scale or marker of a quantised layer; not a model tensor.
    Companion,
}

impl WeightFiles {
    /// Maps `paths` (at least one) and classifies their tensors; a key present in two files is
    /// an error.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::Input("no checkpoint file given".into()));
        }
        let mut files = Vec::with_capacity(paths.len());
        let mut quant = Vec::with_capacity(paths.len());
        let mut index: HashMap<String, Slot> = HashMap::new();
        for (file_index, path) in paths.iter().enumerate() {
            let file = SafetensorsFile::open(path.as_ref())?;
            let map = QuantMap::build(&file)?;
            for key in file.keys() {
                let kind = if map.layers.contains_key(key) {
                    Kind::Quantized
                } else if map.companions.contains_key(key) {
                    Kind::Companion
                } else {
                    Kind::Plain
                };
                let slot = Slot {
                    file: file_index,
                    kind,
                };
                if let Some(first) = index.insert(key.to_string(), slot) {
                    return Err(Error::Checkpoint(format!(
                        "tensor `{key}` is in both {} and {}",
                        files_path(&files, first.file, &file),
                        file.path().display()
                    )));
                }
            }
            tracing::debug!(
                path = %file.path().display(),
                quantised = map.layers.len(),
                "opened checkpoint file"
            );
            files.push(file);
            quant.push(map);
        }
        let inner = Inner {
            files,
            quant,
            index,
        };
        Ok(Self {
            inner: Arc::new(inner),
            rounding: Rounding::default(),
        })
    }

    /// The same files, dequantising with `rounding` (default [`Rounding::SingleF32`]).
    pub fn with_rounding(mut self, rounding: Rounding) -> Self {
        self.rounding = rounding;
        self
    }

    /// The dequantisation rounding in use.
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// A `VarBuilder` over these files whose tensors come out in `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        Ok(VarBuilder::from_backend(
            Box::new(self.clone()),
            dtype,
            device.clone(),
        ))
    }

    /// The paths of the files, in the order given to [`WeightFiles::open`].
    pub fn paths(&self) -> Vec<&Path> {
        self.inner.files.iter().map(SafetensorsFile::path).collect()
    }

    /// The `__metadata__` of the first file (the primary one, as ComfyUI treats its first file).
    pub fn metadata(&self) -> &HashMap<String, String> {
        self.inner.files[0].metadata()
    }

    /// The `__metadata__` of file `index`.
    pub fn file_metadata(&self, index: usize) -> Option<&HashMap<String, String>> {
        self.inner.files.get(index).map(SafetensorsFile::metadata)
    }

    /// Whether `key` is a model tensor (companions of quantised layers are not).
    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .index
            .get(key)
            .is_some_and(|slot| slot.kind != Kind::Companion)
    }

    /// Every model tensor key, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .inner
            .index
            .iter()
            .filter(|(_, slot)| slot.kind != Kind::Companion)
            .map(|(key, _)| key.as_str())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The quantisation format of tensor `key`; `None` for a plain or absent tensor, an error
    /// naming the key when it is quantised in a way this loader cannot read.
    pub fn quant_format(&self, key: &str) -> Result<Option<QuantFormat>> {
        Ok(self.layer_spec(key)?.map(|spec| spec.format))
    }

    /// How the quantisation of `key` was recognised (`None` for a plain or absent tensor).
    pub fn marker_source(&self, key: &str) -> Result<Option<MarkerSource>> {
        Ok(self.layer_spec(key)?.map(|spec| spec.source))
    }

    /// The stored form of the quantised tensor `key` on `device`, for a module of `shape`;
    /// `None` when `key` is a plain tensor.
    pub fn quantized_weight(
        &self,
        key: &str,
        shape: impl Into<Shape>,
        device: &Device,
    ) -> Result<Option<QuantizedWeight>> {
        self.read_quantized(key, Some(&shape.into()), device)
    }

    fn read_quantized(
        &self,
        key: &str,
        shape: Option<&Shape>,
        device: &Device,
    ) -> Result<Option<QuantizedWeight>> {
        let Some(spec) = self.layer_spec(key)? else {
            if self.inner.index.contains_key(key) {
                return Ok(None);
            }
            return Err(missing(key));
        };
        let file = &self.inner.files[self.slot(key)?.file];
        let weight = QuantizedWeight::read(file, key, spec, shape, device, self.rounding)
            .map_err(|e| context(file, e))?;
        Ok(Some(weight))
    }

    fn slot(&self, key: &str) -> Result<Slot> {
        self.inner
            .index
            .get(key)
            .copied()
            .ok_or_else(|| missing(key))
    }

    fn layer_spec(&self, key: &str) -> Result<Option<&LayerSpec>> {
        let Some(slot) = self.inner.index.get(key) else {
            return Ok(None);
        };
        match slot.kind {
            Kind::Quantized => match &self.inner.quant[slot.file].layers[key] {
                Ok(spec) => Ok(Some(spec)),
                Err(why) => Err(Error::Checkpoint(format!(
                    "{}: `{key}`: {why}",
                    self.inner.files[slot.file].path().display()
                ))),
            },
            Kind::Plain | Kind::Companion => Ok(None),
        }
    }
}

fn missing(key: &str) -> Error {
    candle_core::Error::CannotFindTensor {
        path: key.to_string(),
    }
    .into()
}

/// Prefixes a checkpoint error with the file it came from.
fn context(file: &SafetensorsFile, error: Error) -> Error {
    match error {
        Error::Checkpoint(why) => Error::Checkpoint(format!("{}: {why}", file.path().display())),
        other => other,
    }
}

fn files_path(files: &[SafetensorsFile], index: usize, current: &SafetensorsFile) -> String {
    files
        .get(index)
        .unwrap_or(current)
        .path()
        .display()
        .to_string()
}
