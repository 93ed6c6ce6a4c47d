//! RoPE positions of latent tokens, as ltx-core's latent tools build them.
//!
//! Video tokens (patch size 1, order frame-major then row then column) get `[start, end)` bounds
//! per axis in pixel space: latent index x VAE scale factors (8 frames, 32 px, 32 px); with the
//! causal fix the time bounds become `max(t + 1 - 8, 0)` (the causal VAE's first latent frame
//! covers one pixel frame); time is then divided by the frame rate, giving seconds. Audio tokens
//! get time bounds in seconds: mel frame `4k` (causal: `max(4k + 1 - 4, 0)`) x hop / sample rate.
//!
//! ComfyUI computes the same values with two small differences: it multiplies time by
//! `1/frame_rate` (one rounding more) instead of dividing, and it keeps positions in f32 where
//! ltx-core's pipelines round video positions to the model dtype. Appended guide tokens take
//! their pixel coordinates from `keyframe_idxs` ([`with_guide_coords`]) before the division.

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// VAE compression between pixel space and the latent grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleFactors {
    /// Pixel frames per latent frame.
    pub time: usize,
    /// Pixel rows per latent row.
    pub height: usize,
    /// Pixel columns per latent column.
    pub width: usize,
}

impl Default for ScaleFactors {
    /// LTX-2's video VAE: 8 x 32 x 32.
    fn default() -> Self {
        Self {
            time: 8,
            height: 32,
            width: 32,
        }
    }
}

/// Size of a video latent grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoGrid {
    /// Latent frames.
    pub frames: usize,
    /// Latent rows.
    pub height: usize,
    /// Latent columns.
    pub width: usize,
}

impl VideoGrid {
    /// The latent grid of a `frames x height x width` pixel video (ltx-core's
    /// `VideoLatentShape.from_pixel_shape`: `(frames - 1) / 8 + 1`, `height / 32`, `width / 32`).
    pub fn from_pixels(frames: usize, height: usize, width: usize, scale: ScaleFactors) -> Self {
        Self {
            frames: frames.saturating_sub(1) / scale.time + 1,
            height: height / scale.height,
            width: width / scale.width,
        }
    }

    /// Number of tokens (patch size 1).
    pub fn tokens(&self) -> usize {
        self.frames * self.height * self.width
    }
}

/// Pixel-space bounds `[B, 3, F·H·W, 2]` (f32; time in pixel frames) of every video token.
pub fn video_pixel_coords(
    batch: usize,
    grid: VideoGrid,
    scale: ScaleFactors,
    causal_fix: bool,
    device: &Device,
) -> Result<Tensor> {
    let n = grid.tokens();
    let mut axes = [
        Vec::with_capacity(2 * n),
        Vec::with_capacity(2 * n),
        Vec::with_capacity(2 * n),
    ];
    let time_bound = |f: usize| -> f32 {
        let t = (f * scale.time) as i64;
        let t = if causal_fix {
            (t + 1 - scale.time as i64).max(0)
        } else {
            t
        };
        t as f32
    };
    for f in 0..grid.frames {
        for h in 0..grid.height {
            for w in 0..grid.width {
                axes[0].extend([time_bound(f), time_bound(f + 1)]);
                axes[1].extend([(h * scale.height) as f32, ((h + 1) * scale.height) as f32]);
                axes[2].extend([(w * scale.width) as f32, ((w + 1) * scale.width) as f32]);
            }
        }
    }
    let data: Vec<f32> = axes.concat();
    let one = Tensor::from_vec(data, (1, 3, n, 2), device)?;
    Ok(one.broadcast_as((batch, 3, n, 2))?.contiguous()?)
}

/// Divides the time axis of pixel coordinates `[B, 3, T, 2]` by `fps` (f32, as ltx-core).
pub fn pixel_coords_to_positions(coords: &Tensor, fps: f64) -> Result<Tensor> {
    if fps <= 0.0 {
        return Err(Error::Input(format!("frame rate {fps} is not positive")));
    }
    let coords = coords.to_dtype(DType::F32)?;
    let time = coords.narrow(1, 0, 1)?;
    let fps_t = Tensor::new(&[fps as f32], coords.device())?;
    let time = time.broadcast_div(&fps_t)?;
    let space = coords.narrow(1, 1, coords.dim(1)? - 1)?;
    Ok(Tensor::cat(&[time, space], 1)?)
}

/// Positions `[B, 3, F·H·W, 2]` of a video latent grid (ltx-core's `VideoLatentTools`).
pub fn video_positions(
    batch: usize,
    grid: VideoGrid,
    fps: f64,
    scale: ScaleFactors,
    causal_fix: bool,
    device: &Device,
) -> Result<Tensor> {
    let coords = video_pixel_coords(batch, grid, scale, causal_fix, device)?;
    pixel_coords_to_positions(&coords, fps)
}

/// Replaces the pixel coordinates of the last `N` tokens by `keyframe_idxs` `[B, 3, N, 2]`
/// (ComfyUI's appended guide tokens).
pub fn with_guide_coords(coords: &Tensor, keyframe_idxs: &Tensor) -> Result<Tensor> {
    let t = coords.dim(2)?;
    let n = keyframe_idxs.dim(2)?;
    if n > t {
        return Err(Error::Input(format!(
            "{n} guide coordinates for {t} tokens"
        )));
    }
    let head = coords.narrow(2, 0, t - n)?;
    let tail = keyframe_idxs.to_dtype(coords.dtype())?;
    Ok(Tensor::cat(&[head, tail], 2)?)
}

/// Mel/latent timing of the audio VAE (ltx-core's `AudioPatchifier` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioTiming {
    /// Waveform sample rate of the mel spectrogram (16 kHz).
    pub sample_rate: usize,
    /// Spectrogram hop length in samples (160).
    pub hop_length: usize,
    /// Mel frames per latent frame (4).
    pub latent_downsample: usize,
    /// Shift timestamps for the causal encoder.
    pub causal: bool,
    /// Index of the first latent frame (for windows into a longer sequence).
    pub shift: usize,
}

impl Default for AudioTiming {
    fn default() -> Self {
        Self {
            sample_rate: 16000,
            hop_length: 160,
            latent_downsample: 4,
            causal: true,
            shift: 0,
        }
    }
}

impl AudioTiming {
    /// Start time in seconds of latent frame `k` (f32 arithmetic as the reference).
    fn seconds(&self, k: usize) -> f32 {
        let mel = (k * self.latent_downsample) as f32;
        let mel = if self.causal {
            (mel + 1.0 - self.latent_downsample as f32).max(0.0)
        } else {
            mel
        };
        mel * self.hop_length as f32 / self.sample_rate as f32
    }
}

/// Positions `[B, 1, frames, 2]` (seconds) of audio latent frames.
pub fn audio_positions(
    batch: usize,
    frames: usize,
    timing: AudioTiming,
    device: &Device,
) -> Result<Tensor> {
    let data: Vec<f32> = (0..frames)
        .flat_map(|i| {
            let k = i + timing.shift;
            [timing.seconds(k), timing.seconds(k + 1)]
        })
        .collect();
    let one = Tensor::from_vec(data, (1, 1, frames, 2), device)?;
    Ok(one.broadcast_as((batch, 1, frames, 2))?.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_fix_keeps_the_first_frame_at_zero() {
        let grid = VideoGrid {
            frames: 2,
            height: 1,
            width: 2,
        };
        let p = video_positions(1, grid, 25.0, ScaleFactors::default(), true, &Device::Cpu)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        // time bounds: frame 0 -> [0, 1] pixel frames, frame 1 -> [1, 9]
        assert_eq!(p[0][0], [0.0, 1.0 / 25.0]);
        assert_eq!(p[0][2], [1.0 / 25.0, 9.0 / 25.0]);
        assert_eq!(p[2][1], [32.0, 64.0]);
    }

    #[test]
    fn audio_positions_follow_the_causal_mel_timing() {
        let p = audio_positions(2, 3, AudioTiming::default(), &Device::Cpu)
            .unwrap()
            .get(1)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        assert_eq!(p[0][0], [0.0, 0.01]);
        assert_eq!(p[0][2], [0.05, 0.09]);
    }

    #[test]
    fn guide_coordinates_replace_the_last_tokens() {
        let dev = Device::Cpu;
        let grid = VideoGrid {
            frames: 1,
            height: 1,
            width: 3,
        };
        let c = video_pixel_coords(1, grid, ScaleFactors::default(), true, &dev).unwrap();
        let k = Tensor::full(7f32, (1, 3, 1, 2), &dev).unwrap();
        let out = with_guide_coords(&c, &k).unwrap();
        let out = out.get(0).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(out[1][2], [7.0, 7.0]);
        assert_eq!(out[2][1], [32.0, 64.0]);
    }
}
