//! LTX-2's latent upsampler (ltx-core `LatentUpsampler`), e.g. the x2 spatial upscaler
//! `ltx-2-spatial-upscaler-x2-1.0`, and [`LatentUpsampler::upsample_video`], which wraps it in
//! the video VAE's per-channel un-normalise / re-normalise as ltx-core's `upsample_video` and
//! ComfyUI's `LTXVLatentUpsampler` do.
//!
//! The file has unprefixed keys and its config as JSON in metadata `config`. Structure:
//! conv(3) -> GroupNorm(32) -> SiLU -> N residual blocks -> upsampling (conv + pixel shuffle)
//! -> N residual blocks -> conv(3). 3-D convolutions here are ordinary zero-padded ones (not
//! the VAE's causal convs); the spatial upsampling conv is 2-D, per frame.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::ltx2::video_vae::config::PaddingMode;
use crate::ltx2::video_vae::conv::{Conv3d, UNBOUNDED_SCRATCH, conv2d};
use crate::ltx2::video_vae::ops::{
    LatentStats, depth_to_space, from_frames, group_norm, to_frames,
};
use crate::weights::WeightFiles;
use crate::{Error, Result};

/// GroupNorm groups and epsilon of the upsampler (`nn.GroupNorm(32, C)` defaults).
const NORM_GROUPS: usize = 32;
const NORM_EPS: f64 = 1e-5;

/// The upsampler's metadata `config` (keys and defaults of ltx-core's configurator).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UpsamplerConfig {
    /// Latent channels (128).
    #[serde(default = "in_channels_default")]
    pub in_channels: usize,
    /// Width of the inner layers (1024 for LTX-2's x2 upscaler).
    #[serde(default = "mid_channels_default")]
    pub mid_channels: usize,
    /// Residual blocks before and after the upsampling.
    #[serde(default = "blocks_default")]
    pub num_blocks_per_stage: usize,
    /// 3: Conv3d and whole-video GroupNorm; 2: everything per frame.
    #[serde(default = "dims_default")]
    pub dims: usize,
    /// Doubles height and width.
    #[serde(default = "yes")]
    pub spatial_upsample: bool,
    /// Doubles the frames (minus the first).
    #[serde(default)]
    pub temporal_upsample: bool,
    /// Spatial factor; 2 unless the rational resampler is used.
    #[serde(default = "scale_default")]
    pub spatial_scale: f64,
    /// Rational-factor resampling (pixel shuffle up, blurred stride down).
    #[serde(default)]
    pub rational_resampler: bool,
}

fn in_channels_default() -> usize {
    128
}
fn mid_channels_default() -> usize {
    512
}
fn blocks_default() -> usize {
    4
}
fn dims_default() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn scale_default() -> f64 {
    2.0
}

/// A convolution of the upsampler over frames-major `[B, T, C, H, W]`, zero-padded by 1 in
/// every convolved dim (`Conv3d(k=3, padding=1)`, or `Conv2d` per frame).
#[derive(Debug, Clone)]
struct SameConv {
    conv: Conv3d,
    temporal: bool,
}

impl SameConv {
    fn new(cin: usize, cout: usize, three_d: bool, vb: VarBuilder) -> Result<Self> {
        let weight = if three_d {
            vb.get((cout, cin, 3, 3, 3), "weight")?
        } else {
            vb.get((cout, cin, 3, 3), "weight")?.unsqueeze(2)?
        };
        let bias = vb.get(cout, "bias")?;
        Ok(Self {
            conv: Conv3d::from_weights(weight, Some(bias), [1, 1, 1], PaddingMode::Zeros)?,
            temporal: three_d,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.temporal {
            self.conv
                .forward_frames(&x.pad_with_zeros(1, 1, 1)?, UNBOUNDED_SCRATCH)
        } else {
            self.conv.forward_frames(x, UNBOUNDED_SCRATCH)
        }
    }
}

/// `nn.GroupNorm(32, C)` over the whole video (dims 3) or per frame (dims 2).
#[derive(Debug, Clone)]
struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    per_frame: bool,
}

impl GroupNorm {
    fn new(channels: usize, per_frame: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(channels, "weight")?,
            bias: vb.get(channels, "bias")?,
            per_frame,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.per_frame {
            return group_norm(x, NORM_GROUPS, &self.weight, &self.bias, NORM_EPS);
        }
        let (b, t, c, h, w) = x.dims5()?;
        let frames = x.reshape((b * t, 1, c, h, w))?;
        let y = group_norm(&frames, NORM_GROUPS, &self.weight, &self.bias, NORM_EPS)?;
        Ok(y.reshape((b, t, c, h, w))?)
    }
}

/// `ResBlock`: conv, norm, SiLU, conv, norm, SiLU(x + residual).
#[derive(Debug, Clone)]
struct ResBlock {
    conv1: SameConv,
    norm1: GroupNorm,
    conv2: SameConv,
    norm2: GroupNorm,
}

impl ResBlock {
    fn new(channels: usize, three_d: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1: SameConv::new(channels, channels, three_d, vb.pp("conv1"))?,
            norm1: GroupNorm::new(channels, !three_d, vb.pp("norm1"))?,
            conv2: SameConv::new(channels, channels, three_d, vb.pp("conv2"))?,
            norm2: GroupNorm::new(channels, !three_d, vb.pp("norm2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = candle_nn::ops::silu(&self.norm1.forward(&self.conv1.forward(x)?)?)?;
        let h = self.norm2.forward(&self.conv2.forward(&h)?)?;
        Ok(candle_nn::ops::silu(&(h + x)?)?)
    }
}

/// The upsampling stage (key prefix `upsampler`).
#[derive(Debug, Clone)]
enum Upsample {
    /// `Conv2d(mid, 4 mid)` per frame + 2-D pixel shuffle (`upsampler.0.*`).
    Spatial(SameConv),
    /// `Conv3d(mid, 2 mid)` + temporal pixel shuffle, first frame dropped (`upsampler.0.*`).
    Temporal(SameConv),
    /// `Conv3d(mid, 8 mid)` + 3-D pixel shuffle, first frame dropped (`upsampler.0.*`).
    SpatioTemporal(SameConv),
    /// `Conv2d(mid, num^2 mid)` + pixel shuffle by `num`, binomial blur, stride `den`
    /// (`upsampler.conv.*`).
    Rational {
        conv: SameConv,
        num: usize,
        den: usize,
    },
}

impl Upsample {
    fn new(cfg: &UpsamplerConfig, vb: VarBuilder) -> Result<Self> {
        let mid = cfg.mid_channels;
        match (cfg.spatial_upsample, cfg.temporal_upsample) {
            (true, true) => Ok(Self::SpatioTemporal(SameConv::new(
                mid,
                8 * mid,
                true,
                vb.pp("0"),
            )?)),
            (true, false) if cfg.rational_resampler => {
                let (num, den) = rational_factor(cfg.spatial_scale)?;
                Ok(Self::Rational {
                    conv: SameConv::new(mid, num * num * mid, false, vb.pp("conv"))?,
                    num,
                    den,
                })
            }
            (true, false) => Ok(Self::Spatial(SameConv::new(
                mid,
                4 * mid,
                false,
                vb.pp("0"),
            )?)),
            (false, true) => Ok(Self::Temporal(SameConv::new(
                mid,
                2 * mid,
                true,
                vb.pp("0"),
            )?)),
            (false, false) => Err(Error::Config(
                "latent upsampler: neither spatial_upsample nor temporal_upsample is set".into(),
            )),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Spatial(conv) => depth_to_space(&conv.forward(x)?, [1, 2, 2]),
            Self::Temporal(conv) => drop_first_frame(depth_to_space(&conv.forward(x)?, [2, 1, 1])?),
            Self::SpatioTemporal(conv) => {
                drop_first_frame(depth_to_space(&conv.forward(x)?, [2, 2, 2])?)
            }
            Self::Rational { conv, num, den } => {
                let up = depth_to_space(&conv.forward(x)?, [1, *num, *num])?;
                blur_downsample(&up, *den)
            }
        }
    }
}

/// ltx-core's supported rational scales as (up, down) factors.
fn rational_factor(scale: f64) -> Result<(usize, usize)> {
    const TABLE: [(f64, usize, usize); 4] = [(0.75, 3, 4), (1.5, 3, 2), (2.0, 2, 1), (4.0, 4, 1)];
    TABLE
        .iter()
        .find(|(s, _, _)| (*s - scale).abs() < 1e-9)
        .map(|&(_, n, d)| (n, d))
        .ok_or_else(|| {
            Error::Config(format!(
                "latent upsampler: unsupported spatial_scale {scale}"
            ))
        })
}

fn drop_first_frame(x: Tensor) -> Result<Tensor> {
    let n = x.dim(1)?;
    Ok(x.narrow(1, 1, n - 1)?)
}

/// `BlurDownsample`: depthwise 5x5 binomial blur (`[1,4,6,4,1]` outer product, normalised),
/// zero padding 2, stride `stride`, per frame.
fn blur_downsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let (b, t, c, h, w) = x.dims5()?;
    let taps = [1f64, 4., 6., 4., 1.];
    let mut k2d = Vec::with_capacity(25);
    for a in taps {
        for bb in taps {
            k2d.push((a * bb / 256.0) as f32);
        }
    }
    let kernel = Tensor::from_vec(k2d, (1, 1, 5, 5), x.device())?
        .to_dtype(x.dtype())?
        .repeat((c, 1, 1, 1))?;
    let y = conv2d(&x.reshape((b * t, c, h, w))?, &kernel, 2, stride, c)?;
    let (_, _, ho, wo) = y.dims4()?;
    Ok(y.reshape((b, t, c, ho, wo))?)
}

/// The latent upsampler.
#[derive(Debug, Clone)]
pub struct LatentUpsampler {
    config: UpsamplerConfig,
    initial_conv: SameConv,
    initial_norm: GroupNorm,
    res_blocks: Vec<ResBlock>,
    upsampler: Upsample,
    post_upsample_res_blocks: Vec<ResBlock>,
    final_conv: SameConv,
    dtype: DType,
    device: Device,
}

impl LatentUpsampler {
    /// Loads an upsampler file (unprefixed keys, metadata `config`), read through
    /// [`WeightFiles`].
    pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let files = WeightFiles::open(&[path])?;
        let raw = files.metadata().get("config").ok_or_else(|| {
            Error::Config(format!(
                "{}: no `config` entry in the metadata",
                path.display()
            ))
        })?;
        let config: UpsamplerConfig = serde_json::from_str(raw)
            .map_err(|e| Error::Config(format!("{}: upsampler config: {e}", path.display())))?;
        Self::new(config, files.var_builder(dtype, device)?)
    }

    /// Builds the upsampler from its config and weights.
    pub fn new(config: UpsamplerConfig, vb: VarBuilder) -> Result<Self> {
        let three_d = match config.dims {
            3 => true,
            2 => false,
            d => {
                return Err(Error::Config(format!(
                    "latent upsampler: dims must be 2 or 3, got {d}"
                )));
            }
        };
        if !three_d && config.temporal_upsample {
            return Err(Error::Config(
                "latent upsampler: temporal upsampling needs dims 3".into(),
            ));
        }
        let (cin, mid) = (config.in_channels, config.mid_channels);
        let blocks = |name: &str| -> Result<Vec<ResBlock>> {
            (0..config.num_blocks_per_stage)
                .map(|i| ResBlock::new(mid, three_d, vb.pp(name).pp(i)))
                .collect()
        };
        Ok(Self {
            initial_conv: SameConv::new(cin, mid, three_d, vb.pp("initial_conv"))?,
            initial_norm: GroupNorm::new(mid, !three_d, vb.pp("initial_norm"))?,
            res_blocks: blocks("res_blocks")?,
            upsampler: Upsample::new(&config, vb.pp("upsampler"))?,
            post_upsample_res_blocks: blocks("post_upsample_res_blocks")?,
            final_conv: SameConv::new(mid, cin, three_d, vb.pp("final_conv"))?,
            dtype: vb.dtype(),
            device: vb.device().clone(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &UpsamplerConfig {
        &self.config
    }

    /// Upsamples a raw (un-normalised) latent `[B, C, T, H, W]`; the x2 spatial model returns
    /// `[B, C, T, 2H, 2W]`. The input is moved to the upsampler's dtype and device.
    pub fn upsample(&self, latent: &Tensor) -> Result<Tensor> {
        let latent = latent.to_device(&self.device)?.to_dtype(self.dtype)?;
        let mut x = self.initial_conv.forward(&to_frames(&latent)?)?;
        x = candle_nn::ops::silu(&self.initial_norm.forward(&x)?)?;
        for block in &self.res_blocks {
            x = block.forward(&x)?;
        }
        x = self.upsampler.forward(&x)?;
        for block in &self.post_upsample_res_blocks {
            x = block.forward(&x)?;
        }
        from_frames(&self.final_conv.forward(&x)?)
    }

    /// ltx-core's `upsample_video` / ComfyUI's `LTXVLatentUpsampler`: un-normalise a
    /// normalised latent with the video VAE's statistics, upsample, normalise again.
    pub fn upsample_video(&self, latent: &Tensor, stats: &LatentStats) -> Result<Tensor> {
        let latent = latent.to_device(&self.device)?.to_dtype(self.dtype)?;
        let raw = stats.un_normalize(&latent, 1)?;
        stats.normalize(&self.upsample(&raw)?, 1)
    }
}
