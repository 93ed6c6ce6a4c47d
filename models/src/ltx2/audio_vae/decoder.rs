//! The audio VAE decoder: normalised latent `[B, z, T, F/4]` -> log-mel spectrogram
//! `[B, out_ch, 4T-3, mel_bins]` (ltx-core `AudioDecoder`).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::config::Config;
use super::layers::{
    AttnBlock, CausalConv2d, Norm, ResnetBlock, Upsample, make_attn, maybe_attend,
};
use super::stats::PerChannelStatistics;
use crate::Result;

/// Two residual blocks with an optional attention block between them (`mid.*`).
#[derive(Debug, Clone)]
pub(crate) struct MidBlock {
    block_1: ResnetBlock,
    attn_1: Option<AttnBlock>,
    block_2: ResnetBlock,
}

impl MidBlock {
    pub fn new(cfg: &Config, channels: usize, vb: VarBuilder) -> Result<Self> {
        let attn_1 = if cfg.mid_block_add_attention {
            make_attn(channels, cfg.attn_type, cfg.norm_type, vb.pp("attn_1"))?
        } else {
            None
        };
        let block = |name: &str| {
            ResnetBlock::new(
                channels,
                channels,
                cfg.norm_type,
                cfg.causality_axis,
                vb.pp(name),
            )
        };
        Ok(Self {
            block_1: block("block_1")?,
            attn_1,
            block_2: block("block_2")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.block_1.forward(x)?;
        let h = maybe_attend(self.attn_1.as_ref(), h)?;
        self.block_2.forward(&h)
    }
}

/// One resolution level of the decoder (`up.{level}.*`).
#[derive(Debug, Clone)]
struct UpStage {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    upsample: Option<Upsample>,
}

impl UpStage {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h)?;
            h = maybe_attend(self.attns.get(i), h)?;
        }
        match &self.upsample {
            Some(up) => up.forward(&h),
            None => Ok(h),
        }
    }
}

/// Audio VAE decoder (weights under `audio_vae.decoder.*`, statistics under
/// `audio_vae.per_channel_statistics.*`).
#[derive(Debug, Clone)]
pub struct AudioDecoder {
    cfg: Config,
    stats: PerChannelStatistics,
    conv_in: CausalConv2d,
    mid: MidBlock,
    /// Stages in execution order (highest level first).
    up: Vec<UpStage>,
    norm_out: Norm,
    conv_out: CausalConv2d,
}

impl AudioDecoder {
    /// Builds the decoder from the `audio_vae` prefix of the checkpoint.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let stats = PerChannelStatistics::new(cfg.ch, vb.pp("per_channel_statistics"))?;
        let vb = vb.pp("decoder");
        let levels = cfg.ch_mult.len();
        let base_channels = cfg.ch * cfg.ch_mult[levels - 1];
        let axis = cfg.causality_axis;
        let conv_in = CausalConv2d::new(cfg.z_channels, base_channels, 3, axis, vb.pp("conv_in"))?;
        let mid = MidBlock::new(cfg, base_channels, vb.pp("mid"))?;

        let mut up = Vec::with_capacity(levels);
        let mut block_in = base_channels;
        let mut curr_res = cfg.resolution >> (levels - 1);
        for level in (0..levels).rev() {
            let vb_stage = vb.pp("up").pp(level);
            let block_out = cfg.ch * cfg.ch_mult[level];
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for i in 0..=cfg.num_res_blocks {
                let vb_block = vb_stage.pp("block").pp(i);
                blocks.push(ResnetBlock::new(
                    block_in,
                    block_out,
                    cfg.norm_type,
                    axis,
                    vb_block,
                )?);
                block_in = block_out;
                if cfg.attn_resolutions.contains(&curr_res) {
                    let vb_attn = vb_stage.pp("attn").pp(i);
                    if let Some(a) = make_attn(block_in, cfg.attn_type, cfg.norm_type, vb_attn)? {
                        attns.push(a);
                    }
                }
            }
            let upsample = if level != 0 {
                curr_res *= 2;
                Some(Upsample::new(block_in, axis, vb_stage.pp("upsample"))?)
            } else {
                None
            };
            up.push(UpStage {
                blocks,
                attns,
                upsample,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            stats,
            conv_in,
            mid,
            up,
            norm_out: Norm::new(cfg.norm_type, block_in, vb.pp("norm_out"))?,
            conv_out: CausalConv2d::new(block_in, cfg.out_ch, 3, axis, vb.pp("conv_out"))?,
        })
    }

    /// The configuration the decoder was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Decodes a normalised latent `[B, z_channels, T, bins]` into a log-mel spectrogram
    /// `[B, out_ch, decoded_mel_frames(T), mel_bins]` (cropped or zero-padded to that shape).
    pub fn forward(&self, latent: &Tensor) -> Result<Tensor> {
        let (_, _, frames, bins) = latent.dims4()?;
        let x = self.stats.un_normalize(latent)?;
        let mut h = self.mid.forward(&self.conv_in.forward(&x)?)?;
        for stage in &self.up {
            h = stage.forward(&h)?;
        }
        let h = self.conv_out.forward(&self.norm_out.forward(&h)?.silu()?)?;
        let target_frames = self.cfg.decoded_mel_frames(frames);
        let target_bins = self.cfg.mel_bins.unwrap_or(bins);
        fit_shape(&h, self.cfg.out_ch, target_frames, target_bins)
    }
}

/// Crops `[B, C, T, F]` to at most `(channels, frames, bins)` and zero-pads T/F up to it.
fn fit_shape(x: &Tensor, channels: usize, frames: usize, bins: usize) -> Result<Tensor> {
    let (_, c, t, f) = x.dims4()?;
    let x = x
        .narrow(1, 0, c.min(channels))?
        .narrow(2, 0, t.min(frames))?
        .narrow(3, 0, f.min(bins))?;
    let x = x.pad_with_zeros(2, 0, frames.saturating_sub(t))?;
    Ok(x.pad_with_zeros(3, 0, bins.saturating_sub(f))?)
}
