//! The LTX-2 audio VAE (keys `audio_vae.encoder.*`, `audio_vae.decoder.*`,
//! `audio_vae.per_channel_statistics.*`) and the decode path to a waveform through the vocoder.
//!
//! Layouts and conversions:
//! * latent: `[B, z=8, T_a, 16]` normalised (what the transformer denoises, in token layout
//!   `[B, T_a, 128]` via [`patchify`]); 25 latent frames per second for LTX-2.
//! * mel spectrogram: `[B, 2, 4*T_a - 3, 64]` log-mel (stereo; causal VAE drops 3 frames).
//! * waveform: the vocoder turns each mel frame into `hop = prod(upsample_rates)` samples
//!   (240 for LTX-2) at its output rate (24 kHz), so `S = 240 * (4*T_a - 3)`.
//!
//! ComfyUI's `LTXVAudioVAEDecode` returns `AUDIO = {"waveform": [B, 2, S] float32,
//! "sample_rate": 24000}`: exactly [`AudioVae::decode`] (for a nested AV latent the node decodes
//! its last, audio, part). ltx-core's `decode_audio` helper returns the same waveform with a
//! batch of one squeezed to `[2, S]` ([`Audio::squeeze_batch`]).

mod config;
mod decoder;
mod encoder;
mod layers;
pub mod mel;
mod stats;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use config::{AttentionType, CausalityAxis, Config, LATENT_DOWNSAMPLE_FACTOR, NormType};
pub use decoder::AudioDecoder;
pub use encoder::AudioEncoder;
pub use stats::{PerChannelStatistics, patchify, unpatchify};

use super::vocoder::{self, Vocoder};
use crate::{Error, Result};

/// A decoded waveform: ComfyUI's `AUDIO` value.
#[derive(Debug, Clone)]
pub struct Audio {
    /// `[B, channels, samples]`, float32.
    pub waveform: Tensor,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Audio {
    /// The waveform with a batch of one removed (`[channels, samples]`, ltx-core's layout);
    /// larger batches are returned unchanged.
    pub fn squeeze_batch(&self) -> Result<Tensor> {
        if self.waveform.rank() == 3 && self.waveform.dim(0)? == 1 {
            Ok(self.waveform.squeeze(0)?)
        } else {
            Ok(self.waveform.clone())
        }
    }
}

/// Decodes a normalised audio latent to a waveform: decoder -> mel -> vocoder, output cast to
/// float32 (`[B, 2, S]`).
pub fn decode_audio(latent: &Tensor, decoder: &AudioDecoder, vocoder: &Vocoder) -> Result<Audio> {
    let mel = decoder.forward(latent)?;
    let waveform = vocoder.forward(&mel)?.to_dtype(DType::F32)?;
    let cfg = decoder.config();
    Ok(Audio {
        waveform,
        sample_rate: vocoder
            .config()
            .output_sample_rate(cfg.sample_rate, cfg.mel_hop_length),
    })
}

/// The audio VAE as ComfyUI's `LTXVAudioVAELoader` builds it: decoder, encoder and vocoder from
/// one checkpoint (the encoder is optional because decode-only checkpoints omit it).
#[derive(Debug, Clone)]
pub struct AudioVae {
    cfg: Config,
    decoder: AudioDecoder,
    encoder: Option<AudioEncoder>,
    vocoder: Vocoder,
    dtype: DType,
    device: Device,
}

impl AudioVae {
    /// Builds the audio VAE from the checkpoint's metadata `config` (sections `audio_vae` and
    /// `vocoder`) and a VarBuilder at the checkpoint root. The encoder is loaded when
    /// `with_encoder` is set.
    pub fn new(
        checkpoint_config: &serde_json::Value,
        with_encoder: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let section = |name: &str| {
            checkpoint_config.get(name).ok_or_else(|| {
                Error::Config(format!(
                    "checkpoint metadata config has no `{name}` section"
                ))
            })
        };
        let cfg = Config::from_json(section("audio_vae")?)?;
        let voc_cfg = vocoder::Config::from_json(section("vocoder")?)?;
        let vb_vae = vb.pp("audio_vae");
        let encoder = if with_encoder {
            Some(AudioEncoder::new(&cfg, vb_vae.clone())?)
        } else {
            None
        };
        Ok(Self {
            decoder: AudioDecoder::new(&cfg, vb_vae)?,
            encoder,
            vocoder: Vocoder::new(&voc_cfg, vb.pp("vocoder"))?,
            cfg,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The audio VAE configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The decoder.
    pub fn decoder(&self) -> &AudioDecoder {
        &self.decoder
    }

    /// The vocoder.
    pub fn vocoder(&self) -> &Vocoder {
        &self.vocoder
    }

    /// Latent `[B, 8, T_a, 16]` -> log-mel `[B, 2, 4*T_a - 3, 64]`.
    pub fn decode_mel(&self, latent: &Tensor) -> Result<Tensor> {
        self.decoder.forward(latent)
    }

    /// Latent `[B, 8, T_a, 16]` -> `AUDIO` (`[B, 2, S]` float32 at the vocoder rate).
    pub fn decode(&self, latent: &Tensor) -> Result<Audio> {
        decode_audio(latent, &self.decoder, &self.vocoder)
    }

    /// Log-mel spectrogram `[B, 2, T, 64]` -> normalised latent `[B, 8, ceil(T/4), 16]`.
    pub fn encode_mel(&self, spectrogram: &Tensor) -> Result<Tensor> {
        match &self.encoder {
            Some(enc) => enc.forward(spectrogram),
            None => Err(Error::Checkpoint(
                "this audio VAE was loaded without its encoder".into(),
            )),
        }
    }

    /// Waveform `[B, C, S]` at `sample_rate` Hz -> normalised latent `[B, 8, T_a, 16]`, as
    /// ComfyUI's `AudioVAE.encode`: a mono waveform is repeated to the encoder's channels, the
    /// audio is resampled to the VAE's rate and turned into a log-mel spectrogram
    /// ([`mel::MelFrontEnd`]), and the encoder's posterior mean is normalised.
    pub fn encode_waveform(&self, waveform: &Tensor, sample_rate: u32) -> Result<Tensor> {
        let (b, c, s) = waveform.dims3()?;
        let expected = self.cfg.in_channels;
        let waveform = if c == expected {
            waveform.clone()
        } else if c == 1 {
            waveform.broadcast_as((b, expected, s))?.contiguous()?
        } else {
            return Err(Error::Input(format!(
                "Input audio must have {expected} channels, got {c}"
            )));
        };
        let mel =
            mel::MelFrontEnd::new(&self.cfg)?.forward(&waveform, sample_rate, &self.device)?;
        self.encode_mel(&mel.to_dtype(self.dtype)?)
    }

    /// The waveform sample rate of [`AudioVae::decode`] (24 000 for LTX-2).
    pub fn output_sample_rate(&self) -> u32 {
        self.vocoder
            .config()
            .output_sample_rate(self.cfg.sample_rate, self.cfg.mel_hop_length)
    }
}

#[cfg(test)]
mod tests;
