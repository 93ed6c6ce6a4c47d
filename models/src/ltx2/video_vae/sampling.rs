//! Resolution-changing blocks: the encoder's `SpaceToDepthDownsample` (`compress_*_res`) and
//! the decoder's `DepthToSpaceUpsample` (`compress_time` / `compress_space` / `compress_all`).
//!
//! Temporal factor-2 blocks keep LTX's "first frame stands alone" layout: the encoder
//! duplicates the first frame before folding pairs of frames into channels, and the decoder
//! drops the first frame after unfolding, so `1 + 8k` pixel frames map to `1 + k` latents.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::config::PaddingMode;
use super::conv::CausalConv3d;
use super::ops::{depth_to_space, space_to_depth};
use super::stream::{ConvStream, FrameQueue};
use crate::{Error, Result};

/// `compress_*_res`: causal conv to `out / prod(stride)` channels then space-to-depth, plus a
/// skip that space-to-depths the input and averages channel groups (key `conv.conv.*`).
#[derive(Debug, Clone)]
pub struct SpaceToDepthDown {
    conv: CausalConv3d,
    stride: [usize; 3],
    group_size: usize,
}

impl SpaceToDepthDown {
    /// Loads a block mapping `in_channels` to `out_channels`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: [usize; 3],
        padding: PaddingMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let factor: usize = stride.iter().product();
        if !out_channels.is_multiple_of(factor)
            || !(in_channels * factor).is_multiple_of(out_channels)
        {
            return Err(Error::Config(format!(
                "space-to-depth block: {in_channels} -> {out_channels} channels does not fit stride {stride:?}"
            )));
        }
        let conv = CausalConv3d::new(
            in_channels,
            out_channels / factor,
            3,
            [1, 1, 1],
            padding,
            vb.pp("conv"),
        )?;
        Ok(Self {
            conv,
            stride,
            group_size: in_channels * factor / out_channels,
        })
    }

    /// Whole-video forward on `[B, T, C, H, W]` (causal, as in the encoder).
    pub fn forward(&self, x: &Tensor, scratch: usize) -> Result<Tensor> {
        let x = if self.stride[0] == 2 {
            Tensor::cat(&[x.narrow(1, 0, 1)?, x.clone()], 1)?
        } else {
            x.clone()
        };
        let packed = space_to_depth(&x, self.stride)?;
        let (b, d, cp, h, w) = packed.dims5()?;
        let skip = packed
            .reshape(vec![b, d, cp / self.group_size, self.group_size, h, w])?
            .mean(3)?;
        let y = space_to_depth(&self.conv.forward(&x, true, scratch)?, self.stride)?;
        Ok((y + skip)?)
    }
}

/// `compress_time` / `compress_space` / `compress_all` of the decoder: causal conv to
/// `prod(stride) * in / divisor` channels, depth-to-space, and (with `residual`) the input
/// depth-to-spaced and channel-repeated added back (key `conv.conv.*`).
#[derive(Debug, Clone)]
pub struct DepthToSpaceUp {
    conv: CausalConv3d,
    stride: [usize; 3],
    residual: bool,
    repeats: usize,
}

/// Streaming state of a [`DepthToSpaceUp`].
#[derive(Debug, Clone)]
pub struct DepthToSpaceStream {
    conv: ConvStream,
    conv_started: bool,
    skip_started: bool,
    skip: FrameQueue,
}

impl DepthToSpaceStream {
    /// A fresh state.
    pub fn new(causal: bool) -> Self {
        Self {
            conv: ConvStream::new(causal),
            conv_started: false,
            skip_started: false,
            skip: FrameQueue::default(),
        }
    }

    /// Bytes held between calls.
    pub fn held_bytes(&self) -> usize {
        self.conv.held_bytes() + self.skip.held_bytes()
    }
}

impl DepthToSpaceUp {
    /// Loads a block taking `in_channels`.
    pub fn new(
        in_channels: usize,
        stride: [usize; 3],
        residual: bool,
        divisor: usize,
        padding: PaddingMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let factor: usize = stride.iter().product();
        if !(factor * in_channels).is_multiple_of(divisor) || !factor.is_multiple_of(divisor) {
            return Err(Error::Config(format!(
                "depth-to-space block: stride {stride:?} and divisor {divisor} do not fit {in_channels} channels"
            )));
        }
        let conv = CausalConv3d::new(
            in_channels,
            factor * in_channels / divisor,
            3,
            [1, 1, 1],
            padding,
            vb.pp("conv"),
        )?;
        Ok(Self {
            conv,
            stride,
            residual,
            repeats: factor / divisor,
        })
    }

    /// Channels out.
    pub fn out_channels(&self) -> usize {
        self.conv.conv().out_channels() / self.stride.iter().product::<usize>()
    }

    /// Upsampling over (time, height, width).
    pub fn stride(&self) -> [usize; 3] {
        self.stride
    }

    /// The convolution (for footprint estimates).
    pub fn conv(&self) -> &CausalConv3d {
        &self.conv
    }

    /// Whether the input is added back.
    pub fn residual(&self) -> bool {
        self.residual
    }

    /// Feeds frames `[B, T, C, H, W]` (or none); returns the upsampled frames released.
    pub fn push(
        &self,
        state: &mut DepthToSpaceStream,
        x: Option<Tensor>,
        last: bool,
        scratch: usize,
    ) -> Result<Option<Tensor>> {
        if self.residual
            && let Some(x) = &x
        {
            let mut skip = depth_to_space(x, self.stride)?.repeat((1, 1, self.repeats, 1, 1))?;
            if !state.skip_started {
                skip = self.drop_first_frame(skip)?;
                state.skip_started = true;
            }
            state.skip.push(skip)?;
        }
        let Some(raw) = state.conv.push(&self.conv, x, last, scratch)? else {
            return Ok(None);
        };
        let mut y = depth_to_space(&raw, self.stride)?;
        drop(raw);
        if !state.conv_started {
            y = self.drop_first_frame(y)?;
            state.conv_started = true;
        }
        if self.residual {
            let skip = state.skip.pop(y.dim(1)?)?;
            y = (y + skip)?;
        }
        Ok(Some(y))
    }

    /// Drops the first frame after a temporal factor-2 unfold (identity otherwise).
    fn drop_first_frame(&self, x: Tensor) -> Result<Tensor> {
        if self.stride[0] != 2 {
            return Ok(x);
        }
        let n = x.dim(1)?;
        Ok(x.narrow(1, 1, n - 1)?)
    }
}
