//! ltx-core's audio+video denoising loop (ltx-pipelines' `denoise_audio_video` with
//! `euler_denoising_loop` and the multi-modal guided denoise function).
//!
//! * [`guidance`]: per-stream guidance parameters (CFG, STG, modality guidance, rescale,
//!   skip-step), sigma-binned schedules, and the combination formula.
//! * [`denoiser`]: the transformer passes of one step and their guided combination.
//! * [`state`]: token-layout latent states from the output pixel shape.
//! * [`euler`]: the Euler loop and `denoise_audio_video`.
//! * [`decode`]: the final latents to pixels and waveform.
//!
//! Typical use: build a [`LatentLayout`] from the checkpoint configs, an [`AvGuidance`] with
//! contexts and parameters, a [`GuidedDenoiser`], and call [`denoise_audio_video`] with the
//! noise and the sigmas (e.g. `sampling::scheduler::ltx2_sigmas`), then [`decode_av`].

pub mod decode;
pub mod denoiser;
pub mod euler;
pub mod guidance;
pub mod state;

pub use decode::{AvMedia, decode_av};
pub use denoiser::{AvContexts, AvGuidance, GuidedDenoiser, PassBatching};
pub use euler::{
    AvLatents, AvNoise, DenoiseFn, StepTrace, denoise_audio_video, euler_denoising_loop, euler_step,
};
pub use guidance::{GuidancePasses, GuiderParams, GuiderSchedule};
pub use state::{LatentLayout, LatentState, VideoPixelShape};
