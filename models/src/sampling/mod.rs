//! Sampling: LTX-2 sigma schedules, torch-exact seeded noise, and ComfyUI's samplers.
//!
//! * [`scheduler`]: `LTXVScheduler` / ltx-core `LTX2Scheduler` sigmas and the distilled constants.
//! * [`torch_rng`]: PyTorch's CPU `manual_seed` + `randn` (float32), bit for bit.
//! * [`noise`]: ComfyUI `RandomNoise` (nested AV latents, `batch_index`) and the ancestral
//!   samplers' per-step noise source.
//! * [`samplers`]: `euler`, `euler_ancestral` (RF variant), `gradient_estimation` over a denoise
//!   closure `(x, sigma) -> denoised`.
//! * [`guider`]: CFG, the start point / end scaling and the denoise mask around a sampler
//!   (`CFGGuider.sample`), and [`latent`]: AV packing and `noise_mask` resizing.

pub mod guider;
pub mod latent;
pub mod noise;
pub mod samplers;
pub mod scheduler;
pub mod torch_rng;

#[cfg(test)]
mod tests;
