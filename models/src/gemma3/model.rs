//! The Gemma 3 text decoder (`Gemma3TextModel`), returning every hidden state.
//!
//! Layout of the module tree (relative to the text model's prefix, e.g. `model.` in ComfyUI's
//! single file or `language_model.model.` in the Hugging Face folder): `embed_tokens`,
//! `layers.N.{input_layernorm, self_attn, post_attention_layernorm, pre_feedforward_layernorm,
//! mlp, post_feedforward_layernorm}`, `norm`.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, Linear, Module, VarBuilder};

use super::attention::{Attention, AttentionMask, RotaryTables};
use super::config::{Gemma3TextConfig, HiddenActivation, LayerType};
use crate::{Error, Result};

/// Gemma's RMS norm: `x / sqrt(mean(x^2) + eps) * (1 + weight)`, computed in float32 and cast
/// back to the input dtype (the checkpoint stores `weight` zero-centred).
#[derive(Debug, Clone)]
pub struct GemmaRmsNorm {
    scale: Tensor,
    eps: f64,
}

impl GemmaRmsNorm {
    /// Loads `weight` `[dim]` under `vb`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get(dim, "weight")?.to_dtype(DType::F32)?;
        Ok(Self {
            scale: (weight + 1.0)?,
            eps,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        let y = candle_nn::ops::rms_norm(&x32, &self.scale, self.eps as f32)?;
        Ok(y.to_dtype(x.dtype())?)
    }
}

/// The gated MLP: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    activation: HiddenActivation,
}

impl Mlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` under `vb`.
    pub fn new(cfg: &Gemma3TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: candle_nn::linear_no_bias(h, i, vb.pp("gate_proj"))?,
            up_proj: candle_nn::linear_no_bias(h, i, vb.pp("up_proj"))?,
            down_proj: candle_nn::linear_no_bias(i, h, vb.pp("down_proj"))?,
            activation: cfg.hidden_activation,
        })
    }

    /// `[.., hidden] -> [.., hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?;
        let gate = match self.activation {
            HiddenActivation::GeluPytorchTanh => gate.gelu()?,
            HiddenActivation::Gelu => gate.gelu_erf()?,
        };
        let hidden = (gate * self.up_proj.forward(x)?)?;
        Ok(self.down_proj.forward(&hidden)?)
    }
}

/// One decoder layer with Gemma 3's four norms (pre/post attention, pre/post MLP).
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    input_layernorm: GemmaRmsNorm,
    self_attn: Attention,
    post_attention_layernorm: GemmaRmsNorm,
    pre_feedforward_layernorm: GemmaRmsNorm,
    mlp: Mlp,
    post_feedforward_layernorm: GemmaRmsNorm,
}

impl DecoderLayer {
    /// Loads layer `layers.N` (`vb` already points at it).
    pub fn new(cfg: &Gemma3TextConfig, layer_type: LayerType, vb: VarBuilder) -> Result<Self> {
        let norm = |name: &str| GemmaRmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp(name));
        Ok(Self {
            input_layernorm: norm("input_layernorm")?,
            self_attn: Attention::new(cfg, layer_type, vb.pp("self_attn"))?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
        })
    }

    /// `[B, T, hidden] -> [B, T, hidden]`.
    pub fn forward(&self, x: &Tensor, rope: &RotaryTables, mask: &AttentionMask) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x)?;
        let h = self.self_attn.forward(&h, rope, mask)?;
        let x = (x + self.post_attention_layernorm.forward(&h)?)?;
        let h = self.pre_feedforward_layernorm.forward(&x)?;
        let h = self.mlp.forward(&h)?;
        Ok((x + self.post_feedforward_layernorm.forward(&h)?)?)
    }
}

/// The Gemma 3 text decoder without LM head.
#[derive(Debug, Clone)]
pub struct Gemma3TextModel {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: GemmaRmsNorm,
    cfg: Gemma3TextConfig,
    embed_scale: f64,
    dtype: DType,
    device: Device,
}

impl Gemma3TextModel {
    /// Builds the model from `vb` pointing at the text model's prefix (the level holding
    /// `embed_tokens`, `layers`, `norm`). Weights are cast to `vb`'s dtype.
    pub fn new(cfg: &Gemma3TextConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let embed_tokens =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, cfg.layer_type(i), vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = GemmaRmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            cfg: cfg.clone(),
            // Hugging Face keeps sqrt(hidden) as a float32 buffer cast to the weight dtype.
            embed_scale: f64::from((cfg.hidden_size as f64).sqrt() as f32),
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The model's config.
    pub fn config(&self) -> &Gemma3TextConfig {
        &self.cfg
    }

    /// The compute dtype (that of the weights).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the decoder on `input_ids` `[B, T]` (integer) with `attention_mask` `[B, T]`
    /// (non-zero = real token; padding may sit anywhere, LTX-2 pads on the left) and returns
    /// `num_hidden_layers + 1` hidden states `[B, T, hidden]`: the scaled embeddings, the output
    /// of every layer but the last, and the last layer's output after the final norm (as
    /// Hugging Face's `output_hidden_states`). Positions are `0..T` whatever the padding.
    pub fn forward_hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<Vec<Tensor>> {
        self.forward_hidden_states_at(input_ids, attention_mask, 0)
    }

    /// [`Self::forward_hidden_states`] for a window of a longer sequence whose first token sits
    /// at position `first_position` (RoPE positions `first_position..first_position + T`). Running
    /// only the valid suffix of a left-padded prompt this way gives its real tokens the same
    /// hidden states as the full run, since they never attend to padding.
    pub fn forward_hidden_states_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        first_position: usize,
    ) -> Result<Vec<Tensor>> {
        let (batch, seq_len) = input_ids.dims2()?;
        if attention_mask.dims() != [batch, seq_len] {
            return Err(Error::Input(format!(
                "attention mask {:?} does not match input ids {:?}",
                attention_mask.dims(),
                input_ids.dims()
            )));
        }
        let valid: Vec<Vec<bool>> = attention_mask
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?
            .into_iter()
            .map(|row| row.into_iter().map(|m| m != 0.0).collect())
            .collect();
        let (d, dev) = (self.dtype, &self.device);
        let global_mask = AttentionMask::new(&valid, None, d, dev)?;
        let local_mask = AttentionMask::new(&valid, Some(self.cfg.sliding_window), d, dev)?;
        let head_dim = self.cfg.head_dim;
        let positions = first_position..first_position + seq_len;
        let global_rope = RotaryTables::new(
            self.cfg.rope_theta,
            self.cfg.global_rope_factor(),
            head_dim,
            positions.clone(),
            d,
            dev,
        )?;
        let local_rope = RotaryTables::new(
            self.cfg.rope_local_base_freq,
            1.0,
            head_dim,
            positions.clone(),
            d,
            dev,
        )?;

        let ids = input_ids.to_dtype(DType::U32)?.to_device(dev)?;
        let mut x = (self.embed_tokens.forward(&ids)? * self.embed_scale)?;
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            hidden_states.push(x.clone());
            let (rope, mask) = match layer.self_attn_type() {
                LayerType::SlidingAttention => (&local_rope, &local_mask),
                LayerType::FullAttention => (&global_rope, &global_mask),
            };
            x = layer.forward(&x, rope, mask)?;
        }
        hidden_states.push(self.norm.forward(&x)?);
        Ok(hidden_states)
    }
}

impl DecoderLayer {
    fn self_attn_type(&self) -> LayerType {
        self.self_attn.layer_type()
    }
}
