//! Which tensors of a file are quantised, in which format, and which keys are their companions.
//!
//! ComfyUI marks quantised layers in three ways (`comfy/utils.py` `convert_old_quants`), all
//! normalised here to one per-layer [`LayerSpec`]:
//! (A) a `_quantization_metadata` header entry, `{"layers": {"<layer>": {"format": ...}}}`;
//! (B) a U8 tensor `<layer>.comfy_quant` holding the same per-layer JSON;
//! (C) the legacy `<prefix>scaled_fp8` marker with `<layer>.scale_weight`/`.scale_input`
//! (only when (A) is absent; a `scale_input` of exactly 1.0 is dropped, a two-element marker
//! sets `full_precision_matrix_mult`).
//! (A) and (C) override (B) for the same layer, as in ComfyUI. Unmarked layers then follow the
//! ltx-core rules: an F8 `.weight` with a one-element `.weight_scale` is per-tensor FP8 (the
//! official `ltx-2-19b-*-fp8` files), a U8 `.weight` with `.weight_scale` and `.weight_scale_2`
//! is NVFP4. Any other F8/U8/integer weight that carries scales is recorded as an error for
//! that key, so it can never load as if it were a plain tensor.

use std::collections::HashMap;

use safetensors::Dtype;
use serde_json::Value;

use super::container::SafetensorsFile;
use super::quantized::QuantFormat;
use crate::{Error, Result};

/// Header entry of mechanism (A).
const QUANT_METADATA_KEY: &str = "_quantization_metadata";
/// Key suffix of mechanism (B).
const COMFY_QUANT_SUFFIX: &str = ".comfy_quant";
/// Marker key (with its model prefix in front) of mechanism (C).
const SCALED_FP8_MARKER: &str = "scaled_fp8";

/// Per-layer suffixes that are never model tensors when the layer is quantised.
const COMPANION_SUFFIXES: [&str; 6] = [
    "weight_scale",
    "weight_scale_2",
    "input_scale",
    "pre_quant_scale",
    "scale_weight",
    "scale_input",
];

/// How a layer's quantisation was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerSource {
    /// (A) the `_quantization_metadata` header entry.
    HeaderMetadata,
    /// (B) a `<layer>.comfy_quant` tensor.
    ComfyQuantTensor,
    /// (C) the legacy `scaled_fp8` marker.
    ScaledFp8,
    /// No marker: F8 weight with a one-element `weight_scale` (ltx-core's FP8 rule).
    Fp8ScaleSibling,
    /// No marker: U8 weight with `weight_scale` and `weight_scale_2` (ltx-core's NVFP4 rule).
    Nvfp4ScaleSiblings,
}

/// A quantised layer's format and the keys of its companion tensors.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// The format of `<layer>.weight`.
    pub format: QuantFormat,
    /// Where the format came from.
    pub source: MarkerSource,
    /// The marker's `full_precision_matrix_mult` flag.
    pub full_precision_matrix_mult: bool,
    /// Per-tensor scale (FP8) or block scales (NVFP4, MXFP8).
    pub weight_scale: Option<String>,
    /// NVFP4 global scale.
    pub weight_scale_2: Option<String>,
    /// Static activation scale.
    pub input_scale: Option<String>,
    /// Per-input-channel smoothing factor applied to the activation.
    pub pre_quant_scale: Option<String>,
}

/// The quantisation map of one file.
#[derive(Debug, Default)]
pub struct QuantMap {
    /// Weight key → its spec, or why it cannot be read.
    pub layers: HashMap<String, std::result::Result<LayerSpec, String>>,
    /// Companion key (scale, marker) → the key it belongs to.
    pub companions: HashMap<String, String>,
}

/// A layer's marker before it is checked against the file: its JSON config and origin.
struct Marker {
    config: std::result::Result<Value, String>,
    source: MarkerSource,
    /// For (C): the scale keys have the legacy names and a 1.0 input scale is dropped.
    legacy_input_scale: Option<String>,
}

impl QuantMap {
    /// Classifies every tensor of `file`.
    pub fn build(file: &SafetensorsFile) -> Result<Self> {
        let mut map = Self::default();
        let mut markers = comfy_quant_markers(file, &mut map);
        match file.metadata().get(QUANT_METADATA_KEY) {
            Some(json) => markers.extend(header_markers(file, json)?),
            None => markers.extend(scaled_fp8_markers(file, &mut map)),
        }
        for (layer, marker) in markers {
            let weight_key = format!("{layer}.weight");
            if file.raw(&weight_key).is_none() {
                tracing::warn!(
                    file = %file.path().display(),
                    "quantisation marker for `{layer}` names no tensor `{weight_key}`; ignored"
                );
                continue;
            }
            let spec = marked_spec(file, &layer, marker);
            map.insert(file, &layer, spec);
        }
        let unmarked: Vec<String> = file
            .keys()
            .filter_map(|k| k.strip_suffix(".weight"))
            .filter(|layer| !map.layers.contains_key(&format!("{layer}.weight")))
            .map(str::to_string)
            .collect();
        for layer in unmarked {
            if let Some(spec) = sibling_spec(file, &layer) {
                map.insert(file, &layer, spec);
            }
        }
        Ok(map)
    }

    /// Records `layer`'s spec and hides all of its companion tensors.
    fn insert(
        &mut self,
        file: &SafetensorsFile,
        layer: &str,
        spec: std::result::Result<LayerSpec, String>,
    ) {
        let weight_key = format!("{layer}.weight");
        for suffix in COMPANION_SUFFIXES {
            let key = format!("{layer}.{suffix}");
            if file.raw(&key).is_some() {
                self.companions.insert(key, weight_key.clone());
            }
        }
        self.layers.insert(weight_key, spec);
    }
}

/// (B): every `<layer>.comfy_quant` tensor, parsed; the tensors become companions.
fn comfy_quant_markers(file: &SafetensorsFile, map: &mut QuantMap) -> HashMap<String, Marker> {
    let mut markers = HashMap::new();
    for key in file.keys() {
        let Some(layer) = key.strip_suffix(COMFY_QUANT_SUFFIX) else {
            continue;
        };
        map.companions
            .insert(key.to_string(), format!("{layer}.weight"));
        let config = file
            .raw(key)
            .filter(|raw| raw.dtype == Dtype::U8)
            .ok_or_else(|| format!("`{key}` is not a U8 tensor"))
            .and_then(|raw| {
                serde_json::from_slice(raw.bytes)
                    .map_err(|e| format!("`{key}` does not hold JSON: {e}"))
            });
        let marker = Marker {
            config,
            source: MarkerSource::ComfyQuantTensor,
            legacy_input_scale: None,
        };
        markers.insert(layer.to_string(), marker);
    }
    markers
}

/// (A): the layers of the `_quantization_metadata` header entry.
fn header_markers(file: &SafetensorsFile, json: &str) -> Result<HashMap<String, Marker>> {
    let bad = |why: String| {
        Error::Checkpoint(format!(
            "{}: metadata `{QUANT_METADATA_KEY}`: {why}",
            file.path().display()
        ))
    };
    let value: Value = serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let layers = value
        .get("layers")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no `layers` object".into()))?;
    Ok(layers
        .iter()
        .map(|(layer, config)| {
            let marker = Marker {
                config: Ok(config.clone()),
                source: MarkerSource::HeaderMetadata,
                legacy_input_scale: None,
            };
            (layer.clone(), marker)
        })
        .collect())
}

/// (C): layers under each `<prefix>scaled_fp8` marker that have a `.scale_weight`.
fn scaled_fp8_markers(file: &SafetensorsFile, map: &mut QuantMap) -> HashMap<String, Marker> {
    let mut markers = HashMap::new();
    let marker_keys: Vec<&str> = file
        .keys()
        .filter(|k| {
            k.strip_suffix(SCALED_FP8_MARKER)
                .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('.'))
        })
        .collect();
    for marker_key in marker_keys {
        map.companions
            .insert(marker_key.to_string(), marker_key.to_string());
        let prefix = &marker_key[..marker_key.len() - SCALED_FP8_MARKER.len()];
        let full_precision = file.raw(marker_key).is_some_and(|m| m.elem_count() == 2);
        for key in file.keys().filter(|k| k.starts_with(prefix)) {
            let Some(layer) = key.strip_suffix(".scale_weight") else {
                continue;
            };
            let format = file
                .raw(&format!("{layer}.weight"))
                .and_then(|w| QuantFormat::per_tensor_for(w.dtype))
                .unwrap_or(QuantFormat::Fp8E4m3);
            let config = serde_json::json!({
                "format": format.comfy_name(),
                "full_precision_matrix_mult": full_precision,
            });
            let marker = Marker {
                config: Ok(config),
                source: MarkerSource::ScaledFp8,
                legacy_input_scale: Some(format!("{layer}.scale_input")),
            };
            markers.insert(layer.to_string(), marker);
        }
    }
    markers
}

/// The spec of a marked layer, checked against the tensors the file holds.
fn marked_spec(
    file: &SafetensorsFile,
    layer: &str,
    marker: Marker,
) -> std::result::Result<LayerSpec, String> {
    let config = marker.config?;
    let format_name = config
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the quantisation marker of `{layer}` has no format: {config}"))?;
    let format = QuantFormat::from_comfy_name(format_name)
        .ok_or_else(|| format!("quantisation format `{format_name}` is not supported"))?;
    let present = |suffix: &str| {
        let key = format!("{layer}.{suffix}");
        file.raw(&key).map(|_| key)
    };
    let (weight_scale, input_scale) = match &marker.legacy_input_scale {
        Some(legacy_input) => (
            present("scale_weight"),
            file.raw(legacy_input)
                .filter(|s| s.scalar_f32().ok() != Some(1.0))
                .map(|_| legacy_input.clone()),
        ),
        None => (present("weight_scale"), present("input_scale")),
    };
    let spec = LayerSpec {
        format,
        source: marker.source,
        full_precision_matrix_mult: config
            .get("full_precision_matrix_mult")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        weight_scale,
        weight_scale_2: present("weight_scale_2"),
        input_scale,
        pre_quant_scale: present("pre_quant_scale"),
    };
    check_weight_dtype(file, layer, &spec)?;
    Ok(spec)
}

/// An unmarked layer's spec by the ltx-core rules; `None` for a plain tensor.
fn sibling_spec(
    file: &SafetensorsFile,
    layer: &str,
) -> Option<std::result::Result<LayerSpec, String>> {
    let weight = file.raw(&format!("{layer}.weight"))?;
    let present = |suffix: &str| {
        let key = format!("{layer}.{suffix}");
        file.raw(&key).map(|_| key)
    };
    let weight_scale = present("weight_scale").or_else(|| present("scale_weight"));
    let weight_scale_2 = present("weight_scale_2");
    weight_scale.as_ref().or(weight_scale_2.as_ref())?;
    if is_float_dtype(weight.dtype) {
        // A high-precision weight next to scale-like tensors: not a quantised layer.
        return None;
    }
    let spec = |format, source| LayerSpec {
        format,
        source,
        full_precision_matrix_mult: false,
        weight_scale: weight_scale.clone(),
        weight_scale_2: weight_scale_2.clone(),
        input_scale: present("input_scale"),
        pre_quant_scale: present("pre_quant_scale"),
    };
    let scale_len = weight_scale
        .as_deref()
        .and_then(|k| file.raw(k))
        .map(|s| s.elem_count());
    let found = match (QuantFormat::per_tensor_for(weight.dtype), weight.dtype) {
        (Some(format), _) if scale_len == Some(1) && weight_scale_2.is_none() => {
            Ok(spec(format, MarkerSource::Fp8ScaleSibling))
        }
        (None, Dtype::U8) if weight_scale.is_some() && weight_scale_2.is_some() => {
            Ok(spec(QuantFormat::Nvfp4, MarkerSource::Nvfp4ScaleSiblings))
        }
        _ => Err(format!(
            "`{layer}.weight` ({:?}) has quantisation scales but no marker and no layout this \
             loader recognises",
            weight.dtype
        )),
    };
    Some(found)
}

/// The weight's stored dtype must be the one the format stores.
fn check_weight_dtype(
    file: &SafetensorsFile,
    layer: &str,
    spec: &LayerSpec,
) -> std::result::Result<(), String> {
    let key = format!("{layer}.weight");
    let dtype = file
        .raw(&key)
        .map(|w| w.dtype)
        .ok_or_else(|| format!("`{key}` is missing"))?;
    let ok = match spec.format {
        QuantFormat::Fp8E4m3 => dtype == Dtype::F8_E4M3,
        QuantFormat::Fp8E5m2 => dtype == Dtype::F8_E5M2,
        QuantFormat::Nvfp4 => dtype == Dtype::U8,
        QuantFormat::Mxfp8 => matches!(dtype, Dtype::F8_E4M3 | Dtype::F8_E5M2),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is marked {} but stored as {dtype:?}",
            spec.format.comfy_name()
        ))
    }
}

fn is_float_dtype(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
}
