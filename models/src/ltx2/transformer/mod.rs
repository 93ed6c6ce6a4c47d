//! The LTX-2 audio+video diffusion transformer (ltx-core's `LTXModel`, AudioVideo variant).
//!
//! * [`TransformerConfig`]: `config.transformer` of the checkpoint metadata.
//! * [`LtxAvModel`]: the dual-stream model; [`LtxAvModel::forward`] returns velocities,
//!   [`LtxAvModel::denoise`] denoised latents (ltx-core's `X0Model`).
//! * [`ForwardOptions`] / [`BatchPerturbations`]: STG and modality-guidance perturbations.
//! * [`AttentionBias`]: additive self-attention biases (ComfyUI guide bias).
//! * [`positions`], [`patchify`]: token layout and RoPE positions of latent grids.
//! * [`Linear`] / [`LoraMode`]: the shared-weight linear layer that LoRA patches attach to.

mod attention;
mod block;
mod config;
mod embeddings;
mod inputs;
mod linear;
mod model;
mod ops;
pub mod patchify;
mod perturbation;
pub mod positions;
mod rope;

pub use attention::{AttentionBias, MAX_SCORE_ELEMENTS};
pub use config::{CHECKPOINT_PREFIX, RopeType, TransformerConfig};
pub use inputs::{AvOutput, CrossModalTimesteps, ForwardOptions, ModalityInput};
pub use linear::{Linear, LoraMode, LoraPatch, Weight, fused_weight};
pub use model::LtxAvModel;
pub use ops::to_denoised;
pub use perturbation::{BatchPerturbations, Perturbation, PerturbationKind};
pub use rope::{Rope, RopeSpec};
