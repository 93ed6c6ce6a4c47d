//! Sampling: LTX-2 sigma schedules, torch-exact seeded noise, and ComfyUI's samplers.

pub mod scheduler;
pub mod torch_rng;
