//! What ComfyUI's `CFGGuider.sample` does around a sampler for LTX (rectified-flow `CONST`
//! model sampling): classifier-free guidance, the start point and end scaling, and the denoise
//! mask (`KSamplerX0Inpaint`). Tensors are a plain latent or a packed AV latent
//! ([`super::latent::pack_latents`]); all arithmetic is elementwise in the latent's dtype.

use candle_core::Tensor;

use super::noise::NoiseSource;
use super::samplers::{Sampler, StepInfo, mul, scalar_like};
use crate::Result;

/// Whether CFG skips the negative pass: `math.isclose(cfg, 1.0)` (relative tolerance 1e-9).
pub fn cfg_skips_uncond(cfg: f64) -> bool {
    (cfg - 1.0).abs() <= 1e-9 * cfg.abs().max(1.0)
}

/// `uncond + (cond - uncond) * cfg` (the scale rounded to the tensors' float precision).
pub fn cfg_combine(cond: &Tensor, uncond: &Tensor, cfg: f64) -> Result<Tensor> {
    Ok((uncond + mul(&(cond - uncond)?, cfg as f32)?)?)
}

/// ComfyUI's CFG step: the positive prediction alone when [`cfg_skips_uncond`], otherwise both
/// predictions combined with [`cfg_combine`].
pub fn cfg_denoise(
    x: &Tensor,
    sigma: f32,
    cfg: f64,
    positive: &mut dyn FnMut(&Tensor, f32) -> Result<Tensor>,
    negative: &mut dyn FnMut(&Tensor, f32) -> Result<Tensor>,
) -> Result<Tensor> {
    let cond = positive(x, sigma)?;
    if cfg_skips_uncond(cfg) {
        return Ok(cond);
    }
    let uncond = negative(x, sigma)?;
    cfg_combine(&cond, &uncond, cfg)
}

/// The sampler's start point: `sigma * noise + (1 - sigma) * latent` (`CONST.noise_scaling`).
pub fn noise_scaling(sigma: f32, noise: &Tensor, latent: &Tensor) -> Result<Tensor> {
    Ok((mul(noise, sigma)? + mul(latent, 1.0 - sigma)?)?)
}

/// The sampler's end scaling: `x / (1 - sigma_last)` (`CONST.inverse_noise_scaling`; the identity
/// for schedules ending in 0).
pub fn inverse_noise_scaling(sigma_last: f32, x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&scalar_like(1.0 - sigma_last, x)?)?)
}

/// A denoise mask with its clean latent: `KSamplerX0Inpaint` for models whose
/// `scale_latent_inpaint` returns the clean latent unchanged (LTX).
#[derive(Debug, Clone)]
pub struct DenoiseMask {
    mask: Tensor,
    keep: Tensor,
    latent: Tensor,
}

impl DenoiseMask {
    /// `mask` (same shape as the latent; 1 = generate, 0 = keep) and the clean `latent`.
    pub fn new(mask: Tensor, latent: Tensor) -> Result<Self> {
        let keep = scalar_like(1.0, &mask)?.broadcast_sub(&mask)?;
        Ok(Self { mask, keep, latent })
    }

    /// The mask (1 = generate).
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// `v * mask + latent * (1 - mask)`.
    pub fn blend(&self, v: &Tensor) -> Result<Tensor> {
        Ok(((v * &self.mask)? + (&self.latent * &self.keep)?)?)
    }

    /// Runs `denoise` on the blended input and blends its prediction the same way.
    pub fn denoise(
        &self,
        x: &Tensor,
        sigma: f32,
        denoise: &mut dyn FnMut(&Tensor, f32) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let out = denoise(&self.blend(x)?, sigma)?;
        self.blend(&out)
    }
}

/// One sampling run, as `SamplerCustomAdvanced` hands it to `CFGGuider.sample`.
pub struct SampleJob<'a> {
    /// The sampler.
    pub sampler: &'a Sampler,
    /// The schedule (empty: the latent is returned unchanged).
    pub sigmas: &'a [f32],
    /// Initial noise (same shape as the latent).
    pub noise: &'a Tensor,
    /// The latent to start from (zeros for text-to-video).
    pub latent: &'a Tensor,
    /// The denoise mask, already resized to the latent's shape (`None`: denoise everything).
    pub denoise_mask: Option<&'a Tensor>,
}

/// `CFGGuider.sample` after packing: start point, masked denoiser, sampler, end scaling.
/// `denoise` is the guided model (see [`cfg_denoise`]); `noise_source` feeds ancestral samplers.
pub fn sample(
    job: &SampleJob,
    denoise: &mut dyn FnMut(&Tensor, f32) -> Result<Tensor>,
    noise_source: Option<&mut dyn NoiseSource>,
    on_step: &mut dyn FnMut(&StepInfo) -> Result<()>,
) -> Result<Tensor> {
    let (Some(&first), Some(&last)) = (job.sigmas.first(), job.sigmas.last()) else {
        return Ok(job.latent.clone());
    };
    let x = noise_scaling(first, job.noise, job.latent)?;
    let mask = match job.denoise_mask {
        Some(m) => Some(DenoiseMask::new(
            m.to_dtype(x.dtype())?,
            job.latent.clone(),
        )?),
        None => None,
    };
    let mut model = |x: &Tensor, sigma: f32| match &mask {
        Some(m) => m.denoise(x, sigma, denoise),
        None => denoise(x, sigma),
    };
    let samples = job
        .sampler
        .sample(&mut model, x, job.sigmas, noise_source, on_step)?;
    inverse_noise_scaling(last, &samples)
}
