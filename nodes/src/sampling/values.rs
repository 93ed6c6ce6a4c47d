//! The custom-sampling values: `SIGMAS`, `NOISE`, `SAMPLER`, `GUIDER` (`ltx2-nodes.md` §1.6).

use std::sync::Arc;

use models::sampling::samplers::Sampler;

use crate::ltxv::types::{Conditioning, LtxModel};
use crate::{Inputs, NodeError, Object, Value};

/// `SIGMAS` type name.
pub const SIGMAS: &str = "SIGMAS";
/// `NOISE` type name.
pub const NOISE: &str = "NOISE";
/// `SAMPLER` type name.
pub const SAMPLER: &str = "SAMPLER";
/// `GUIDER` type name.
pub const GUIDER: &str = "GUIDER";

/// A `SIGMAS` schedule: float32, normally descending and ending in 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Sigmas(pub Vec<f32>);

impl Sigmas {
    /// Wraps it as a value.
    pub fn into_value(self) -> Value {
        let text = format!("{} sigmas", self.0.len());
        Value::Object(Object::new(SIGMAS, Arc::new(self), text))
    }
}

/// A `NOISE` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    /// `RandomNoise`: torch-exact CPU `randn` seeded with the seed.
    Random {
        /// The seed (only its low 32 bits reach the generator).
        seed: u64,
    },
    /// `DisableNoise`: zeros (seed 0).
    Disabled,
}

impl Noise {
    /// The seed ComfyUI passes on to the sampler (ancestral noise).
    pub fn seed(&self) -> u64 {
        match self {
            Noise::Random { seed } => *seed,
            Noise::Disabled => 0,
        }
    }

    /// Wraps it as a value.
    pub fn into_value(self) -> Value {
        let text = format!("{self:?}");
        Value::Object(Object::new(NOISE, Arc::new(self), text))
    }
}

/// A `SAMPLER`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerValue(pub Sampler);

impl SamplerValue {
    /// Wraps it as a value.
    pub fn into_value(self) -> Value {
        let text = self.0.name().to_string();
        Value::Object(Object::new(SAMPLER, Arc::new(self), text))
    }
}

/// A `GUIDER`: ComfyUI's `CFGGuider` (BasicGuider is one with no negative and cfg 1).
#[derive(Debug, Clone)]
pub struct Guider {
    /// The model.
    pub model: Arc<LtxModel>,
    /// Positive conditioning.
    pub positive: Arc<Conditioning>,
    /// Negative conditioning (`None` for BasicGuider).
    pub negative: Option<Arc<Conditioning>>,
    /// CFG scale.
    pub cfg: f64,
}

impl Guider {
    /// Wraps it as a value.
    pub fn into_value(self) -> Value {
        let text = format!("cfg {}", self.cfg);
        Value::Object(Object::new(GUIDER, Arc::new(self), text))
    }
}

/// Typed accessors for the sampling inputs.
pub trait SamplingInputs {
    /// A `SIGMAS` input.
    fn sigmas(&self, name: &str) -> Result<Arc<Sigmas>, NodeError>;
    /// A `NOISE` input.
    fn noise(&self, name: &str) -> Result<Arc<Noise>, NodeError>;
    /// A `SAMPLER` input.
    fn sampler(&self, name: &str) -> Result<Arc<SamplerValue>, NodeError>;
    /// A `GUIDER` input.
    fn guider(&self, name: &str) -> Result<Arc<Guider>, NodeError>;
}

impl SamplingInputs for Inputs {
    fn sigmas(&self, name: &str) -> Result<Arc<Sigmas>, NodeError> {
        self.object(name, SIGMAS)
    }
    fn noise(&self, name: &str) -> Result<Arc<Noise>, NodeError> {
        self.object(name, NOISE)
    }
    fn sampler(&self, name: &str) -> Result<Arc<SamplerValue>, NodeError> {
        self.object(name, SAMPLER)
    }
    fn guider(&self, name: &str) -> Result<Arc<Guider>, NodeError> {
        self.object(name, GUIDER)
    }
}
