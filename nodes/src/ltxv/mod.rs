//! The LTX-2 node families that need a model: loaders, text conditioning, latents, VAEs.
//!
//! * [`types`]: the `MODEL` / `CLIP` / `VAE` / `CONDITIONING` / `LATENT_UPSCALE_MODEL` values.
//! * [`detect`]: recognising components in checkpoint files.
//! * [`models`]: loading the weights behind those handles through the model cache.
//! * [`loaders`], [`conditioning`], [`guides`], [`img2video`], [`preprocess`], [`latent`], [`vae`]:
//!   the nodes.

pub mod conditioning;
pub mod detect;
pub mod guides;
pub mod img2video;
pub mod latent;
pub mod loaders;
pub mod models;
pub mod preprocess;
pub mod types;
pub mod vae;

use crate::Registry;

/// Registers every LTX-2 model node of this module.
pub fn register(r: &mut Registry) {
    loaders::register(r);
    conditioning::register(r);
    guides::register(r);
    img2video::register(r);
    preprocess::register(r);
    latent::register(r);
    vae::register(r);
}
