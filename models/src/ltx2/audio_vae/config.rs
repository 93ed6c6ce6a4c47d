//! The audio VAE's configuration, read from the checkpoint metadata section `config.audio_vae`.
//!
//! The JSON nests the architecture under `model.params.ddconfig` and the mel front end under
//! `preprocessing`; [`Config::from_json`] flattens that into the values the encoder and decoder
//! need, with ltx-core's defaults for absent keys (unknown keys are ignored).

use serde::Deserialize;

use crate::{Error, Result};

/// Normalisation layer used inside the audio VAE blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormType {
    /// `GroupNorm(32, channels, eps 1e-6)` with affine weights.
    Group,
    /// Parameter-free per-location RMS norm over channels (eps 1e-6).
    Pixel,
}

/// The axis along which convolutions are causal (the spectrogram's time axis in LTX-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CausalityAxis {
    /// Symmetric padding.
    None,
    /// Causal along the last axis (frequency in `[B, C, T, F]` layout).
    Width,
    /// Causal along axis 2 (time in `[B, C, T, F]` layout): what LTX-2 uses.
    Height,
    /// Legacy variant: causal along the last axis, different downsample padding, no crop.
    WidthCompatibility,
}

/// Attention type of the optional attention blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionType {
    /// Full softmax attention over all spectrogram positions.
    Vanilla,
    /// No attention (identity).
    None,
}

/// Flattened audio VAE configuration (shared by encoder and decoder).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Base channel count (also the size of the per-channel statistics, quirk 3 of the fixture).
    pub ch: usize,
    /// Decoder output channels (2 = stereo spectrogram).
    pub out_ch: usize,
    /// Encoder input channels (2 = stereo spectrogram).
    pub in_channels: usize,
    /// Channel multiplier per resolution level.
    pub ch_mult: Vec<usize>,
    /// Residual blocks per level (the decoder uses one more).
    pub num_res_blocks: usize,
    /// Resolutions at which attention blocks are inserted.
    pub attn_resolutions: Vec<usize>,
    /// Nominal input resolution, only used to place attention blocks.
    pub resolution: usize,
    /// Latent channels.
    pub z_channels: usize,
    /// Whether the encoder predicts mean and log-variance (only the mean is kept).
    pub double_z: bool,
    /// Normalisation layer type.
    pub norm_type: NormType,
    /// Causal axis of the convolutions.
    pub causality_axis: CausalityAxis,
    /// Attention type for attention blocks.
    pub attn_type: AttentionType,
    /// Whether the middle block has an attention block.
    pub mid_block_add_attention: bool,
    /// Waveform sample rate of the spectrogram front end (Hz).
    pub sample_rate: u32,
    /// Mel hop length in samples.
    pub mel_hop_length: u32,
    /// FFT size of the mel front end.
    pub n_fft: u32,
    /// Whether the mel front end is causal.
    pub is_causal: bool,
    /// Mel bins of the spectrogram, when the config states them.
    pub mel_bins: Option<usize>,
}

/// Time-axis compression between the mel spectrogram and the latent.
pub const LATENT_DOWNSAMPLE_FACTOR: usize = 4;

#[derive(Deserialize, Default)]
struct RawSection {
    #[serde(default)]
    model: RawModel,
    #[serde(default)]
    preprocessing: RawPreprocessing,
    #[serde(default)]
    variables: RawVariables,
}

#[derive(Deserialize, Default)]
struct RawModel {
    #[serde(default)]
    params: RawParams,
}

#[derive(Deserialize, Default)]
struct RawParams {
    #[serde(default)]
    ddconfig: RawDdConfig,
    sampling_rate: Option<u32>,
}

#[derive(Deserialize)]
struct RawDdConfig {
    ch: Option<usize>,
    out_ch: Option<usize>,
    in_channels: Option<usize>,
    ch_mult: Option<Vec<usize>>,
    num_res_blocks: Option<usize>,
    attn_resolutions: Option<Vec<usize>>,
    resolution: Option<usize>,
    z_channels: Option<usize>,
    double_z: Option<bool>,
    norm_type: Option<String>,
    #[serde(default = "default_causality_axis")]
    causality_axis: serde_json::Value,
    attn_type: Option<String>,
    mid_block_add_attention: Option<bool>,
    mel_bins: Option<usize>,
}

impl Default for RawDdConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("an empty ddconfig deserialises")
    }
}

fn default_causality_axis() -> serde_json::Value {
    serde_json::Value::String("height".into())
}

#[derive(Deserialize, Default)]
struct RawPreprocessing {
    #[serde(default)]
    stft: RawStft,
    #[serde(default)]
    mel: RawMel,
}

#[derive(Deserialize, Default)]
struct RawStft {
    hop_length: Option<u32>,
    filter_length: Option<u32>,
    causal: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawMel {
    n_mel_channels: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawVariables {
    mel_bins: Option<usize>,
}

impl Config {
    /// Parses the `audio_vae` section of the checkpoint's metadata `config`.
    pub fn from_json(section: &serde_json::Value) -> Result<Self> {
        let raw: RawSection = serde_json::from_value(section.clone())
            .map_err(|e| Error::Config(format!("audio_vae: {e}")))?;
        let dd = raw.model.params.ddconfig;
        let stft = raw.preprocessing.stft;
        let mel_bins = dd
            .mel_bins
            .or(raw.preprocessing.mel.n_mel_channels)
            .or(raw.variables.mel_bins);
        let cfg = Self {
            ch: dd.ch.unwrap_or(128),
            out_ch: dd.out_ch.unwrap_or(2),
            in_channels: dd.in_channels.unwrap_or(2),
            ch_mult: dd.ch_mult.unwrap_or_else(|| vec![1, 2, 4]),
            num_res_blocks: dd.num_res_blocks.unwrap_or(2),
            attn_resolutions: dd.attn_resolutions.unwrap_or_else(|| vec![8, 16, 32]),
            resolution: dd.resolution.unwrap_or(256),
            z_channels: dd.z_channels.unwrap_or(8),
            double_z: dd.double_z.unwrap_or(true),
            norm_type: parse_norm_type(dd.norm_type.as_deref().unwrap_or("pixel"))?,
            causality_axis: parse_causality_axis(&dd.causality_axis)?,
            attn_type: parse_attn_type(dd.attn_type.as_deref().unwrap_or("vanilla"))?,
            mid_block_add_attention: dd.mid_block_add_attention.unwrap_or(true),
            sample_rate: raw.model.params.sampling_rate.unwrap_or(16000),
            mel_hop_length: stft.hop_length.unwrap_or(160),
            n_fft: stft.filter_length.unwrap_or(1024),
            is_causal: stft.causal.unwrap_or(true),
            mel_bins,
        };
        if cfg.ch_mult.is_empty() {
            return Err(Error::Config("audio_vae: ch_mult is empty".into()));
        }
        Ok(cfg)
    }

    /// Latent frames per second of audio (`sample_rate / hop / 4`; 25 for LTX-2).
    pub fn latents_per_second(&self) -> f64 {
        self.sample_rate as f64 / self.mel_hop_length as f64 / LATENT_DOWNSAMPLE_FACTOR as f64
    }

    /// Latent frames for a video of `frames` frames at `fps` (ComfyUI's
    /// `LTXVEmptyLatentAudio`: `ceil(frames / fps * latents_per_second)` in doubles).
    pub fn latent_frames_for_video(&self, frames: usize, fps: f64) -> usize {
        (frames as f64 / fps * self.latents_per_second()).ceil() as usize
    }

    /// Mel frames the decoder produces for `latent_frames` latent frames
    /// (`4 * T - 3` when causal, `4 * T` otherwise; at least 1).
    pub fn decoded_mel_frames(&self, latent_frames: usize) -> usize {
        let frames = latent_frames * LATENT_DOWNSAMPLE_FACTOR;
        if self.causality_axis == CausalityAxis::None {
            frames
        } else {
            frames.saturating_sub(LATENT_DOWNSAMPLE_FACTOR - 1).max(1)
        }
    }
}

fn parse_norm_type(s: &str) -> Result<NormType> {
    match s {
        "group" => Ok(NormType::Group),
        "pixel" => Ok(NormType::Pixel),
        other => Err(Error::Config(format!(
            "audio_vae: unknown norm_type {other:?}"
        ))),
    }
}

fn parse_attn_type(s: &str) -> Result<AttentionType> {
    match s {
        "vanilla" => Ok(AttentionType::Vanilla),
        "none" => Ok(AttentionType::None),
        other => Err(Error::Config(format!(
            "audio_vae: unsupported attn_type {other:?}"
        ))),
    }
}

fn parse_causality_axis(v: &serde_json::Value) -> Result<CausalityAxis> {
    match v {
        serde_json::Value::Null => Ok(CausalityAxis::None),
        serde_json::Value::String(s) => match s.as_str() {
            "width" => Ok(CausalityAxis::Width),
            "height" => Ok(CausalityAxis::Height),
            "width-compatibility" => Ok(CausalityAxis::WidthCompatibility),
            other => Err(Error::Config(format!(
                "audio_vae: unknown causality_axis {other:?}"
            ))),
        },
        other => Err(Error::Config(format!(
            "audio_vae: causality_axis must be a string or null, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_ltx_core_defaults() {
        let cfg = Config::from_json(&serde_json::json!({})).unwrap();
        assert_eq!(cfg.ch, 128);
        assert_eq!(cfg.ch_mult, vec![1, 2, 4]);
        assert_eq!(cfg.causality_axis, CausalityAxis::Height);
        assert_eq!(cfg.norm_type, NormType::Pixel);
        assert_eq!(cfg.mel_bins, None);
        assert_eq!(cfg.latents_per_second(), 25.0);
        assert_eq!(cfg.decoded_mel_frames(8), 29);
    }

    #[test]
    fn latent_frames_follow_comfy_empty_latent_audio() {
        let cfg = Config::from_json(&serde_json::json!({})).unwrap();
        assert_eq!(cfg.latent_frames_for_video(97, 25.0), 97);
        assert_eq!(cfg.latent_frames_for_video(121, 24.0), 127);
        assert_eq!(cfg.latent_frames_for_video(281, 24.0), 293);
    }

    #[test]
    fn null_causality_axis_means_none() {
        let j = serde_json::json!({"model": {"params": {"ddconfig": {"causality_axis": null}}}});
        let cfg = Config::from_json(&j).unwrap();
        assert_eq!(cfg.causality_axis, CausalityAxis::None);
        assert_eq!(cfg.decoded_mel_frames(8), 32);
    }

    #[test]
    fn mel_bins_fall_back_to_preprocessing() {
        let j = serde_json::json!({"preprocessing": {"mel": {"n_mel_channels": 80}}});
        assert_eq!(Config::from_json(&j).unwrap().mel_bins, Some(80));
    }

    #[test]
    fn unknown_norm_type_is_an_error() {
        let j = serde_json::json!({"model": {"params": {"ddconfig": {"norm_type": "batch"}}}});
        assert!(Config::from_json(&j).is_err());
    }
}
