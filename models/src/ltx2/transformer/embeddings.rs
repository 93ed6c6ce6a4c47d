//! Timestep (AdaLN-single) and caption embeddings of the transformer.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;
use super::ops::timestep_embedding;
use crate::Result;

/// Width of the sinusoidal timestep features.
const TIMESTEP_FEATURES: usize = 256;

/// PixArt-α AdaLN-single: sinusoid(t) -> `emb.timestep_embedder` (linear, SiLU, linear) ->
/// SiLU -> `linear` to `coefficient x dim` modulation values.
#[derive(Debug, Clone)]
pub struct AdaLayerNormSingle {
    linear_1: Linear,
    linear_2: Linear,
    linear: Linear,
}

impl AdaLayerNormSingle {
    /// Loads `emb.timestep_embedder.linear_{1,2}` and `linear` for `coefficient` values of
    /// width `dim`.
    pub fn new(dim: usize, coefficient: usize, vb: VarBuilder) -> Result<Self> {
        let te = vb.pp("emb").pp("timestep_embedder");
        Ok(Self {
            linear_1: Linear::new(TIMESTEP_FEATURES, dim, true, te.pp("linear_1"))?,
            linear_2: Linear::new(dim, dim, true, te.pp("linear_2"))?,
            linear: Linear::new(dim, coefficient * dim, true, vb.pp("linear"))?,
        })
    }

    /// Embeds already scaled timesteps `[N]` (f32); returns `(modulation [N, coeff·dim],
    /// embedded timestep [N, dim])` in `dtype`.
    pub fn forward(&self, timesteps: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let features = timestep_embedding(timesteps, TIMESTEP_FEATURES)?.to_dtype(dtype)?;
        let h = self.linear_1.forward(&features)?.silu()?;
        let embedded = self.linear_2.forward(&h)?;
        let modulation = self.linear.forward(&embedded.silu()?)?;
        Ok((modulation, embedded))
    }

    /// The module's linear layers.
    pub fn linears(&self) -> Vec<&Linear> {
        vec![&self.linear_1, &self.linear_2, &self.linear]
    }

    /// The module's linear layers, mutably.
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        vec![&mut self.linear_1, &mut self.linear_2, &mut self.linear]
    }
}

/// PixArt-α caption projection: `linear_1`, tanh-GELU, `linear_2`.
#[derive(Debug, Clone)]
pub struct CaptionProjection {
    linear_1: Linear,
    linear_2: Linear,
}

impl CaptionProjection {
    /// Loads a projection from `in_dim` caption features to `dim`.
    pub fn new(in_dim: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::new(in_dim, dim, true, vb.pp("linear_1"))?,
            linear_2: Linear::new(dim, dim, true, vb.pp("linear_2"))?,
        })
    }

    /// Projects `[B, S, in_dim]` caption features to `[B, S, dim]`.
    pub fn forward(&self, caption: &Tensor) -> Result<Tensor> {
        let h = self.linear_1.forward(caption)?.gelu()?;
        self.linear_2.forward(&h)
    }

    /// The module's linear layers.
    pub fn linears(&self) -> Vec<&Linear> {
        vec![&self.linear_1, &self.linear_2]
    }

    /// The module's linear layers, mutably.
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        vec![&mut self.linear_1, &mut self.linear_2]
    }
}
