//! Building blocks of the audio VAE: causal 2-D convolutions, normalisation, residual blocks,
//! attention and the resampling layers. Tensors are `[B, C, T, F]` (time = "height").

use candle_core::{D, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use super::config::{AttentionType, CausalityAxis, NormType};
use crate::Result;

/// Zero padding `(left, right, top, bottom)` in `F.pad` order: left/right on the last axis,
/// top/bottom on axis 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pad2d {
    left: usize,
    right: usize,
    top: usize,
    bottom: usize,
}

impl Pad2d {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        let x = if self.left + self.right > 0 {
            x.pad_with_zeros(3, self.left, self.right)?
        } else {
            x.clone()
        };
        let x = if self.top + self.bottom > 0 {
            x.pad_with_zeros(2, self.top, self.bottom)?
        } else {
            x
        };
        Ok(x)
    }
}

/// A 2-D convolution (stride 1) padded so that it is causal along `axis`
/// (`conv.weight`/`conv.bias` under the given prefix).
#[derive(Debug, Clone)]
pub(crate) struct CausalConv2d {
    pad: Pad2d,
    conv: Conv2d,
}

impl CausalConv2d {
    /// `kernel x kernel` convolution from `in_ch` to `out_ch` channels.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        axis: CausalityAxis,
        vb: VarBuilder,
    ) -> Result<Self> {
        let total = kernel - 1;
        let half = total / 2;
        let pad = match axis {
            CausalityAxis::None => Pad2d {
                left: half,
                right: total - half,
                top: half,
                bottom: total - half,
            },
            CausalityAxis::Width | CausalityAxis::WidthCompatibility => Pad2d {
                left: total,
                right: 0,
                top: half,
                bottom: total - half,
            },
            CausalityAxis::Height => Pad2d {
                left: half,
                right: total - half,
                top: total,
                bottom: 0,
            },
        };
        let conv = candle_nn::conv2d(
            in_ch,
            out_ch,
            kernel,
            Conv2dConfig::default(),
            vb.pp("conv"),
        )?;
        Ok(Self { pad, conv })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.conv.forward(&self.pad.apply(x)?)?)
    }
}

/// Normalisation layer of the blocks (`norm*` keys; only GroupNorm has weights).
#[derive(Debug, Clone)]
pub(crate) enum Norm {
    Group(candle_nn::GroupNorm),
    Pixel,
}

const NORM_EPS: f64 = 1e-6;
const GROUP_NORM_GROUPS: usize = 32;

impl Norm {
    pub fn new(norm_type: NormType, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(match norm_type {
            NormType::Group => Norm::Group(candle_nn::group_norm(
                GROUP_NORM_GROUPS,
                channels,
                NORM_EPS,
                vb,
            )?),
            NormType::Pixel => Norm::Pixel,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Group(gn) => Ok(gn.forward(x)?),
            Norm::Pixel => pixel_norm(x, NORM_EPS),
        }
    }
}

/// `x / sqrt(mean(x^2 over channels) + eps)`.
pub(crate) fn pixel_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let mean_sq = x.sqr()?.mean_keepdim(1)?;
    let rms = (mean_sq + eps)?.sqrt()?;
    Ok(x.broadcast_div(&rms)?)
}

/// Residual block: norm, SiLU, conv, norm, SiLU, conv, plus a 1x1 shortcut when the
/// channel count changes (no timestep embedding in the audio VAE).
#[derive(Debug, Clone)]
pub(crate) struct ResnetBlock {
    norm1: Norm,
    conv1: CausalConv2d,
    norm2: Norm,
    conv2: CausalConv2d,
    nin_shortcut: Option<CausalConv2d>,
}

impl ResnetBlock {
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        norm: NormType,
        axis: CausalityAxis,
        vb: VarBuilder,
    ) -> Result<Self> {
        let nin_shortcut = if in_ch != out_ch {
            Some(CausalConv2d::new(
                in_ch,
                out_ch,
                1,
                axis,
                vb.pp("nin_shortcut"),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: Norm::new(norm, in_ch, vb.pp("norm1"))?,
            conv1: CausalConv2d::new(in_ch, out_ch, 3, axis, vb.pp("conv1"))?,
            norm2: Norm::new(norm, out_ch, vb.pp("norm2"))?,
            conv2: CausalConv2d::new(out_ch, out_ch, 3, axis, vb.pp("conv2"))?,
            nin_shortcut,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        let x = match &self.nin_shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        Ok((x + h)?)
    }
}

/// Single-head self-attention over all `T x F` positions with 1x1 convolution projections.
#[derive(Debug, Clone)]
pub(crate) struct AttnBlock {
    norm: Norm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    pub fn new(channels: usize, norm: NormType, vb: VarBuilder) -> Result<Self> {
        let conv = |name: &str| {
            candle_nn::conv2d(channels, channels, 1, Conv2dConfig::default(), vb.pp(name))
        };
        Ok(Self {
            norm: Norm::new(norm, channels, vb.pp("norm"))?,
            q: conv("q")?,
            k: conv("k")?,
            v: conv("v")?,
            proj_out: conv("proj_out")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let hn = self.norm.forward(x)?;
        let q = self.q.forward(&hn)?.reshape((b, c, h * w))?;
        let k = self.k.forward(&hn)?.reshape((b, c, h * w))?;
        let v = self.v.forward(&hn)?.reshape((b, c, h * w))?;
        let q = q.transpose(1, 2)?.contiguous()?;
        let weights = (q.matmul(&k)? * (c as f64).powf(-0.5))?;
        let weights = candle_nn::ops::softmax_last_dim(&weights)?;
        let out = v.matmul(&weights.transpose(1, 2)?.contiguous()?)?;
        let out = self.proj_out.forward(&out.reshape((b, c, h, w))?)?;
        Ok((x + out)?)
    }
}

/// An optional attention block (identity when absent).
pub(crate) fn make_attn(
    channels: usize,
    attn_type: AttentionType,
    norm: NormType,
    vb: VarBuilder,
) -> Result<Option<AttnBlock>> {
    match attn_type {
        AttentionType::Vanilla => Ok(Some(AttnBlock::new(channels, norm, vb)?)),
        AttentionType::None => Ok(None),
    }
}

/// Runs `x` through an optional attention block.
pub(crate) fn maybe_attend(attn: Option<&AttnBlock>, x: Tensor) -> Result<Tensor> {
    match attn {
        Some(a) => a.forward(&x),
        None => Ok(x),
    }
}

/// Stride-2 3x3 convolution with explicit asymmetric padding (the encoder's downsampler).
#[derive(Debug, Clone)]
pub(crate) struct Downsample {
    pad: Pad2d,
    conv: Conv2d,
}

impl Downsample {
    pub fn new(channels: usize, axis: CausalityAxis, vb: VarBuilder) -> Result<Self> {
        let pad = match axis {
            CausalityAxis::None => Pad2d {
                left: 0,
                right: 1,
                top: 0,
                bottom: 1,
            },
            CausalityAxis::Width => Pad2d {
                left: 2,
                right: 0,
                top: 0,
                bottom: 1,
            },
            CausalityAxis::Height => Pad2d {
                left: 0,
                right: 1,
                top: 2,
                bottom: 0,
            },
            CausalityAxis::WidthCompatibility => Pad2d {
                left: 1,
                right: 0,
                top: 0,
                bottom: 1,
            },
        };
        let cfg = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        let conv = candle_nn::conv2d(channels, channels, 3, cfg, vb.pp("conv"))?;
        Ok(Self { pad, conv })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.conv.forward(&self.pad.apply(x)?)?)
    }
}

/// Nearest x2 upsampling of both axes, a causal 3x3 convolution, then (for a causal axis) the
/// first element of that axis dropped so lengths stay `1 + 2n`.
#[derive(Debug, Clone)]
pub(crate) struct Upsample {
    conv: CausalConv2d,
    axis: CausalityAxis,
}

impl Upsample {
    pub fn new(channels: usize, axis: CausalityAxis, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: CausalConv2d::new(channels, channels, 3, axis, vb.pp("conv"))?,
            axis,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let x = self.conv.forward(&x.upsample_nearest2d(h * 2, w * 2)?)?;
        Ok(match self.axis {
            CausalityAxis::Height => x.narrow(2, 1, x.dim(2)? - 1)?,
            CausalityAxis::Width => x.narrow(D::Minus1, 1, x.dim(D::Minus1)? - 1)?,
            CausalityAxis::None | CausalityAxis::WidthCompatibility => x,
        })
    }
}
