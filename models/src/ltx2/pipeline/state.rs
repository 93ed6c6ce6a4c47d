//! Latent states of the denoising loop (ltx-core's `LatentState` with `VideoLatentTools` /
//! `AudioLatentTools`): token-layout latents with their denoise mask, clean latent and RoPE
//! positions, built from the output video's pixel shape.

use candle_core::{DType, Device, Tensor};

use crate::ltx2::audio_vae::{Config as AudioVaeConfig, LATENT_DOWNSAMPLE_FACTOR};
use crate::ltx2::transformer::TransformerConfig;
use crate::ltx2::transformer::patchify::{
    audio_to_tokens, tokens_to_audio, tokens_to_video, video_to_tokens,
};
use crate::ltx2::transformer::positions::{
    AudioTiming, ScaleFactors, VideoGrid, audio_positions, video_positions,
};
use crate::{Error, Result};

/// Size of the video to generate (ltx-core's `VideoPixelShape`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoPixelShape {
    /// Batch size.
    pub batch: usize,
    /// Pixel frames (`1 + 8k` for LTX-2).
    pub frames: usize,
    /// Pixel height.
    pub height: usize,
    /// Pixel width.
    pub width: usize,
    /// Frame rate (frames per second).
    pub fps: f64,
}

/// Latent layout of both streams: channels and compression (from the checkpoint's configs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatentLayout {
    /// Video latent channels (the transformer's `in_channels`, patch size 1).
    pub video_channels: usize,
    /// Video VAE compression.
    pub video_scale: ScaleFactors,
    /// Whether the first latent frame covers one pixel frame (causal VAE).
    pub causal_fix: bool,
    /// Audio latent channels (the audio VAE's `z_channels`).
    pub audio_channels: usize,
    /// Audio latent mel bins (`audio_in_channels / audio_channels`).
    pub audio_mel_bins: usize,
    /// Audio latent timing (sample rate, hop, mel frames per latent frame).
    pub audio_timing: AudioTiming,
}

impl LatentLayout {
    /// The layout of a checkpoint: video channels from the transformer config, audio channels
    /// and timing from the audio VAE config, LTX-2's video compression (8 x 32 x 32, causal).
    pub fn from_configs(
        transformer: &TransformerConfig,
        audio_vae: &AudioVaeConfig,
    ) -> Result<Self> {
        let audio_channels = audio_vae.z_channels;
        if audio_channels == 0 || !transformer.audio_in_channels.is_multiple_of(audio_channels) {
            return Err(Error::Config(format!(
                "audio_in_channels {} is not a multiple of the audio VAE's z_channels {audio_channels}",
                transformer.audio_in_channels
            )));
        }
        Ok(Self {
            video_channels: transformer.in_channels,
            video_scale: ScaleFactors::default(),
            causal_fix: true,
            audio_channels,
            audio_mel_bins: transformer.audio_in_channels / audio_channels,
            audio_timing: AudioTiming {
                sample_rate: audio_vae.sample_rate as usize,
                hop_length: audio_vae.mel_hop_length as usize,
                latent_downsample: LATENT_DOWNSAMPLE_FACTOR,
                causal: audio_vae.is_causal,
                shift: 0,
            },
        })
    }

    /// Video latent grid of `shape` (`VideoLatentShape.from_pixel_shape`).
    pub fn video_grid(&self, shape: &VideoPixelShape) -> VideoGrid {
        VideoGrid::from_pixels(shape.frames, shape.height, shape.width, self.video_scale)
    }

    /// Audio latent frames for `shape` (`AudioLatentShape.from_video_pixel_shape`):
    /// `round(frames / fps · sample_rate / hop / downsample)`, rounding half to even.
    pub fn audio_frames(&self, shape: &VideoPixelShape) -> usize {
        let t = &self.audio_timing;
        let per_second = t.sample_rate as f64 / t.hop_length as f64 / t.latent_downsample as f64;
        let frames = shape.frames as f64 / shape.fps * per_second;
        frames.round_ties_even().max(0.0) as usize
    }
}

/// One stream's state (token layout).
#[derive(Debug, Clone)]
pub struct LatentState {
    /// Current latent tokens `[B, T, C]` (model dtype).
    pub latent: Tensor,
    /// Denoise mask `[B, T, 1]` f32: 1 = generate, 0 = keep the clean latent.
    pub denoise_mask: Tensor,
    /// RoPE positions `[B, n_axes, T, 2]`.
    pub positions: Tensor,
    /// Clean (conditioning) latent tokens `[B, T, C]`.
    pub clean_latent: Tensor,
}

impl LatentState {
    /// A state to generate from scratch: zero latent, mask 1, `clean_latent` zero.
    fn empty(tokens: usize, channels: usize, positions: Tensor, dtype: DType) -> Result<Self> {
        let batch = positions.dim(0)?;
        let device = positions.device().clone();
        let latent = Tensor::zeros((batch, tokens, channels), dtype, &device)?;
        Ok(Self {
            clean_latent: latent.clone(),
            latent,
            denoise_mask: Tensor::ones((batch, tokens, 1), DType::F32, &device)?,
            positions,
        })
    }

    /// Adds noise: `latent = noise · (mask · scale) + latent · (1 - mask · scale)`
    /// (ltx-core's `GaussianNoiser`, the noise given), in the latent dtype.
    pub fn noised(mut self, noise: &Tensor, noise_scale: f64) -> Result<Self> {
        if noise.dims() != self.latent.dims() {
            return Err(Error::Input(format!(
                "noise {:?} does not match latent tokens {:?}",
                noise.dims(),
                self.latent.dims()
            )));
        }
        let dtype = self.latent.dtype();
        let mask = (&self.denoise_mask * noise_scale)?;
        let keep = (1.0 - &mask)?;
        let noise = noise.to_dtype(dtype)?.to_dtype(DType::F32)?;
        let latent = (noise.broadcast_mul(&mask)?
            + self.latent.to_dtype(DType::F32)?.broadcast_mul(&keep)?)?;
        self.latent = latent.to_dtype(dtype)?;
        Ok(self)
    }

    /// Timesteps `[B, T, 1]` f32 at `sigma`: `denoise_mask · sigma`.
    pub fn timesteps(&self, sigma: f32) -> Result<Tensor> {
        Ok(self
            .denoise_mask
            .broadcast_mul(&Tensor::new(sigma, self.denoise_mask.device())?)?)
    }

    /// `denoised · mask + clean · (1 - mask)` in f32, back in `denoised`'s dtype (ltx-core's
    /// `post_process_latent`).
    pub fn blend_denoised(&self, denoised: &Tensor) -> Result<Tensor> {
        let mask = &self.denoise_mask;
        let keep = (1.0 - mask)?;
        let out = (denoised.to_dtype(DType::F32)?.broadcast_mul(mask)?
            + self
                .clean_latent
                .to_dtype(DType::F32)?
                .broadcast_mul(&keep)?)?;
        Ok(out.to_dtype(denoised.dtype())?)
    }

    /// The first `tokens` tokens (ltx-core's `clear_conditioning`, which drops appended
    /// conditioning tokens).
    pub fn first_tokens(&self, tokens: usize) -> Result<Tensor> {
        Ok(self.latent.narrow(1, 0, tokens)?)
    }
}

/// The initial video state of `shape`: positions from the latent grid (seconds, pixels,
/// pixels; rounded to `dtype` as ltx-core's pipelines do), latent zero, mask 1.
pub fn video_state(
    layout: &LatentLayout,
    shape: &VideoPixelShape,
    dtype: DType,
    device: &Device,
) -> Result<LatentState> {
    let grid = layout.video_grid(shape);
    let positions = video_positions(
        shape.batch,
        grid,
        shape.fps,
        layout.video_scale,
        layout.causal_fix,
        device,
    )?
    .to_dtype(dtype)?;
    LatentState::empty(grid.tokens(), layout.video_channels, positions, dtype)
}

/// The initial audio state for a video of `shape`: positions in seconds (f32), latent zero,
/// mask 1.
pub fn audio_state(
    layout: &LatentLayout,
    shape: &VideoPixelShape,
    dtype: DType,
    device: &Device,
) -> Result<LatentState> {
    let frames = layout.audio_frames(shape);
    let positions = audio_positions(shape.batch, frames, layout.audio_timing, device)?;
    let channels = layout.audio_channels * layout.audio_mel_bins;
    LatentState::empty(frames, channels, positions, dtype)
}

/// Video tokens of `shape` back to a latent `[B, C, F, H, W]`.
pub fn video_latent(
    layout: &LatentLayout,
    shape: &VideoPixelShape,
    state: &LatentState,
) -> Result<Tensor> {
    let grid = layout.video_grid(shape);
    let tokens = state.first_tokens(grid.tokens())?;
    tokens_to_video(&tokens, grid.frames, grid.height, grid.width)
}

/// Audio tokens back to a latent `[B, C, T, M]`.
pub fn audio_latent(
    layout: &LatentLayout,
    shape: &VideoPixelShape,
    state: &LatentState,
) -> Result<Tensor> {
    let tokens = state.first_tokens(layout.audio_frames(shape))?;
    tokens_to_audio(&tokens, layout.audio_channels, layout.audio_mel_bins)
}

/// Video latent `[B, C, F, H, W]` to tokens (for initial latents and noise given as latents).
pub fn video_tokens(latent: &Tensor) -> Result<Tensor> {
    video_to_tokens(latent)
}

/// Audio latent `[B, C, T, M]` to tokens.
pub fn audio_tokens(latent: &Tensor) -> Result<Tensor> {
    audio_to_tokens(latent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> LatentLayout {
        LatentLayout {
            video_channels: 4,
            video_scale: ScaleFactors::default(),
            causal_fix: true,
            audio_channels: 2,
            audio_mel_bins: 3,
            audio_timing: AudioTiming::default(),
        }
    }

    fn shape(frames: usize, fps: f64) -> VideoPixelShape {
        VideoPixelShape {
            batch: 1,
            frames,
            height: 64,
            width: 96,
            fps,
        }
    }

    #[test]
    fn audio_frames_round_half_to_even() {
        let l = layout();
        // 25 latent frames per second: 9 frames at 25 fps -> 9; 121 at 24 fps -> 126.04 -> 126
        assert_eq!(l.audio_frames(&shape(9, 25.0)), 9);
        assert_eq!(l.audio_frames(&shape(121, 24.0)), 126);
        // 1 frame at 10 fps = 2.5 latent frames -> 2 (half to even)
        assert_eq!(l.audio_frames(&shape(1, 10.0)), 2);
    }

    #[test]
    fn states_noise_and_unpatchify() {
        let l = layout();
        let s = shape(9, 25.0);
        let dev = Device::Cpu;
        let v = video_state(&l, &s, DType::F32, &dev).unwrap();
        assert_eq!(v.latent.dims(), &[1, 2 * 2 * 3, 4]);
        assert_eq!(v.positions.dims(), &[1, 3, 12, 2]);
        let noise = Tensor::ones((1, 12, 4), DType::F32, &dev).unwrap();
        let v = v.noised(&noise, 0.5).unwrap();
        let vals = v.latent.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(vals.iter().all(|&x| x == 0.5));
        assert_eq!(video_latent(&l, &s, &v).unwrap().dims(), &[1, 4, 2, 2, 3]);
        let a = audio_state(&l, &s, DType::F32, &dev).unwrap();
        assert_eq!(a.latent.dims(), &[1, 9, 6]);
        assert_eq!(audio_latent(&l, &s, &a).unwrap().dims(), &[1, 2, 9, 3]);
        let ts = a.timesteps(0.25).unwrap();
        assert_eq!(ts.dims(), &[1, 9, 1]);
        let bad = Tensor::ones((1, 8, 6), DType::F32, &dev).unwrap();
        assert!(a.noised(&bad, 1.0).is_err());
    }
}
