//! The audio VAE encoder: log-mel spectrogram `[B, in_channels, T, mel_bins]` -> normalised
//! latent mean `[B, z_channels, T/4, mel_bins/4]` (ltx-core `AudioEncoder`).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::config::Config;
use super::decoder::MidBlock;
use super::layers::{
    AttnBlock, CausalConv2d, Downsample, Norm, ResnetBlock, make_attn, maybe_attend,
};
use super::stats::PerChannelStatistics;
use crate::Result;

/// One resolution level of the encoder (`down.{level}.*`).
#[derive(Debug, Clone)]
struct DownStage {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    downsample: Option<Downsample>,
}

impl DownStage {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h)?;
            h = maybe_attend(self.attns.get(i), h)?;
        }
        match &self.downsample {
            Some(down) => down.forward(&h),
            None => Ok(h),
        }
    }
}

/// Audio VAE encoder (weights under `audio_vae.encoder.*`, statistics under
/// `audio_vae.per_channel_statistics.*`).
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    cfg: Config,
    stats: PerChannelStatistics,
    conv_in: CausalConv2d,
    down: Vec<DownStage>,
    mid: MidBlock,
    norm_out: Norm,
    conv_out: CausalConv2d,
}

impl AudioEncoder {
    /// Builds the encoder from the `audio_vae` prefix of the checkpoint.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let stats = PerChannelStatistics::new(cfg.ch, vb.pp("per_channel_statistics"))?;
        let vb = vb.pp("encoder");
        let axis = cfg.causality_axis;
        let levels = cfg.ch_mult.len();
        let conv_in = CausalConv2d::new(cfg.in_channels, cfg.ch, 3, axis, vb.pp("conv_in"))?;

        let mut down = Vec::with_capacity(levels);
        let mut curr_res = cfg.resolution;
        let mut block_in = cfg.ch;
        for level in 0..levels {
            let vb_stage = vb.pp("down").pp(level);
            block_in = cfg.ch
                * if level == 0 {
                    1
                } else {
                    cfg.ch_mult[level - 1]
                };
            let block_out = cfg.ch * cfg.ch_mult[level];
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for i in 0..cfg.num_res_blocks {
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
            let downsample = if level + 1 != levels {
                curr_res /= 2;
                Some(Downsample::new(block_in, axis, vb_stage.pp("downsample"))?)
            } else {
                None
            };
            down.push(DownStage {
                blocks,
                attns,
                downsample,
            });
        }
        let z_out = if cfg.double_z {
            2 * cfg.z_channels
        } else {
            cfg.z_channels
        };
        Ok(Self {
            cfg: cfg.clone(),
            stats,
            conv_in,
            down,
            mid: MidBlock::new(cfg, block_in, vb.pp("mid"))?,
            norm_out: Norm::new(cfg.norm_type, block_in, vb.pp("norm_out"))?,
            conv_out: CausalConv2d::new(block_in, z_out, 3, axis, vb.pp("conv_out"))?,
        })
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Encodes a log-mel spectrogram `[B, in_channels, T, mel_bins]` into the normalised latent
    /// mean `[B, z_channels, T', bins']` (the posterior mode; the log-variance half is dropped).
    pub fn forward(&self, spectrogram: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(spectrogram)?;
        for stage in &self.down {
            h = stage.forward(&h)?;
        }
        let h = self.mid.forward(&h)?;
        let h = self.conv_out.forward(&self.norm_out.forward(&h)?.silu()?)?;
        // The posterior mean is the first half of the channels (torch.chunk(h, 2, dim=1)[0]).
        let mean = h.narrow(1, 0, h.dim(1)?.div_ceil(2))?;
        self.stats.normalize(&mean)
    }
}
