//! The model-side values of the LTX-2 nodes: `MODEL`, `CLIP`, `VAE`, `CONDITIONING` and
//! `LATENT_UPSCALE_MODEL`, carried between nodes as [`crate::Object`]s.
//!
//! Model values are light handles (which file, which part of it, parsed config, LoRAs to apply):
//! the weights live in the [`crate::model_cache::ModelCache`] and are loaded by the nodes that
//! need them ([`super::models`]), so the output cache never pins a model in memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Tensor;
use models::gemma3::Gemma3TextConfig;
use models::ltx2::audio_vae::Config as AudioVaeConfig;
use models::ltx2::text::TextProcessorConfig;
use models::ltx2::transformer::TransformerConfig;
use models::ltx2::upsampler::UpsamplerConfig;
use models::ltx2::video_vae::VaeConfig;

use crate::value::Json;
use crate::{Inputs, NodeError, Object, Value};

/// ComfyUI type names.
pub const MODEL: &str = "MODEL";
/// `CLIP`.
pub const CLIP: &str = "CLIP";
/// `VAE`.
pub const VAE: &str = "VAE";
/// `CONDITIONING`.
pub const CONDITIONING: &str = "CONDITIONING";
/// `LATENT_UPSCALE_MODEL`.
pub const LATENT_UPSCALE_MODEL: &str = "LATENT_UPSCALE_MODEL";

/// The `model_sampling` shift of LTX-2 models (`supported_models.LTXAV.sampling_settings`).
pub const LTXAV_SHIFT: f64 = 2.37;

/// Where an LTX-2 transformer's weights are.
#[derive(Debug, Clone)]
pub struct TransformerSource {
    /// The file.
    pub path: PathBuf,
    /// Key prefix of the transformer in it (`model.diffusion_model` in single files).
    pub prefix: String,
    /// Its configuration.
    pub config: TransformerConfig,
}

/// One LoRA applied to a model.
#[derive(Debug, Clone)]
pub struct LoraRef {
    /// The file.
    pub path: PathBuf,
    /// The name it was chosen by.
    pub name: String,
    /// `strength_model`.
    pub strength: f64,
}

/// A `MODEL`: an LTX-2 audio-video transformer, its LoRAs and its sampling settings.
#[derive(Debug, Clone)]
pub struct LtxModel {
    /// The base weights.
    pub source: TransformerSource,
    /// LoRAs in application order.
    pub loras: Vec<LoraRef>,
    /// `model_sampling` shift (used by model-aware schedulers only).
    pub shift: f64,
}

impl LtxModel {
    /// Wraps the model as a `MODEL` value.
    pub fn into_value(self) -> Value {
        let text = format!(
            "LTXAV {} ({} LoRA)",
            file_name(&self.source.path),
            self.loras.len()
        );
        Value::Object(Object::new(MODEL, Arc::new(self), text))
    }
}

/// A `CLIP` for LTX-2: the Gemma 3 text encoder plus the projection and connectors of an LTX-2
/// checkpoint.
#[derive(Debug, Clone)]
pub struct TextEncoderSource {
    /// The Gemma file (ComfyUI single file) or folder.
    pub gemma: PathBuf,
    /// The file holding `text_embedding_projection.*` and the embeddings connectors.
    pub projection: PathBuf,
    /// Gemma's text config.
    pub gemma_config: Gemma3TextConfig,
    /// Projection and connector configuration.
    pub processor_config: TextProcessorConfig,
    /// Run on the CPU regardless of the worker's device (`device: "cpu"`).
    pub force_cpu: bool,
}

impl TextEncoderSource {
    /// Wraps it as a `CLIP` value.
    pub fn into_value(self) -> Value {
        let text = format!("LTXAV text encoder {}", file_name(&self.gemma));
        Value::Object(Object::new(CLIP, Arc::new(self), text))
    }
}

/// The video VAE part of a file.
#[derive(Debug, Clone)]
pub struct VideoVaeSource {
    /// The file.
    pub path: PathBuf,
    /// Key prefix (`vae` in single files, empty in bare VAE files).
    pub prefix: String,
    /// Its configuration.
    pub config: VaeConfig,
}

/// The audio VAE + vocoder part of a file.
#[derive(Debug, Clone)]
pub struct AudioVaeSource {
    /// The file.
    pub path: PathBuf,
    /// The metadata `config` (sections `audio_vae` and `vocoder`).
    pub checkpoint_config: Json,
    /// The parsed `audio_vae` section.
    pub config: AudioVaeConfig,
    /// Whether the file has the encoder.
    pub has_encoder: bool,
}

/// A `VAE`: ComfyUI uses one type for the video VAE and the audio VAE.
#[derive(Debug, Clone)]
pub enum Vae {
    /// The LTX-2 video VAE.
    Video(VideoVaeSource),
    /// The LTX-2 audio VAE with its vocoder.
    Audio(AudioVaeSource),
}

impl Vae {
    /// Wraps it as a `VAE` value.
    pub fn into_value(self) -> Value {
        let text = match &self {
            Vae::Video(v) => format!("LTX video VAE {}", file_name(&v.path)),
            Vae::Audio(a) => format!("LTX audio VAE {}", file_name(&a.path)),
        };
        Value::Object(Object::new(VAE, Arc::new(self), text))
    }

    /// The video VAE, or an error naming `node`.
    pub fn video(&self, node: &str) -> Result<&VideoVaeSource, NodeError> {
        match self {
            Vae::Video(v) => Ok(v),
            Vae::Audio(_) => Err(NodeError::Value(format!(
                "{node} needs a video VAE, got the audio VAE"
            ))),
        }
    }

    /// The audio VAE, or an error naming `node`.
    pub fn audio(&self, node: &str) -> Result<&AudioVaeSource, NodeError> {
        match self {
            Vae::Audio(a) => Ok(a),
            Vae::Video(_) => Err(NodeError::Value(format!(
                "{node} needs the audio VAE (LTXVAudioVAELoader), got a video VAE"
            ))),
        }
    }
}

/// A `LATENT_UPSCALE_MODEL`.
#[derive(Debug, Clone)]
pub struct UpscalerSource {
    /// The file.
    pub path: PathBuf,
    /// Its configuration.
    pub config: UpsamplerConfig,
}

impl UpscalerSource {
    /// Wraps it as a `LATENT_UPSCALE_MODEL` value.
    pub fn into_value(self) -> Value {
        let text = format!("latent upsampler {}", file_name(&self.path));
        Value::Object(Object::new(LATENT_UPSCALE_MODEL, Arc::new(self), text))
    }
}

/// One guide appended by `LTXVAddGuide` (an entry of `guide_attention_entries`).
#[derive(Debug, Clone)]
pub struct GuideEntry {
    /// Guide tokens it appended.
    pub pre_filter_count: usize,
    /// Its strength.
    pub strength: f64,
    /// Optional pixel-space attention mask `[1, 1, F, H, W]`.
    pub pixel_mask: Option<Tensor>,
    /// Latent shape `[F, H, W]` of the guide.
    pub latent_shape: [usize; 3],
}

/// One `[tensor, dict]` entry of a `CONDITIONING` list.
#[derive(Debug, Clone)]
pub struct CondEntry {
    /// The text features `[1, L, D]` (for LTX-2: video and audio contexts side by side).
    pub cross_attn: Tensor,
    /// Width of the video context at the start of `cross_attn` (the rest is audio).
    pub video_width: usize,
    /// `frame_rate` (LTXVConditioning); the model uses 25 when absent.
    pub frame_rate: Option<f64>,
    /// `keyframe_idxs` `[1, 3, N, 2]` (LTXVAddGuide; `None` when absent or cleared).
    pub keyframe_idxs: Option<Tensor>,
    /// `guide_attention_entries` (LTXVAddGuide).
    pub guide_entries: Vec<GuideEntry>,
    /// Other dict keys, kept for completeness.
    pub extra: BTreeMap<String, Json>,
}

/// A `CONDITIONING`.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// The entries.
    pub entries: Vec<CondEntry>,
}

impl Conditioning {
    /// Wraps it as a `CONDITIONING` value (its tensors count against the output cache).
    pub fn into_value(self) -> Value {
        let bytes = self
            .entries
            .iter()
            .map(|e| e.cross_attn.elem_count() * e.cross_attn.dtype().size_in_bytes())
            .sum();
        let text = self
            .entries
            .first()
            .map(|e| format!("{} entries, {:?}", self.entries.len(), e.cross_attn.dims()))
            .unwrap_or_else(|| "empty".into());
        Value::Object(Object::new(CONDITIONING, Arc::new(self), text).with_bytes(bytes))
    }

    /// A copy with `f` applied to every entry (ComfyUI's `conditioning_set_values`).
    pub fn map(&self, f: impl Fn(&mut CondEntry)) -> Self {
        let mut out = self.clone();
        out.entries.iter_mut().for_each(f);
        out
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Typed accessors for the model-side inputs.
pub trait ModelInputs {
    /// A `MODEL` input.
    fn model(&self, name: &str) -> Result<Arc<LtxModel>, NodeError>;
    /// A `CLIP` input (ComfyUI's message when the checkpoint had none).
    fn clip(&self, name: &str) -> Result<Arc<TextEncoderSource>, NodeError>;
    /// A `VAE` input.
    fn vae(&self, name: &str) -> Result<Arc<Vae>, NodeError>;
    /// A `CONDITIONING` input.
    fn conditioning(&self, name: &str) -> Result<Arc<Conditioning>, NodeError>;
    /// A `LATENT_UPSCALE_MODEL` input.
    fn upscale_model(&self, name: &str) -> Result<Arc<UpscalerSource>, NodeError>;
    /// A number given to a `FLOAT,INT` input (a constant arrives as JSON).
    fn number(&self, name: &str) -> Result<f64, NodeError>;
}

impl ModelInputs for Inputs {
    fn model(&self, name: &str) -> Result<Arc<LtxModel>, NodeError> {
        self.object(name, MODEL)
    }

    fn clip(&self, name: &str) -> Result<Arc<TextEncoderSource>, NodeError> {
        match self.get(name) {
            Some(Value::Json(Json::Null)) => Err(NodeError::Runtime(
                "ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader \
                 node your checkpoint does not contain a valid clip or text encoder model."
                    .into(),
            )),
            _ => self.object(name, CLIP),
        }
    }

    fn vae(&self, name: &str) -> Result<Arc<Vae>, NodeError> {
        match self.get(name) {
            Some(Value::Json(Json::Null)) => Err(NodeError::Runtime(
                "ERROR: vae input is invalid: None\n\nIf the vae is from a checkpoint loader \
                 node your checkpoint does not contain a valid vae."
                    .into(),
            )),
            _ => self.object(name, VAE),
        }
    }

    fn conditioning(&self, name: &str) -> Result<Arc<Conditioning>, NodeError> {
        self.object(name, CONDITIONING)
    }

    fn upscale_model(&self, name: &str) -> Result<Arc<UpscalerSource>, NodeError> {
        self.object(name, LATENT_UPSCALE_MODEL)
    }

    fn number(&self, name: &str) -> Result<f64, NodeError> {
        match self.get(name) {
            Some(Value::Json(Json::Number(n))) => n
                .as_f64()
                .ok_or_else(|| NodeError::Value(format!("input '{name}' is not a number"))),
            _ => self.float(name),
        }
    }
}
