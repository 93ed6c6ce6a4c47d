//! What one transformer call takes and returns: per-modality inputs, options (perturbations,
//! cross-modal timestep source) and the two streams' outputs.

use candle_core::Tensor;

use super::attention::AttentionBias;
use super::perturbation::BatchPerturbations;

/// One modality's inputs for a call.
#[derive(Debug, Clone)]
pub struct ModalityInput {
    /// Patchified latent tokens `[B, T, in_channels]`.
    pub latent: Tensor,
    /// Per-token timesteps `[B, T, 1]` (or `[B, T]`): `sigma · denoise_mask`, f32.
    pub timesteps: Tensor,
    /// The step's sigma, `[B]` or a single value. In ltx-core it drives the *other* stream's
    /// audio/video cross-attention modulation (see [`CrossModalTimesteps`]).
    pub sigma: Tensor,
    /// Token bounds `[B, n_axes, T, 2]` (video: seconds, pixels, pixels; audio: seconds).
    pub positions: Tensor,
    /// Text features `[B, S, caption_channels]` (the embeddings connector's output).
    pub context: Tensor,
    /// Text key mask `[B, S]`, 1 = token, 0 = padding.
    pub context_mask: Option<Tensor>,
    /// Additive self-attention bias (ComfyUI's guide bias, ltx-core's attention mask).
    pub self_attention_bias: Option<AttentionBias>,
    /// Whether the blocks update this stream (ltx-core's `Modality.enabled`); a disabled
    /// stream still serves as cross-attention context.
    pub enabled: bool,
}

impl ModalityInput {
    /// Inputs with no context mask, no self-attention bias, enabled.
    pub fn new(
        latent: Tensor,
        timesteps: Tensor,
        sigma: Tensor,
        positions: Tensor,
        context: Tensor,
    ) -> Self {
        Self {
            latent,
            timesteps,
            sigma,
            positions,
            context,
            context_mask: None,
            self_attention_bias: None,
            enabled: true,
        }
    }
}

/// Which timesteps modulate the audio<->video cross-attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrossModalTimesteps {
    /// ltx-core: each stream's cross-attention scale/shift/gate come from the other stream's
    /// sigma (one value per batch item).
    #[default]
    OtherModalitySigma,
    /// ComfyUI: from the stream's own per-token timesteps.
    OwnTokenTimesteps,
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    /// Attention perturbations for STG / modality guidance (`None` = none).
    pub perturbations: Option<BatchPerturbations>,
    /// Source of the audio/video cross-attention modulation.
    pub cross_modal_timesteps: CrossModalTimesteps,
}

/// The two streams' outputs (velocities, or denoised latents from [`LtxAvModel::denoise`](super::LtxAvModel::denoise)).
#[derive(Debug, Clone)]
pub struct AvOutput {
    /// Video tokens `[B, Tv, out_channels]`, if video was given.
    pub video: Option<Tensor>,
    /// Audio tokens `[B, Ta, audio_out_channels]`, if audio was given.
    pub audio: Option<Tensor>,
}
