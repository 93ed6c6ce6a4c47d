//! ltx-pipelines' `euler_denoising_loop` with ltx-core's `EulerDiffusionStep`, and
//! `denoise_audio_video` around it: build both streams' states from the pixel shape and the
//! given noise, run the loop, return the latents in their VAE layouts.

use candle_core::{DType, Tensor};

use super::denoiser::GuidedDenoiser;
use super::state::{
    LatentLayout, LatentState, VideoPixelShape, audio_latent, audio_state, video_latent,
    video_state,
};
use crate::ltx2::transformer::LtxAvModel;
use crate::{Error, Result};

/// What one step of the loop reports.
#[derive(Debug)]
pub struct StepTrace<'a> {
    /// Step index, `0..steps`.
    pub step: usize,
    /// Number of steps (`sigmas.len() - 1`).
    pub steps: usize,
    /// Noise level of this step.
    pub sigma: f32,
    /// Noise level after this step.
    pub sigma_next: f32,
    /// Video tokens the model was evaluated at.
    pub video_latent: &'a Tensor,
    /// Audio tokens the model was evaluated at.
    pub audio_latent: &'a Tensor,
    /// Guided video prediction (before the denoise-mask blend).
    pub video_denoised: &'a Tensor,
    /// Guided audio prediction (before the denoise-mask blend).
    pub audio_denoised: &'a Tensor,
}

/// One Euler step: `velocity = (sample - denoised) / sigma` (f32, rounded to the sample's
/// dtype), `sample + velocity · (sigma_next - sigma)` in f32, back in the sample's dtype.
pub fn euler_step(
    sample: &Tensor,
    denoised: &Tensor,
    sigma: f32,
    sigma_next: f32,
) -> Result<Tensor> {
    if sigma == 0.0 {
        return Err(Error::Input("Euler step at sigma 0".into()));
    }
    let dtype = sample.dtype();
    let device = sample.device();
    let s32 = sample.to_dtype(DType::F32)?;
    let velocity = (&s32 - denoised.to_dtype(DType::F32)?)?
        .broadcast_div(&Tensor::new(sigma, device)?)?
        .to_dtype(dtype)?
        .to_dtype(DType::F32)?;
    let dt = Tensor::new(sigma_next - sigma, device)?;
    Ok((s32 + velocity.broadcast_mul(&dt)?)?.to_dtype(dtype)?)
}

/// The denoise function of the loop: guided predictions `(video, audio)` at step `step`.
pub type DenoiseFn<'f> =
    dyn FnMut(&LatentState, &LatentState, &[f32], usize) -> Result<(Tensor, Tensor)> + 'f;

/// `euler_denoising_loop`: for every step, predict, blend with the clean latent by the denoise
/// mask, and take an Euler step; `on_step` sees each step's inputs and predictions.
pub fn euler_denoising_loop(
    sigmas: &[f32],
    mut video: LatentState,
    mut audio: LatentState,
    denoise: &mut DenoiseFn,
    on_step: &mut dyn FnMut(&StepTrace) -> Result<()>,
) -> Result<(LatentState, LatentState)> {
    let steps = sigmas.len().saturating_sub(1);
    for step in 0..steps {
        let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
        let (dv, da) = denoise(&video, &audio, sigmas, step)?;
        on_step(&StepTrace {
            step,
            steps,
            sigma,
            sigma_next,
            video_latent: &video.latent,
            audio_latent: &audio.latent,
            video_denoised: &dv,
            audio_denoised: &da,
        })?;
        let dv = video.blend_denoised(&dv)?;
        let da = audio.blend_denoised(&da)?;
        video.latent = euler_step(&video.latent, &dv, sigma, sigma_next)?;
        audio.latent = euler_step(&audio.latent, &da, sigma, sigma_next)?;
    }
    Ok((video, audio))
}

/// Noise of both streams in token layout (`[B, T, C]`, as ltx-core's noiser draws it after
/// patchifying), and its scale (1 = pure noise where the mask is 1). The states are built on
/// the noise's device, which must be the model's. (ltx-pipelines' `GaussianNoiser` draws both
/// from one seeded generator, video first; `sampling::noise::RandomNoise` with the two token
/// shapes draws the same way from PyTorch's CPU generator, not checked against a fixture.)
#[derive(Debug, Clone)]
pub struct AvNoise {
    /// Video noise tokens.
    pub video: Tensor,
    /// Audio noise tokens.
    pub audio: Tensor,
    /// Noise scale.
    pub scale: f64,
}

/// Final latents of both streams in VAE layout.
#[derive(Debug, Clone)]
pub struct AvLatents {
    /// Video latent `[B, C, F, H, W]`.
    pub video: Tensor,
    /// Audio latent `[B, C, T, M]`.
    pub audio: Tensor,
}

/// ltx-pipelines' `denoise_audio_video` (text-to-video, no conditioning items) with the
/// multi-modal guided denoiser and the Euler loop.
pub fn denoise_audio_video(
    model: &LtxAvModel,
    denoiser: &mut GuidedDenoiser,
    layout: &LatentLayout,
    shape: &VideoPixelShape,
    noise: &AvNoise,
    sigmas: &[f32],
    on_step: &mut dyn FnMut(&StepTrace) -> Result<()>,
) -> Result<AvLatents> {
    let dtype = model.dtype();
    let device = noise.video.device();
    let video = video_state(layout, shape, dtype, device)?.noised(&noise.video, noise.scale)?;
    let audio = audio_state(layout, shape, dtype, device)?.noised(&noise.audio, noise.scale)?;
    let mut denoise =
        |v: &LatentState, a: &LatentState, s: &[f32], i: usize| denoiser.denoise(v, a, s, i);
    let (video, audio) = euler_denoising_loop(sigmas, video, audio, &mut denoise, on_step)?;
    Ok(AvLatents {
        video: video_latent(layout, shape, &video)?,
        audio: audio_latent(layout, shape, &audio)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn euler_step_moves_along_the_velocity() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f32, -1.0], &dev).unwrap();
        let d = Tensor::new(&[0.5f32, 0.0], &dev).unwrap();
        // v = (x - d)/0.5 = [1, -2]; dt = -0.25 -> [0.75, -0.5]
        let out = euler_step(&x, &d, 0.5, 0.25)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(out, [0.75, -0.5]);
        assert!(euler_step(&x, &d, 0.0, 0.0).is_err());
    }

    #[test]
    fn loop_reaches_the_prediction_at_sigma_zero() {
        let dev = Device::Cpu;
        let state = |v: f32| LatentState {
            latent: Tensor::full(v, (1, 2, 3), &dev).unwrap(),
            denoise_mask: Tensor::ones((1, 2, 1), DType::F32, &dev).unwrap(),
            positions: Tensor::zeros((1, 1, 2, 2), DType::F32, &dev).unwrap(),
            clean_latent: Tensor::zeros((1, 2, 3), DType::F32, &dev).unwrap(),
        };
        let target = Tensor::full(0.25f32, (1, 2, 3), &dev).unwrap();
        let mut calls = 0;
        let mut denoise = |_: &LatentState, _: &LatentState, _: &[f32], _: usize| {
            calls += 1;
            Ok((target.clone(), target.clone()))
        };
        let mut seen = Vec::new();
        let (v, _) = euler_denoising_loop(
            &[1.0, 0.5, 0.0],
            state(1.0),
            state(1.0),
            &mut denoise,
            &mut |t| {
                seen.push((t.step, t.sigma, t.sigma_next));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(seen, [(0, 1.0, 0.5), (1, 0.5, 0.0)]);
        let vals = v.latent.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(vals.iter().all(|&x| x == 0.25));
    }
}
