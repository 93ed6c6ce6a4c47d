//! ltx-core's `VideoEncoder`: pixels `[B, 3, 1+8k, H, W]` in -1..1 -> normalised latent
//! means `[B, 128, 1+k, H/32, W/32]` (keys `vae.encoder.*` and the shared
//! `vae.per_channel_statistics.*`).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::config::{EncoderBlock, VaeConfig};
use super::conv::CausalConv3d;
use super::ops::{LatentStats, PIXEL_NORM_EPS, from_frames, patchify, pixel_norm, to_frames};
use super::resnet::{ResStack, ResnetBlock3d, ResnetStream};
use super::sampling::SpaceToDepthDown;
use crate::{Error, Result};

/// One encoder block.
#[derive(Debug, Clone)]
enum Block {
    Res(ResStack),
    Widen(ResnetBlock3d),
    Strided(CausalConv3d),
    SpaceToDepth(SpaceToDepthDown),
}

/// The video encoder.
#[derive(Debug, Clone)]
pub struct VideoEncoder {
    conv_in: CausalConv3d,
    blocks: Vec<Block>,
    conv_out: CausalConv3d,
    stats: LatentStats,
    patch_size: usize,
    latent_channels: usize,
    scale: [usize; 3],
}

impl VideoEncoder {
    /// Loads the encoder (`vb` at `vae.encoder`, `stats_vb` at `vae.per_channel_statistics`).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder, stats_vb: VarBuilder) -> Result<Self> {
        let pad = cfg.encoder_padding;
        let mut channels = cfg.latent_channels;
        let conv_in = CausalConv3d::new(
            cfg.in_channels * cfg.patch_size * cfg.patch_size,
            channels,
            3,
            [1, 1, 1],
            pad,
            vb.pp("conv_in"),
        )?;
        let mut blocks = Vec::with_capacity(cfg.encoder_blocks.len());
        for (i, block) in cfg.encoder_blocks.iter().enumerate() {
            let bvb = vb.pp("down_blocks").pp(i);
            blocks.push(match *block {
                EncoderBlock::Res { num_layers } => {
                    Block::Res(ResStack::new(channels, num_layers, pad, false, bvb)?)
                }
                EncoderBlock::ResWiden { multiplier } => {
                    let out = channels * multiplier;
                    let b = ResnetBlock3d::new(channels, out, pad, false, bvb)?;
                    channels = out;
                    Block::Widen(b)
                }
                EncoderBlock::Strided { stride, multiplier } => {
                    let out = channels * multiplier;
                    let conv = CausalConv3d::new(channels, out, 3, stride, pad, bvb)?;
                    channels = out;
                    Block::Strided(conv)
                }
                EncoderBlock::SpaceToDepth { stride, multiplier } => {
                    let out = channels * multiplier;
                    let b = SpaceToDepthDown::new(channels, out, stride, pad, bvb)?;
                    channels = out;
                    Block::SpaceToDepth(b)
                }
            });
        }
        let conv_out = CausalConv3d::new(
            channels,
            cfg.latent_log_var.conv_out_channels(cfg.latent_channels),
            3,
            [1, 1, 1],
            pad,
            vb.pp("conv_out"),
        )?;
        Ok(Self {
            conv_in,
            blocks,
            conv_out,
            stats: LatentStats::new(cfg.latent_channels, stats_vb)?,
            patch_size: cfg.patch_size,
            latent_channels: cfg.latent_channels,
            scale: cfg.encoder_scale(),
        })
    }

    /// Downscaling over (time, height, width).
    pub fn scale(&self) -> [usize; 3] {
        self.scale
    }

    /// The per-channel latent statistics.
    pub fn stats(&self) -> &LatentStats {
        &self.stats
    }

    /// Encodes `[B, C, F, H, W]` pixels in -1..1 to normalised latent means
    /// `[B, latent, 1 + (F-1)/8, H/32, W/32]`. Like ltx-core, trailing frames beyond
    /// `1 + 8k` are dropped (with a warning); `H` and `W` must be multiples of 32.
    pub fn forward(&self, video: &Tensor) -> Result<Tensor> {
        let (_, _, frames, h, w) = video.dims5()?;
        let [st, sh, sw] = self.scale;
        if frames == 0 || h % sh != 0 || w % sw != 0 {
            return Err(Error::Input(format!(
                "video encoder: {frames} frames of {h}x{w}; need at least one frame and sizes divisible by {sh}x{sw}"
            )));
        }
        let extra = (frames - 1) % st;
        let video = if extra != 0 {
            tracing::warn!(
                frames,
                dropped = extra,
                "video encoder: frame count is not 1 + {st}k; dropping the last frames"
            );
            video.narrow(2, 0, frames - extra)?
        } else {
            video.clone()
        };
        let scratch = super::conv::UNBOUNDED_SCRATCH;
        let mut x = patchify(&to_frames(&video)?, self.patch_size)?;
        x = self.conv_in.forward(&x, true, scratch)?;
        for block in &self.blocks {
            x = match block {
                Block::Res(stack) => {
                    let mut states = stack.stream(true);
                    let adas = vec![None; stack.blocks().len()];
                    stack
                        .push(&mut states, Some(x), &adas, true, scratch)?
                        .ok_or_else(|| Error::Input("video encoder: no frames".into()))?
                }
                Block::Widen(block) => block
                    .push(&mut ResnetStream::new(true), Some(x), None, true, scratch)?
                    .ok_or_else(|| Error::Input("video encoder: no frames".into()))?,
                Block::Strided(conv) => conv.forward(&x, true, scratch)?,
                Block::SpaceToDepth(block) => block.forward(&x, scratch)?,
            };
        }
        x = candle_nn::ops::silu(&pixel_norm(&x, PIXEL_NORM_EPS)?)?;
        x = self.conv_out.forward(&x, true, scratch)?;
        let means = x.narrow(2, 0, self.latent_channels)?;
        from_frames(&self.stats.normalize(&means, 2)?)
    }
}
