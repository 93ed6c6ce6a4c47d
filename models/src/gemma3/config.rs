//! Configuration of the Gemma 3 text model (the `text_config` of a Hugging Face `config.json`).
//!
//! Missing keys take the defaults of Hugging Face's `Gemma3TextConfig` (transformers 4.57), because
//! the published `google/gemma-3-12b-it` `config.json` only lists the values that differ from
//! them. [`Gemma3TextConfig::gemma3_12b`] is the full Gemma-3-12B text config, used for ComfyUI's
//! single-file `gemma_3_12B_it.safetensors`, which carries no config of its own.

use serde::Deserialize;

use crate::{Error, Result};

/// Whether a decoder layer attends within a sliding window or over the whole (causal) prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    /// Local layer: a query sees the keys in `(q - sliding_window, q]`.
    SlidingAttention,
    /// Global layer: a query sees every key up to itself.
    FullAttention,
}

/// The MLP activation (`hidden_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenActivation {
    /// GELU with the tanh approximation (Gemma's activation).
    GeluPytorchTanh,
    /// Exact (erf) GELU.
    Gelu,
}

/// RoPE scaling of the global layers (`rope_scaling`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeScaling {
    /// `"linear"` (positions divided by `factor`) or `"default"` (no scaling).
    pub rope_type: String,
    /// Linear scaling factor.
    #[serde(default = "one")]
    pub factor: f64,
}

/// Gemma 3 text model hyper-parameters. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Gemma3TextConfig {
    /// Vocabulary size (rows of `embed_tokens`).
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Model width.
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    /// MLP inner width.
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    /// Number of decoder layers.
    #[serde(default = "default_num_hidden_layers")]
    pub num_hidden_layers: usize,
    /// Query heads.
    #[serde(default = "default_num_attention_heads")]
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    #[serde(default = "default_num_key_value_heads")]
    pub num_key_value_heads: usize,
    /// Width of one head.
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// MLP activation.
    #[serde(default = "default_activation")]
    pub hidden_activation: HiddenActivation,
    /// Epsilon of every RMS norm.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base of the global layers.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// RoPE base of the local (sliding-window) layers (never scaled).
    #[serde(default = "default_rope_local_base_freq")]
    pub rope_local_base_freq: f64,
    /// RoPE scaling of the global layers.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` (not `head_dim^-0.5`).
    #[serde(default = "default_query_pre_attn_scalar")]
    pub query_pre_attn_scalar: f64,
    /// Window of the local layers.
    #[serde(default = "default_sliding_window")]
    pub sliding_window: usize,
    /// Older configs: every `n`-th layer is global. Used when `layer_types` is absent.
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// Per-layer attention type (newer configs).
    #[serde(default)]
    pub layer_types: Option<Vec<LayerType>>,
    /// Optional soft-capping of attention logits (`tanh(x / c) * c`); `null` in Gemma 3.
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// Whether q/k/v/o projections carry biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Bidirectional attention (Gemma-3-based embedding models); not supported here.
    #[serde(default)]
    pub use_bidirectional_attention: bool,
}

fn one() -> f64 {
    1.0
}
fn default_vocab_size() -> usize {
    262_208
}
fn default_hidden_size() -> usize {
    2304
}
fn default_intermediate_size() -> usize {
    9216
}
fn default_num_hidden_layers() -> usize {
    26
}
fn default_num_attention_heads() -> usize {
    8
}
fn default_num_key_value_heads() -> usize {
    4
}
fn default_head_dim() -> usize {
    256
}
fn default_activation() -> HiddenActivation {
    HiddenActivation::GeluPytorchTanh
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    1_000_000.0
}
fn default_rope_local_base_freq() -> f64 {
    10_000.0
}
fn default_query_pre_attn_scalar() -> f64 {
    256.0
}
fn default_sliding_window() -> usize {
    4096
}

/// Default of `sliding_window_pattern` in Hugging Face's `Gemma3TextConfig`.
const DEFAULT_SLIDING_WINDOW_PATTERN: usize = 6;

impl Gemma3TextConfig {
    /// The Gemma-3-12B text config (Hugging Face `google/gemma-3-12b-it`, identical to ltx-core's
    /// `GEMMA3_CONFIG_FOR_LTX.text_config`), for checkpoints that carry no config.
    pub fn gemma3_12b() -> Self {
        Self {
            vocab_size: 262_208,
            hidden_size: 3840,
            intermediate_size: 15_360,
            num_hidden_layers: 48,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 256,
            hidden_activation: HiddenActivation::GeluPytorchTanh,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_local_base_freq: 10_000.0,
            rope_scaling: Some(RopeScaling {
                rope_type: "linear".to_string(),
                factor: 8.0,
            }),
            query_pre_attn_scalar: 256.0,
            sliding_window: 1024,
            sliding_window_pattern: Some(6),
            layer_types: None,
            attn_logit_softcapping: None,
            attention_bias: false,
            use_bidirectional_attention: false,
        }
    }

    /// Parses a text config from JSON: either a `text_config` object itself, or a whole
    /// `Gemma3ForConditionalGeneration` config holding one under `text_config`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let text = value.get("text_config").unwrap_or(value);
        let cfg: Self = serde_json::from_value(text.clone())
            .map_err(|e| Error::Config(format!("gemma3 text config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads the text config from a Hugging Face `config.json`.
    pub fn from_config_file(path: &std::path::Path) -> Result<Self> {
        let raw = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let value: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::Config(format!("{}: not JSON: {e}", path.display())))?;
        Self::from_json(&value)
    }

    /// Checks the values this implementation relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(format!("gemma3 text config: {msg}")));
        if self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "{} query heads are not a multiple of {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} is odd", self.head_dim));
        }
        if let Some(types) = &self.layer_types
            && types.len() != self.num_hidden_layers
        {
            return bad(format!(
                "{} layer_types for {} layers",
                types.len(),
                self.num_hidden_layers
            ));
        }
        if self.sliding_window_pattern == Some(0) {
            return bad("sliding_window_pattern is 0".into());
        }
        if let Some(scaling) = &self.rope_scaling
            && !matches!(scaling.rope_type.as_str(), "linear" | "default")
        {
            return bad(format!("unsupported rope_type {:?}", scaling.rope_type));
        }
        if self.use_bidirectional_attention {
            return bad("bidirectional attention is not supported".into());
        }
        Ok(())
    }

    /// The attention type of layer `index`: `layer_types` when given, otherwise every
    /// `sliding_window_pattern`-th layer (1-based) is global.
    pub fn layer_type(&self, index: usize) -> LayerType {
        if let Some(types) = &self.layer_types {
            return types[index];
        }
        let pattern = self
            .sliding_window_pattern
            .unwrap_or(DEFAULT_SLIDING_WINDOW_PATTERN);
        if (index + 1).is_multiple_of(pattern) {
            LayerType::FullAttention
        } else {
            LayerType::SlidingAttention
        }
    }

    /// Linear RoPE scaling factor of the global layers (1 when unscaled).
    pub fn global_rope_factor(&self) -> f64 {
        match &self.rope_scaling {
            Some(s) if s.rope_type == "linear" => s.factor,
            _ => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_hf_config_takes_gemma3_defaults() {
        // The shape of google/gemma-3-12b-it's config.json: only non-default values are listed.
        let json = serde_json::json!({
            "model_type": "gemma3",
            "text_config": {
                "hidden_size": 3840, "intermediate_size": 15360, "model_type": "gemma3_text",
                "num_attention_heads": 16, "num_hidden_layers": 48, "num_key_value_heads": 8,
                "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024
            }
        });
        let cfg = Gemma3TextConfig::from_json(&json).unwrap();
        assert_eq!(
            cfg,
            Gemma3TextConfig::gemma3_12b().without_explicit_pattern()
        );
    }

    #[test]
    fn layer_pattern_marks_every_sixth_layer_global() {
        let cfg = Gemma3TextConfig::gemma3_12b();
        let globals: Vec<usize> = (0..cfg.num_hidden_layers)
            .filter(|&i| cfg.layer_type(i) == LayerType::FullAttention)
            .collect();
        assert_eq!(globals, vec![5, 11, 17, 23, 29, 35, 41, 47]);
    }

    #[test]
    fn rejects_unsupported_settings() {
        let json = serde_json::json!({"use_bidirectional_attention": true});
        assert!(Gemma3TextConfig::from_json(&json).is_err());
        let json = serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}});
        assert!(Gemma3TextConfig::from_json(&json).is_err());
        let json = serde_json::json!({"num_hidden_layers": 2, "layer_types": ["full_attention"]});
        assert!(Gemma3TextConfig::from_json(&json).is_err());
    }

    impl Gemma3TextConfig {
        fn without_explicit_pattern(mut self) -> Self {
            self.sliding_window_pattern = None;
            self
        }
    }
}
