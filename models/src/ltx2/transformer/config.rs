//! The transformer's configuration, read from the checkpoint metadata `config.transformer`.
//!
//! Defaults are exactly those of ltx-core 1.0.0's `LTXModelConfigurator` (`config.get(key,
//! default)`); keys it reads without a default (`caption_channels`) are required. Unknown keys are
//! ignored. ltx-core also asserts a list of fixed structural values (`check_config_value`); we
//! check those only when present, and reject the LTX-2.3 switches we do not implement.

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::CheckpointHeader;
use crate::{Error, Result};

/// Name prefix of the transformer's tensors in the official single-file checkpoint (without the
/// trailing dot, as `VarBuilder::pp` takes it).
pub const CHECKPOINT_PREFIX: &str = "model.diffusion_model";

/// How rotary embeddings pair the channels of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeType {
    /// Channel pairs (2i, 2i+1) rotate together (ltx-core's default).
    Interleaved,
    /// Channel i rotates with channel i + head_dim/2 (LTX-2 19B).
    Split,
}

/// Configuration of the audio+video transformer (`LTXModel`, AudioVideo variant).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TransformerConfig {
    /// Video attention heads.
    #[serde(default = "defaults::heads")]
    pub num_attention_heads: usize,
    /// Video head width.
    #[serde(default = "defaults::video_head_dim")]
    pub attention_head_dim: usize,
    /// Video latent channels per token (input of `patchify_proj`).
    #[serde(default = "defaults::channels")]
    pub in_channels: usize,
    /// Video velocity channels per token (output of `proj_out`).
    #[serde(default = "defaults::channels")]
    pub out_channels: usize,
    /// Number of dual-stream blocks.
    #[serde(default = "defaults::layers")]
    pub num_layers: usize,
    /// Width of the video text context seen by `attn2` (after the caption projection).
    #[serde(default = "defaults::cross_attention_dim")]
    pub cross_attention_dim: usize,
    /// Epsilon of every RMS norm and of the output layer norm.
    #[serde(default = "defaults::norm_eps")]
    pub norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "defaults::theta")]
    pub positional_embedding_theta: f64,
    /// RoPE normalisation per video axis (time in seconds, height and width in pixels).
    #[serde(default = "defaults::video_max_pos")]
    pub positional_embedding_max_pos: Vec<f64>,
    /// Factor applied to sigma before the timestep embedding.
    #[serde(default = "defaults::timestep_scale")]
    pub timestep_scale_multiplier: f64,
    /// Whether RoPE uses the middle of each token's [start, end) bounds (else the start).
    #[serde(default = "defaults::yes")]
    pub use_middle_indices_grid: bool,
    /// Audio attention heads.
    #[serde(default = "defaults::heads")]
    pub audio_num_attention_heads: usize,
    /// Audio head width.
    #[serde(default = "defaults::audio_head_dim")]
    pub audio_attention_head_dim: usize,
    /// Audio latent channels per token (latent channels x mel bins).
    #[serde(default = "defaults::channels")]
    pub audio_in_channels: usize,
    /// Audio velocity channels per token.
    #[serde(default = "defaults::channels")]
    pub audio_out_channels: usize,
    /// Width of the audio text context and of the audio<->video cross-attention RoPE.
    #[serde(default = "defaults::audio_cross_attention_dim")]
    pub audio_cross_attention_dim: usize,
    /// RoPE normalisation of the audio time axis (seconds).
    #[serde(default = "defaults::audio_max_pos")]
    pub audio_positional_embedding_max_pos: Vec<f64>,
    /// Factor of the A/V cross-attention gate timestep (relative to `timestep_scale_multiplier`).
    #[serde(default = "defaults::av_ca_timestep_scale")]
    pub av_ca_timestep_scale_multiplier: f64,
    /// RoPE channel pairing.
    #[serde(default = "defaults::rope_type")]
    pub rope_type: RopeType,
    /// `"float64"` computes the RoPE frequency grid in double precision (19B); anything else,
    /// or absent, in single precision.
    #[serde(default)]
    pub frequencies_precision: Option<String>,
    /// Width of the text features entering the caption projections (Gemma hidden size).
    pub caption_channels: usize,
    /// Whether video RoPE time starts are shifted for the causal VAE's first frame. ltx-core
    /// always applies this fix; ComfyUI reads this key. Used by the position helpers only.
    #[serde(default = "defaults::yes")]
    pub causal_temporal_positioning: bool,
    /// LTX-2.3 per-head attention gates (not supported).
    #[serde(default)]
    pub apply_gated_attention: bool,
    /// LTX-2.3 AdaLN on the text cross-attention (not supported).
    #[serde(default)]
    pub cross_attention_adaln: bool,
    /// LTX-2.3: caption projection lives in the text encoder (not supported).
    #[serde(default)]
    pub caption_proj_before_connector: bool,
    /// Every other key of the section (checked by [`TransformerConfig::validate`], else ignored).
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

mod defaults {
    use super::RopeType;
    pub fn heads() -> usize {
        32
    }
    pub fn video_head_dim() -> usize {
        128
    }
    pub fn audio_head_dim() -> usize {
        64
    }
    pub fn channels() -> usize {
        128
    }
    pub fn layers() -> usize {
        48
    }
    pub fn cross_attention_dim() -> usize {
        4096
    }
    pub fn audio_cross_attention_dim() -> usize {
        2048
    }
    pub fn norm_eps() -> f64 {
        1e-6
    }
    pub fn theta() -> f64 {
        10000.0
    }
    pub fn video_max_pos() -> Vec<f64> {
        vec![20.0, 2048.0, 2048.0]
    }
    pub fn audio_max_pos() -> Vec<f64> {
        vec![20.0]
    }
    pub fn timestep_scale() -> f64 {
        1000.0
    }
    pub fn av_ca_timestep_scale() -> f64 {
        1.0
    }
    pub fn rope_type() -> RopeType {
        RopeType::Interleaved
    }
    pub fn yes() -> bool {
        true
    }
}

/// Structural values ltx-core asserts; a checkpoint stating another value needs code we lack.
const FIXED_VALUES: &[(&str, FixedValue)] = &[
    ("dropout", FixedValue::Number(0.0)),
    ("attention_bias", FixedValue::Bool(true)),
    ("activation_fn", FixedValue::Str("gelu-approximate")),
    ("use_linear_projection", FixedValue::Bool(false)),
    ("only_cross_attention", FixedValue::Bool(false)),
    ("cross_attention_norm", FixedValue::Bool(true)),
    ("double_self_attention", FixedValue::Bool(false)),
    ("upcast_attention", FixedValue::Bool(false)),
    ("standardization_norm", FixedValue::Str("rms_norm")),
    ("norm_elementwise_affine", FixedValue::Bool(false)),
    ("qk_norm", FixedValue::Str("rms_norm")),
    ("positional_embedding_type", FixedValue::Str("rope")),
    ("use_audio_video_cross_attention", FixedValue::Bool(true)),
    ("share_ff", FixedValue::Bool(false)),
    ("av_cross_ada_norm", FixedValue::Bool(true)),
];

enum FixedValue {
    Number(f64),
    Bool(bool),
    Str(&'static str),
}

impl FixedValue {
    fn matches(&self, v: &Value) -> bool {
        match self {
            FixedValue::Number(n) => v.as_f64() == Some(*n),
            FixedValue::Bool(b) => v.as_bool() == Some(*b),
            FixedValue::Str(s) => v.as_str() == Some(*s),
        }
    }
}

impl TransformerConfig {
    /// Reads and validates `config.transformer` from a checkpoint header.
    pub fn from_header(header: &CheckpointHeader) -> Result<Self> {
        let cfg: Self = header.config_section("transformer")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates a `transformer` section given as JSON.
    pub fn from_json(section: &Value) -> Result<Self> {
        let cfg: Self = serde_json::from_value(section.clone())
            .map_err(|e| Error::Config(format!("transformer config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects values this implementation cannot honour.
    pub fn validate(&self) -> Result<()> {
        for (key, expected) in FIXED_VALUES {
            if let Some(v) = self.other.get(*key)
                && !expected.matches(v)
            {
                return Err(Error::Config(format!(
                    "transformer config: {key} = {v} is not supported"
                )));
            }
        }
        let unsupported = [
            ("apply_gated_attention", self.apply_gated_attention),
            ("cross_attention_adaln", self.cross_attention_adaln),
            (
                "caption_proj_before_connector",
                self.caption_proj_before_connector,
            ),
        ];
        for (key, on) in unsupported {
            if on {
                return Err(Error::Config(format!(
                    "transformer config: {key} (LTX-2.3) is not supported"
                )));
            }
        }
        if self.positional_embedding_max_pos.is_empty()
            || self.audio_positional_embedding_max_pos.is_empty()
        {
            return Err(Error::Config(
                "transformer config: empty positional_embedding_max_pos".into(),
            ));
        }
        Ok(())
    }

    /// Width of the video stream (`heads x head_dim`).
    pub fn video_inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Width of the audio stream.
    pub fn audio_inner_dim(&self) -> usize {
        self.audio_num_attention_heads * self.audio_attention_head_dim
    }

    /// Whether the RoPE frequency grid is computed in double precision.
    pub fn double_precision_rope(&self) -> bool {
        self.frequencies_precision.as_deref() == Some("float64")
    }

    /// RoPE normalisation of the shared time axis used by the audio<->video cross-attention.
    pub fn cross_pe_max_pos(&self) -> f64 {
        self.positional_embedding_max_pos[0].max(self.audio_positional_embedding_max_pos[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tiny_checkpoint_config() {
        let header =
            CheckpointHeader::read(&crate::parity::model_path("ltx2-tiny.safetensors")).unwrap();
        let cfg = TransformerConfig::from_header(&header).unwrap();
        let raw = header.config().unwrap()["transformer"].clone();
        assert_eq!(cfg.num_layers as u64, raw["num_layers"].as_u64().unwrap());
        assert_eq!(cfg.rope_type, RopeType::Split);
        assert!(cfg.double_precision_rope());
        assert_eq!(
            cfg.caption_channels as u64,
            raw["caption_channels"].as_u64().unwrap()
        );
    }

    #[test]
    fn applies_ltx_core_defaults_and_ignores_unknown_keys() {
        let cfg = TransformerConfig::from_json(&serde_json::json!({
            "caption_channels": 3840, "some_future_key": [1, 2]
        }))
        .unwrap();
        assert_eq!(cfg.num_layers, 48);
        assert_eq!(cfg.video_inner_dim(), 4096);
        assert_eq!(cfg.audio_inner_dim(), 2048);
        assert_eq!(cfg.rope_type, RopeType::Interleaved);
        assert!(!cfg.double_precision_rope());
        assert_eq!(cfg.av_ca_timestep_scale_multiplier, 1.0);
    }

    #[test]
    fn rejects_missing_caption_channels_and_unsupported_values() {
        assert!(TransformerConfig::from_json(&serde_json::json!({})).is_err());
        let bad = serde_json::json!({"caption_channels": 8, "qk_norm": "layer_norm"});
        assert!(TransformerConfig::from_json(&bad).is_err());
        let gated = serde_json::json!({"caption_channels": 8, "apply_gated_attention": true});
        assert!(TransformerConfig::from_json(&gated).is_err());
        let ok = serde_json::json!({"caption_channels": 8, "dropout": 0, "qk_norm": "rms_norm"});
        assert!(TransformerConfig::from_json(&ok).is_ok());
    }
}
