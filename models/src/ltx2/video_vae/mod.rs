//! LTX-2's video VAE (ltx-core `VideoEncoder` / `VideoDecoder`) in candle.
//!
//! Loaded from the official single-file checkpoint: keys `vae.encoder.*`, `vae.decoder.*`,
//! `vae.per_channel_statistics.{mean-of-means,std-of-means}` and the metadata `config` section
//! `vae`. Compression is 8x in time and 32x in space with 128 latent channels:
//! pixels `[B, 3, 1+8k, H, W]` <-> latent `[B, 128, 1+k, H/32, W/32]`.
//!
//! ComfyUI's conventions (its `VAE` class, LTX branch), which the nodes apply around this API:
//! * encode: IMAGE `[N, H, W, C]` in 0..1 is centre-cropped to multiples of 32, becomes the N
//!   frames of one clip `[1, 3, N, H, W]`, and is mapped to `x*2 - 1` before [`VideoVae::encode`];
//!   the latent is used as is (LTX latent format: scale 1, no shift).
//! * decode: [`VideoVae::decode`] output `[B, 3, F, H, W]` becomes `(x + 1)/2` clamped to 0..1,
//!   moved to `[B, F, H, W, 3]`, and the decode nodes merge B and F into IMAGE frames.
//!
//! Decoding runs as a stream over latent frames, so long videos can be decoded in temporal
//! chunks with the exact whole-video result; [`tiling`] adds spatial tiles with blended
//! overlaps and a memory budget on top.

pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod footprint;
pub mod ops;
pub mod resnet;
pub mod sampling;
pub mod stream;
pub mod tiling;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::weights::WeightFiles;
use crate::{Error, Result};

pub use config::VaeConfig;
pub use decoder::{
    DEFAULT_DECODE_NOISE_SCALE, DEFAULT_DECODE_TIMESTEP, DecoderConditioning, DecoderStream,
    VideoDecoder,
};
pub use encoder::VideoEncoder;
pub use footprint::{Footprint, LatentDims, Target, estimate, plan_for_budget, receptive_radius};
pub use ops::LatentStats;
pub use tiling::{CallPhase, TiledDecode, TilingConfig};

/// Key prefix of the VAE inside the LTX-2 single-file checkpoint.
pub const CHECKPOINT_PREFIX: &str = "vae";

/// The video VAE: encoder, decoder and the per-channel latent statistics they share.
#[derive(Debug, Clone)]
pub struct VideoVae {
    config: VaeConfig,
    encoder: VideoEncoder,
    decoder: VideoDecoder,
    dtype: DType,
    device: Device,
}

impl VideoVae {
    /// Loads the VAE from an LTX-2 checkpoint file (config from its metadata `config.vae`;
    /// quantised checkpoints are read through [`WeightFiles`]).
    pub fn load(checkpoint: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_weight_files(&WeightFiles::open(&[checkpoint])?, dtype, device)
    }

    /// Builds the VAE from an opened checkpoint (shared with the other components).
    pub fn from_weight_files(files: &WeightFiles, dtype: DType, device: &Device) -> Result<Self> {
        let raw = files
            .metadata()
            .get("config")
            .ok_or_else(|| Error::Config("checkpoint metadata has no `config` entry".into()))?;
        let config: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| Error::Config(format!("checkpoint metadata `config` is not JSON: {e}")))?;
        let section = config
            .get("vae")
            .ok_or_else(|| Error::Config("metadata config has no `vae` section".into()))?;
        let cfg = VaeConfig::from_json(section)?;
        Self::new(cfg, files.var_builder(dtype, device)?.pp(CHECKPOINT_PREFIX))
    }

    /// Builds the VAE from a config and a VarBuilder at the `vae` prefix.
    pub fn new(config: VaeConfig, vb: VarBuilder) -> Result<Self> {
        let stats_vb = vb.pp("per_channel_statistics");
        let encoder = VideoEncoder::new(&config, vb.pp("encoder"), stats_vb.clone())?;
        let decoder = VideoDecoder::new(&config, vb.pp("decoder"), stats_vb)?;
        Ok(Self {
            config,
            encoder,
            decoder,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The parsed configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The encoder.
    pub fn encoder(&self) -> &VideoEncoder {
        &self.encoder
    }

    /// The decoder.
    pub fn decoder(&self) -> &VideoDecoder {
        &self.decoder
    }

    /// The per-channel latent statistics (also used by the latent upsampler).
    pub fn stats(&self) -> &LatentStats {
        self.encoder.stats()
    }

    /// Working dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes pixels `[B, 3, 1+8k, H, W]` in -1..1 (H, W multiples of 32) into the normalised
    /// latent `[B, 128, 1+k, H/32, W/32]`. The input is moved to the VAE's dtype and device.
    pub fn encode(&self, video: &Tensor) -> Result<Tensor> {
        let video = video.to_device(&self.device)?.to_dtype(self.dtype)?;
        self.encoder.forward(&video)
    }

    /// Decodes a normalised latent `[B, 128, T, h, w]` to pixels `[B, 3, 8(T-1)+1, 32h, 32w]`
    /// (about -1..1) in one pass. `timestep` defaults to 0.05; `noise` (same shape as the
    /// latent, standard normal) is mixed in as `0.025*noise + 0.975*latent` and is required when
    /// the decoder is timestep-conditioned (LTX-2), ignored otherwise.
    pub fn decode(
        &self,
        latent: &Tensor,
        timestep: Option<f64>,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let latent = latent.to_device(&self.device)?.to_dtype(self.dtype)?;
        let noise = noise
            .map(|n| n.to_device(&self.device)?.to_dtype(self.dtype))
            .transpose()?;
        self.decoder.forward(&latent, timestep, noise.as_ref())
    }
}

/// ltx-core's `decode_video` post-processing: `[1, 3, F, H, W]` in -1..1 -> `[F, H, W, 3]`
/// u8, `((x + 1) / 2).clamp(0, 1) * 255` truncated. (ComfyUI's IMAGE conversion is different:
/// float 0..1; the nodes do that one.)
pub fn video_to_u8_fhwc(video: &Tensor) -> Result<Tensor> {
    let (b, _, _, _, _) = video.dims5()?;
    if b != 1 {
        return Err(Error::Input(format!(
            "video_to_u8_fhwc: expected batch 1, got {b}"
        )));
    }
    let x = video.to_dtype(DType::F32)?.squeeze(0)?;
    let x = (((x + 1.0)? / 2.0)?.clamp(0f32, 1f32)? * 255.0)?;
    // `to_dtype(U8)` truncates toward zero like torch's `.to(torch.uint8)` for values >= 0.
    Ok(x.permute((1, 2, 3, 0))?.contiguous()?.to_dtype(DType::U8)?)
}
