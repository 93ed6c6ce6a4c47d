//! The values that flow between nodes: widget constants and the ComfyUI data types.
//!
//! Tensors follow ComfyUI's conventions: `IMAGE` is `[N, H, W, C]` f32 in 0..1, `MASK` is
//! `[N, H, W]` f32, `LATENT` is a dict whose `samples` may be nested (audio + video).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use candle_core::Tensor;

/// A JSON value (widget constants, UI dicts, prompt JSON).
pub type Json = serde_json::Value;

/// One value produced by a node output or given as a widget constant.
#[derive(Clone)]
pub enum Value {
    /// `INT` (Python ints are unbounded; seeds reach u64::MAX, so i128 holds every valid one).
    Int(i128),
    /// `FLOAT`.
    Float(f64),
    /// `STRING` (and combo choices).
    String(String),
    /// `BOOLEAN`.
    Boolean(bool),
    /// Any other JSON constant (multiselect lists, `*` inputs given a constant).
    Json(Json),
    /// `IMAGE`: `[N, H, W, C]` f32, values in 0..1.
    Image(Tensor),
    /// `MASK`: `[N, H, W]` f32.
    Mask(Tensor),
    /// `LATENT`.
    Latent(Latent),
    /// `AUDIO`: `{"waveform": [B, C, S] f32, "sample_rate": int}`.
    Audio(Audio),
    /// `VIDEO`: frames (+ audio) in memory, or a video file decoded lazily.
    Video(Arc<Video>),
    /// A model-side object (MODEL, VAE, CLIP, CONDITIONING, ...) held behind an `Arc`.
    Object(Object),
}

impl Value {
    /// The ComfyUI type name of this value (for messages).
    pub fn type_name(&self) -> &str {
        match self {
            Value::Int(_) => "INT",
            Value::Float(_) => "FLOAT",
            Value::String(_) => "STRING",
            Value::Boolean(_) => "BOOLEAN",
            Value::Json(_) => "JSON",
            Value::Image(_) => "IMAGE",
            Value::Mask(_) => "MASK",
            Value::Latent(_) => "LATENT",
            Value::Audio(_) => "AUDIO",
            Value::Video(_) => "VIDEO",
            Value::Object(o) => o.type_name(),
        }
    }

    /// Approximate memory held by this value, in bytes (used to bound the output cache).
    pub fn approx_bytes(&self) -> usize {
        match self {
            Value::Image(t) | Value::Mask(t) => tensor_bytes(t),
            Value::Latent(l) => l.approx_bytes(),
            Value::Audio(a) => tensor_bytes(&a.waveform),
            Value::Video(v) => v.approx_bytes(),
            Value::String(s) => s.len(),
            Value::Object(o) => o.approx_bytes,
            _ => 16,
        }
    }

    /// The value as ComfyUI formats it in `execution_error.current_inputs`: JSON primitives
    /// as themselves, everything else as a short description string.
    pub fn to_report_json(&self) -> Json {
        match self {
            Value::Int(i) => int_to_json(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::String(s) => Json::String(s.clone()),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Json(j) => j.clone(),
            other => Json::String(format!("{other:?}")),
        }
    }
}

/// Converts an INT to JSON without losing precision where JSON numbers can hold it.
pub fn int_to_json(i: i128) -> Json {
    if let Ok(v) = i64::try_from(i) {
        Json::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Json::from(v)
    } else {
        serde_json::Number::from_f64(i as f64)
            .map(Json::Number)
            .unwrap_or(Json::Null)
    }
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

fn shape_text(t: &Tensor) -> String {
    format!("{:?} {:?}", t.dims(), t.dtype())
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Json(j) => write!(f, "{j}"),
            Value::Image(t) => write!(f, "IMAGE({})", shape_text(t)),
            Value::Mask(t) => write!(f, "MASK({})", shape_text(t)),
            Value::Latent(l) => write!(f, "LATENT({})", l.describe()),
            Value::Audio(a) => write!(
                f,
                "AUDIO({}, {} Hz)",
                shape_text(&a.waveform),
                a.sample_rate
            ),
            Value::Video(v) => write!(f, "VIDEO({})", v.describe()),
            Value::Object(o) => write!(f, "{}({})", o.type_name, o.description),
        }
    }
}

/// The tensor(s) of a latent: one tensor, or a nested list (LTX-2 audio+video: `[video, audio]`).
#[derive(Clone)]
pub enum LatentSamples {
    /// A plain latent tensor.
    Single(Tensor),
    /// A `NestedTensor` of several parts.
    Nested(Vec<Tensor>),
}

impl LatentSamples {
    /// The parts as a slice-like list (one element for a plain tensor).
    pub fn parts(&self) -> Vec<&Tensor> {
        match self {
            LatentSamples::Single(t) => vec![t],
            LatentSamples::Nested(ts) => ts.iter().collect(),
        }
    }

    /// The first (video) tensor, which is what `.shape` reports for a NestedTensor.
    pub fn first(&self) -> Option<&Tensor> {
        match self {
            LatentSamples::Single(t) => Some(t),
            LatentSamples::Nested(ts) => ts.first(),
        }
    }

    /// Whether this is a nested latent.
    pub fn is_nested(&self) -> bool {
        matches!(self, LatentSamples::Nested(_))
    }

    fn approx_bytes(&self) -> usize {
        self.parts().into_iter().map(tensor_bytes).sum()
    }
}

/// A `LATENT` dict.
#[derive(Clone)]
pub struct Latent {
    /// `samples`.
    pub samples: LatentSamples,
    /// `noise_mask` (how much to denoise; nested like `samples` for AV latents).
    pub noise_mask: Option<LatentSamples>,
    /// `batch_index`, read by noise generation.
    pub batch_index: Option<Vec<i64>>,
    /// Any other keys (`type`, `downscale_ratio_spacial`, ...), kept as JSON.
    pub extra: BTreeMap<String, Json>,
}

impl Latent {
    /// A latent holding one tensor and nothing else.
    pub fn new(samples: Tensor) -> Self {
        Self {
            samples: LatentSamples::Single(samples),
            noise_mask: None,
            batch_index: None,
            extra: BTreeMap::new(),
        }
    }

    fn approx_bytes(&self) -> usize {
        self.samples.approx_bytes() + self.noise_mask.as_ref().map_or(0, |m| m.approx_bytes())
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.samples.parts().into_iter().map(shape_text).collect();
        parts.join(", ")
    }
}

/// An opaque, shareable object of a named ComfyUI type (`MODEL`, `VAE`, `CONDITIONING`, ...).
#[derive(Clone)]
pub struct Object {
    type_name: String,
    inner: Arc<dyn Any + Send + Sync>,
    description: String,
    approx_bytes: usize,
}

impl Object {
    /// Wraps `inner` as a value of ComfyUI type `type_name`.
    pub fn new<T: Any + Send + Sync>(
        type_name: &str,
        inner: Arc<T>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            type_name: type_name.to_string(),
            inner,
            description: description.into(),
            approx_bytes: 64,
        }
    }

    /// Sets the memory this object holds exclusively (for the output cache's budget).
    pub fn with_bytes(mut self, bytes: usize) -> Self {
        self.approx_bytes = bytes;
        self
    }

    /// The ComfyUI type name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The inner value, if it is a `T`.
    pub fn downcast<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.clone().downcast::<T>().ok()
    }
}

/// An `AUDIO` value.
#[derive(Clone)]
pub struct Audio {
    /// `[B, C, S]` f32 samples.
    pub waveform: Tensor,
    /// Samples per second.
    pub sample_rate: u32,
}

/// A frame rate as an exact fraction (ComfyUI keeps `Fraction`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    /// Numerator.
    pub num: u32,
    /// Denominator (> 0).
    pub den: u32,
}

impl FrameRate {
    /// The rate for a float the way Python's `Fraction(fps)` + `limit_denominator` would keep
    /// common rates exact (24, 25, 29.97 = 30000/1001 ...).
    pub fn from_f64(fps: f64) -> Self {
        let mut best = (fps.round().max(1.0) as u32, 1u32);
        let mut best_err = (fps - best.0 as f64).abs();
        for den in [1u32, 2, 4, 5, 8, 10, 100, 1000, 1001] {
            let num = (fps * den as f64).round();
            if num < 1.0 || num > u32::MAX as f64 {
                continue;
            }
            let err = (fps - num / den as f64).abs();
            if err < best_err - 1e-12 {
                best = (num as u32, den);
                best_err = err;
            }
        }
        Self {
            num: best.0,
            den: best.1,
        }
    }

    /// As a float.
    pub fn as_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

/// A `VIDEO` value (`comfy_api` `VideoInput`).
pub enum Video {
    /// Frames in memory (`VideoFromComponents`).
    Components {
        /// `[N, H, W, C]` frames in 0..1.
        images: Tensor,
        /// The soundtrack, if any.
        audio: Option<Audio>,
        /// Frames per second.
        frame_rate: FrameRate,
    },
    /// A file on disk (`VideoFromFile`), decoded when needed.
    File {
        /// The file.
        path: std::path::PathBuf,
    },
}

impl Video {
    fn approx_bytes(&self) -> usize {
        match self {
            Video::Components { images, audio, .. } => {
                tensor_bytes(images) + audio.as_ref().map_or(0, |a| tensor_bytes(&a.waveform))
            }
            Video::File { .. } => 64,
        }
    }

    fn describe(&self) -> String {
        match self {
            Video::Components {
                images,
                audio,
                frame_rate,
            } => format!(
                "{} frames {:?} @ {}/{} fps{}",
                images.dims().first().copied().unwrap_or(0),
                images.dims(),
                frame_rate.num,
                frame_rate.den,
                if audio.is_some() { " + audio" } else { "" }
            ),
            Video::File { path } => path.display().to_string(),
        }
    }
}
