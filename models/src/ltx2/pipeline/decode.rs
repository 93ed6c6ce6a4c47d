//! The end of an ltx-pipelines run: the denoised latents through the video VAE decoder and
//! through the audio VAE decoder + vocoder.

use candle_core::{DType, Tensor};

use super::euler::AvLatents;
use crate::Result;
use crate::ltx2::audio_vae::{Audio, AudioVae};
use crate::ltx2::video_vae::VideoVae;

/// Decoded media of one run.
#[derive(Debug, Clone)]
pub struct AvMedia {
    /// Pixels `[B, 3, F, H, W]`, f32, about -1..1 (see `video_vae::video_to_u8_fhwc`).
    pub video: Tensor,
    /// Waveform `[B, channels, samples]` at the vocoder's rate.
    pub audio: Audio,
}

/// Decodes both latents: the video with the decoder's default timestep (0.05) and
/// `decode_noise` (standard normal, the latent's shape; required by the timestep-conditioned
/// LTX-2 decoder), the audio through mel and vocoder.
pub fn decode_av(
    latents: &AvLatents,
    video_vae: &VideoVae,
    audio_vae: &AudioVae,
    decode_noise: Option<&Tensor>,
) -> Result<AvMedia> {
    let video = video_vae
        .decode(&latents.video, None, decode_noise)?
        .to_dtype(DType::F32)?;
    let audio = audio_vae.decode(&latents.audio)?;
    Ok(AvMedia { video, audio })
}
