//! Sampling nodes: sigma schedules, noise, samplers, guiders and the sampler nodes that run the
//! LTX-2 model (`SamplerCustomAdvanced`, `KSampler`).
//!
//! * [`values`]: the `SIGMAS` / `NOISE` / `SAMPLER` / `GUIDER` values.
//! * [`sigmas`], [`schedulers`]: schedule nodes and ComfyUI's model-aware schedulers.
//! * [`custom`]: noise, sampler, guider and sampler nodes.
//! * [`run`]: ComfyUI's `CFGGuider.sample` (packing, noise, masks, progress);
//!   [`ltxav`]: one guided LTX-2 model evaluation.

pub mod custom;
pub mod ltxav;
pub mod run;
pub mod schedulers;
pub mod sigmas;
pub mod values;

use crate::Registry;

/// Registers the sampling nodes.
pub fn register(r: &mut Registry) {
    sigmas::register(r);
    custom::register(r);
}
