//! `Embeddings1DConnector`: the small 1-D transformer that turns LTX-2's text features into the
//! video or the audio context (`model.diffusion_model.{video,audio}_embeddings_connector.*`).
//!
//! Padded positions are replaced by learnable registers (valid tokens first, then
//! `learnable_registers[i % R]` at every later position `i`), so every output token is valid;
//! then `transformer_1d_blocks` (pre-RMS-norm self-attention with q/k RMS norms and 1-D RoPE,
//! pre-RMS-norm GELU feed-forward) and a final parameter-free RMS norm.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use serde::Deserialize;

use crate::gemma3::attention::attention_probs_matmul;
use crate::{Error, Result};

/// Epsilon of every RMS norm in the connector (ltx-core's default).
const NORM_EPS: f64 = 1e-6;
/// RoPE base of the connectors; ltx-core never passes another value.
const ROPE_THETA: f64 = 10_000.0;
/// ltx-core's default register count, used when the metadata does not say.
const DEFAULT_REGISTERS: usize = 128;
/// Width multiplier of the feed-forward (ltx-core's `FeedForward` default).
const FF_MULT: usize = 4;

/// How RoPE pairs the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeType {
    /// Adjacent channels `(2i, 2i+1)` over the whole inner dimension.
    Interleaved,
    /// Per head, channel `i` with `i + head_dim/2`.
    Split,
}

/// Hyper-parameters of one connector.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of one head; heads x head_dim is the feature width.
    pub attention_head_dim: usize,
    /// Number of `transformer_1d_blocks`.
    pub num_layers: usize,
    /// Positions are divided by these before RoPE (one entry: 1-D positions).
    pub positional_embedding_max_pos: Vec<f64>,
    /// Channel pairing of RoPE.
    pub rope_type: RopeType,
    /// Frequencies computed in float64 (`frequencies_precision: "float64"`).
    pub double_precision_rope: bool,
    /// Number of learnable registers.
    pub num_learnable_registers: usize,
}

/// The connector keys of the checkpoint's metadata `transformer` section (ltx-core's
/// `Embeddings1DConnectorConfigurator` / `AudioEmbeddings1DConnectorConfigurator` defaults).
#[derive(Debug, Clone, Deserialize)]
struct MetadataKeys {
    #[serde(default = "default_heads")]
    connector_num_attention_heads: usize,
    #[serde(default = "default_head_dim")]
    connector_attention_head_dim: usize,
    #[serde(default = "default_layers")]
    connector_num_layers: usize,
    audio_connector_num_attention_heads: Option<usize>,
    audio_connector_attention_head_dim: Option<usize>,
    audio_connector_num_layers: Option<usize>,
    #[serde(default = "default_max_pos")]
    connector_positional_embedding_max_pos: Vec<f64>,
    #[serde(default = "default_rope_type")]
    rope_type: RopeType,
    #[serde(default)]
    frequencies_precision: Option<serde_json::Value>,
    #[serde(default)]
    connector_num_learnable_registers: Option<usize>,
    #[serde(default)]
    connector_apply_gated_attention: bool,
}

fn default_heads() -> usize {
    30
}
fn default_head_dim() -> usize {
    128
}
fn default_layers() -> usize {
    2
}
fn default_max_pos() -> Vec<f64> {
    vec![1.0]
}
fn default_rope_type() -> RopeType {
    RopeType::Interleaved
}

impl ConnectorConfig {
    /// The video connector's config from the metadata `transformer` section.
    pub fn video_from_metadata(transformer: &serde_json::Value) -> Result<Self> {
        let keys = MetadataKeys::parse(transformer)?;
        Ok(keys.config(
            keys.connector_num_attention_heads,
            keys.connector_attention_head_dim,
            keys.connector_num_layers,
        ))
    }

    /// The audio connector's config: `audio_connector_*` keys, falling back to the video ones.
    pub fn audio_from_metadata(transformer: &serde_json::Value) -> Result<Self> {
        let keys = MetadataKeys::parse(transformer)?;
        Ok(keys.config(
            keys.audio_connector_num_attention_heads
                .unwrap_or(keys.connector_num_attention_heads),
            keys.audio_connector_attention_head_dim
                .unwrap_or(keys.connector_attention_head_dim),
            keys.audio_connector_num_layers
                .unwrap_or(keys.connector_num_layers),
        ))
    }

    /// Feature width (`heads * head_dim`).
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }
}

impl MetadataKeys {
    fn parse(transformer: &serde_json::Value) -> Result<Self> {
        let keys: Self = serde_json::from_value(transformer.clone())
            .map_err(|e| Error::Config(format!("embeddings connector: {e}")))?;
        if keys.connector_apply_gated_attention {
            return Err(Error::Config(
                "embeddings connector: gated attention (LTX-2.3) is not supported".into(),
            ));
        }
        if keys.connector_positional_embedding_max_pos.len() != 1 {
            return Err(Error::Config(format!(
                "embeddings connector: positions are 1-D, got max_pos {:?}",
                keys.connector_positional_embedding_max_pos
            )));
        }
        Ok(keys)
    }

    fn config(&self, heads: usize, head_dim: usize, layers: usize) -> ConnectorConfig {
        ConnectorConfig {
            num_attention_heads: heads,
            attention_head_dim: head_dim,
            num_layers: layers,
            positional_embedding_max_pos: self.connector_positional_embedding_max_pos.clone(),
            rope_type: self.rope_type,
            double_precision_rope: self.frequencies_precision.as_ref().and_then(|v| v.as_str())
                == Some("float64"),
            num_learnable_registers: self
                .connector_num_learnable_registers
                .unwrap_or(DEFAULT_REGISTERS),
        }
    }
}

/// Parameter-free RMS norm over the last dimension, computed in float32.
fn rms_norm(x: &Tensor) -> Result<Tensor> {
    let dim = x.dim(candle_core::D::Minus1)?;
    let ones = Tensor::ones(dim, DType::F32, x.device())?;
    let x32 = x.to_dtype(DType::F32)?.contiguous()?;
    Ok(candle_nn::ops::rms_norm(&x32, &ones, NORM_EPS as f32)?.to_dtype(x.dtype())?)
}

/// `torch.nn.RMSNorm` with a weight: normalised in float32, cast back, then scaled.
#[derive(Debug, Clone)]
struct WeightedRmsNorm {
    weight: Tensor,
}

impl WeightedRmsNorm {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(rms_norm(x)?.broadcast_mul(&self.weight)?)
    }
}

/// ltx-core's log-spaced frequency grid `theta^linspace(0, 1, n) * pi/2`, `n = inner/2`: numpy in
/// float64 (`generate_freq_grid_np`, bit-exact), or torch in float32 (`generate_freq_grid_pytorch`;
/// torch's vectorised `linspace`/`pow` round differently, so a few entries differ by some ulps).
/// LTX-2 checkpoints select float64 (`frequencies_precision: "float64"`).
fn frequency_grid(n: usize, double_precision: bool) -> Vec<f32> {
    if double_precision {
        let step = 1.0 / (n as f64 - 1.0);
        (0..n)
            .map(|j| {
                let y = if j + 1 == n { 1.0 } else { j as f64 * step };
                (ROPE_THETA.powf(y) * std::f64::consts::PI / 2.0) as f32
            })
            .collect()
    } else {
        // torch.linspace in float32 fills the first half from the start, the rest from the end.
        let step = 1.0f32 / (n as f32 - 1.0);
        (0..n)
            .map(|j| {
                let y = if j < n / 2 {
                    j as f32 * step
                } else {
                    1.0 - step * (n - 1 - j) as f32
                };
                (ROPE_THETA as f32).powf(y) * std::f32::consts::PI / 2.0
            })
            .collect()
    }
}

/// Frequencies `[T, inner/2]` of LTX's 1-D RoPE for positions `0..seq_len`, as ltx-core's
/// `precompute_freqs_cis`: the grid scaled by `2 * position / max_pos - 1` in float32.
fn rope_freqs(cfg: &ConnectorConfig, seq_len: usize) -> Vec<f32> {
    let grid = frequency_grid(cfg.inner_dim() / 2, cfg.double_precision_rope);
    let max_pos = cfg.positional_embedding_max_pos[0] as f32;
    let mut freqs = Vec::with_capacity(seq_len * grid.len());
    for t in 0..seq_len {
        let scale = (t as f32 / max_pos) * 2.0 - 1.0;
        freqs.extend(grid.iter().map(|g| g * scale));
    }
    freqs
}

/// Cosine/sine tables laid out for candle's RoPE kernels.
#[derive(Debug, Clone)]
struct ConnectorRope {
    cos: Tensor,
    sin: Tensor,
    rope_type: RopeType,
}

impl ConnectorRope {
    fn new(cfg: &ConnectorConfig, seq_len: usize, dtype: DType, device: &Device) -> Result<Self> {
        let half = cfg.inner_dim() / 2;
        let freqs = Tensor::from_vec(rope_freqs(cfg, seq_len), (seq_len, half), device)?;
        let layout = |t: Tensor| -> Result<Tensor> {
            let t = t.to_dtype(dtype)?;
            Ok(match cfg.rope_type {
                // [H, T, head_dim/2]
                RopeType::Split => t
                    .reshape((seq_len, cfg.num_attention_heads, cfg.attention_head_dim / 2))?
                    .transpose(0, 1)?
                    .contiguous()?,
                RopeType::Interleaved => t,
            })
        };
        Ok(Self {
            cos: layout(freqs.cos()?)?,
            sin: layout(freqs.sin()?)?,
            rope_type: cfg.rope_type,
        })
    }

    /// Rotates `x` `[B, T, inner]`.
    fn apply(&self, x: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, t, inner) = x.dims3()?;
        match self.rope_type {
            RopeType::Interleaved => {
                let x = x.reshape((b, 1, t, inner))?.contiguous()?;
                Ok(candle_nn::rotary_emb::rope_i(&x, &self.cos, &self.sin)?
                    .reshape((b, t, inner))?)
            }
            RopeType::Split => {
                let d = inner / heads;
                let x = x
                    .reshape((b, t, heads, d))?
                    .transpose(1, 2)?
                    .reshape((b * heads, 1, t, d))?
                    .contiguous()?;
                let cos = self.cos.broadcast_left(b)?.reshape((b * heads, t, d / 2))?;
                let sin = self.sin.broadcast_left(b)?.reshape((b * heads, t, d / 2))?;
                let y = candle_nn::rotary_emb::rope(&x, &cos.contiguous()?, &sin.contiguous()?)?;
                Ok(y.reshape((b, heads, t, d))?
                    .transpose(1, 2)?
                    .reshape((b, t, inner))?)
            }
        }
    }
}

/// Self-attention of a connector block (`attn1.*`).
#[derive(Debug, Clone)]
struct ConnectorAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    q_norm: WeightedRmsNorm,
    k_norm: WeightedRmsNorm,
    heads: usize,
    head_dim: usize,
}

impl ConnectorAttention {
    fn new(cfg: &ConnectorConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.inner_dim();
        Ok(Self {
            to_q: candle_nn::linear(dim, dim, vb.pp("to_q"))?,
            to_k: candle_nn::linear(dim, dim, vb.pp("to_k"))?,
            to_v: candle_nn::linear(dim, dim, vb.pp("to_v"))?,
            to_out: candle_nn::linear(dim, dim, vb.pp("to_out.0"))?,
            q_norm: WeightedRmsNorm::new(dim, vb.pp("q_norm"))?,
            k_norm: WeightedRmsNorm::new(dim, vb.pp("k_norm"))?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
        })
    }

    fn forward(&self, x: &Tensor, rope: &ConnectorRope) -> Result<Tensor> {
        let (b, t, inner) = x.dims3()?;
        let q = rope.apply(&self.q_norm.forward(&self.to_q.forward(x)?)?, self.heads)?;
        let k = rope.apply(&self.k_norm.forward(&self.to_k.forward(x)?)?, self.heads)?;
        let v = self.to_v.forward(x)?;
        let split = |x: Tensor| -> Result<Tensor> {
            Ok(x.reshape((b, t, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let out = attention_probs_matmul(&split(q)?, &split(k)?, &split(v)?, scale, None, None)?;
        let out = out.transpose(1, 2)?.reshape((b, t, inner))?;
        Ok(self.to_out.forward(&out)?)
    }
}

/// GELU (tanh) feed-forward (`ff.net.0.proj`, `ff.net.2`).
#[derive(Debug, Clone)]
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj_in: candle_nn::linear(dim, dim * FF_MULT, vb.pp("net.0.proj"))?,
            proj_out: candle_nn::linear(dim * FF_MULT, dim, vb.pp("net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.proj_out.forward(&self.proj_in.forward(x)?.gelu()?)?)
    }
}

/// One `transformer_1d_blocks.N`.
#[derive(Debug, Clone)]
struct Block1D {
    attn1: ConnectorAttention,
    ff: FeedForward,
}

impl Block1D {
    fn new(cfg: &ConnectorConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attn1: ConnectorAttention::new(cfg, vb.pp("attn1"))?,
            ff: FeedForward::new(cfg.inner_dim(), vb.pp("ff"))?,
        })
    }

    fn forward(&self, x: &Tensor, rope: &ConnectorRope) -> Result<Tensor> {
        let x = (x + self.attn1.forward(&rms_norm(x)?, rope)?)?;
        Ok((&x + self.ff.forward(&rms_norm(&x)?)?)?)
    }
}

/// One embeddings connector (video or audio).
#[derive(Debug, Clone)]
pub struct Embeddings1DConnector {
    blocks: Vec<Block1D>,
    learnable_registers: Tensor,
    cfg: ConnectorConfig,
}

impl Embeddings1DConnector {
    /// Loads `transformer_1d_blocks.N.*` and `learnable_registers` under `vb`.
    pub fn new(cfg: &ConnectorConfig, vb: VarBuilder) -> Result<Self> {
        if !cfg.attention_head_dim.is_multiple_of(2)
            || cfg.num_learnable_registers == 0
            || cfg.positional_embedding_max_pos.len() != 1
        {
            return Err(Error::Config(format!(
                "embeddings connector: head_dim {} must be even, registers {} positive and \
                 max_pos {:?} one-dimensional",
                cfg.attention_head_dim,
                cfg.num_learnable_registers,
                cfg.positional_embedding_max_pos
            )));
        }
        let blocks = (0..cfg.num_layers)
            .map(|i| Block1D::new(cfg, vb.pp(format!("transformer_1d_blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let learnable_registers = vb.get(
            (cfg.num_learnable_registers, cfg.inner_dim()),
            "learnable_registers",
        )?;
        Ok(Self {
            blocks,
            learnable_registers,
            cfg: cfg.clone(),
        })
    }

    /// The connector's config.
    pub fn config(&self) -> &ConnectorConfig {
        &self.cfg
    }

    /// `features` `[B, T, inner]` with `mask` `[B, T]` (non-zero = valid) -> `[B, T, inner]`, every
    /// position valid. `T` must be a multiple of the register count (ltx-core's requirement).
    /// Runs in the dtype of the connector's weights (features are cast to it).
    pub fn forward(&self, features: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let features = features.to_dtype(self.learnable_registers.dtype())?;
        let x = self.replace_padding_with_registers(&features, mask)?;
        let rope = ConnectorRope::new(&self.cfg, x.dim(1)?, x.dtype(), x.device())?;
        let mut x = x;
        for block in &self.blocks {
            x = block.forward(&x, &rope)?;
        }
        rms_norm(&x)
    }

    /// Moves each sequence's valid tokens to the front (in order) and fills the rest with the
    /// tiled registers, as ltx-core does for left-padded prompts.
    fn replace_padding_with_registers(&self, features: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, _) = features.dims3()?;
        let registers = self.cfg.num_learnable_registers;
        if !seq_len.is_multiple_of(registers) {
            return Err(Error::Input(format!(
                "sequence length {seq_len} is not a multiple of the {registers} learnable registers"
            )));
        }
        let tiled = self.learnable_registers.repeat((seq_len / registers, 1))?;
        let mask = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let rows = (0..batch)
            .map(|b| {
                let valid: Vec<u32> = (0..seq_len as u32)
                    .filter(|&t| mask[b][t as usize] != 0.0)
                    .collect();
                let n = valid.len();
                let index = Tensor::from_vec(valid, n, features.device())?;
                let tokens = features.get(b)?.index_select(&index, 0)?;
                let fill = tiled.narrow(0, n, seq_len - n)?;
                Ok(Tensor::cat(&[&tokens, &fill], 0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_grid_spans_pi_half_to_theta_pi_half() {
        for double in [true, false] {
            let g = frequency_grid(32, double);
            assert_eq!(g.len(), 32);
            assert_eq!(g[0], std::f32::consts::FRAC_PI_2);
            let last = (ROPE_THETA * std::f64::consts::FRAC_PI_2) as f32;
            assert!((g[31] - last).abs() <= last * 1e-6);
            assert!(g.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn config_from_metadata_falls_back_to_video_keys() {
        let meta = serde_json::json!({
            "connector_num_attention_heads": 2, "connector_attention_head_dim": 32,
            "connector_num_layers": 3, "audio_connector_num_layers": 1,
            "connector_positional_embedding_max_pos": [4096], "rope_type": "split",
            "frequencies_precision": "float64"
        });
        let video = ConnectorConfig::video_from_metadata(&meta).unwrap();
        let audio = ConnectorConfig::audio_from_metadata(&meta).unwrap();
        assert_eq!((video.inner_dim(), video.num_layers), (64, 3));
        assert_eq!((audio.inner_dim(), audio.num_layers), (64, 1));
        assert!(video.double_precision_rope && video.rope_type == RopeType::Split);
        assert_eq!(video.num_learnable_registers, DEFAULT_REGISTERS);
        let gated = serde_json::json!({"connector_apply_gated_attention": true});
        assert!(ConnectorConfig::video_from_metadata(&gated).is_err());
    }
}
