//! Residual blocks of the VAE: ltx-core's `ResnetBlock3D` and `UNetMidBlock3D` (`res_x`).
//!
//! A block is pixel-norm -> (timestep modulation) -> SiLU -> causal conv, twice, plus a skip.
//! Everything but the two convolutions acts per voxel, so a block can run on a stream of frame
//! chunks: the skip frames wait in a [`FrameQueue`] until the convolutions release the frames
//! they pair with. The channel-changing variant (`res_x_y`) normalises its skip with a
//! GroupNorm over the whole video, which is not frame-local; it runs whole videos only.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use super::config::PaddingMode;
use super::conv::{CausalConv3d, PointwiseConv};
use super::ops::{PIXEL_NORM_EPS, TimestepEmbedder, group_norm, modulate, pixel_norm};
use super::stream::{ConvStream, FrameQueue};
use crate::{Error, Result};

/// GroupNorm epsilon of the channel-changing skip (`norm3`, `resnet_eps`).
const SKIP_NORM_EPS: f64 = 1e-6;

/// Per-channel modulation of one timestep-conditioned block, each `[B, 1, C, 1, 1]`.
#[derive(Debug, Clone)]
pub struct Ada {
    shift1: Tensor,
    scale1: Tensor,
    shift2: Tensor,
    scale2: Tensor,
}

/// The channel-changing skip: GroupNorm(1 group) then a 1x1x1 conv.
#[derive(Debug, Clone)]
struct Shortcut {
    norm_weight: Tensor,
    norm_bias: Tensor,
    conv: PointwiseConv,
}

/// ltx-core's `ResnetBlock3D` (keys `conv1.conv.*`, `conv2.conv.*`, optional
/// `scale_shift_table`, `norm3.*`, `conv_shortcut.*`).
#[derive(Debug, Clone)]
pub struct ResnetBlock3d {
    conv1: CausalConv3d,
    conv2: CausalConv3d,
    shortcut: Option<Shortcut>,
    scale_shift_table: Option<Tensor>,
    channels: usize,
}

/// Streaming state of a [`ResnetBlock3d`].
#[derive(Debug, Clone)]
pub struct ResnetStream {
    conv1: ConvStream,
    conv2: ConvStream,
    skip: FrameQueue,
}

impl ResnetStream {
    /// A fresh state.
    pub fn new(causal: bool) -> Self {
        Self {
            conv1: ConvStream::new(causal),
            conv2: ConvStream::new(causal),
            skip: FrameQueue::default(),
        }
    }

    /// Bytes held between calls.
    pub fn held_bytes(&self) -> usize {
        self.conv1.held_bytes() + self.conv2.held_bytes() + self.skip.held_bytes()
    }
}

impl ResnetBlock3d {
    /// Loads a block mapping `in_channels` to `out_channels`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        padding: PaddingMode,
        timestep_conditioning: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv =
            |cin, name| CausalConv3d::new(cin, out_channels, 3, [1, 1, 1], padding, vb.pp(name));
        let conv1 = conv(in_channels, "conv1")?;
        let conv2 = conv(out_channels, "conv2")?;
        let shortcut = if in_channels != out_channels {
            Some(Shortcut {
                norm_weight: vb.pp("norm3").get(in_channels, "weight")?,
                norm_bias: vb.pp("norm3").get(in_channels, "bias")?,
                conv: PointwiseConv::new(in_channels, out_channels, vb.pp("conv_shortcut"))?,
            })
        } else {
            None
        };
        let scale_shift_table = if timestep_conditioning {
            Some(vb.get((4, in_channels), "scale_shift_table")?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            shortcut,
            scale_shift_table,
            channels: in_channels,
        })
    }

    /// Whether every op but the convolutions is per voxel (so chunked streaming is exact).
    pub fn is_frame_local(&self) -> bool {
        self.shortcut.is_none()
    }

    /// The two convolutions (for footprint estimates).
    pub fn convs(&self) -> [&CausalConv3d; 2] {
        [&self.conv1, &self.conv2]
    }

    /// The block's modulation from its stack's `[B, 4C]` timestep embedding.
    pub fn ada(&self, embedding: &Tensor) -> Result<Option<Ada>> {
        let Some(table) = &self.scale_shift_table else {
            return Ok(None);
        };
        let b = embedding.dim(0)?;
        let c = self.channels;
        let values = embedding
            .reshape((b, 4, c))?
            .broadcast_add(&table.to_dtype(embedding.dtype())?.unsqueeze(0)?)?;
        let part =
            |i: usize| -> Result<Tensor> { Ok(values.narrow(1, i, 1)?.reshape((b, 1, c, 1, 1))?) };
        Ok(Some(Ada {
            shift1: part(0)?,
            scale1: part(1)?,
            shift2: part(2)?,
            scale2: part(3)?,
        }))
    }

    /// Feeds frames `[B, T, C, H, W]` (or none) through the block; returns the frames released.
    pub fn push(
        &self,
        state: &mut ResnetStream,
        x: Option<Tensor>,
        ada: Option<&Ada>,
        last: bool,
        scratch: usize,
    ) -> Result<Option<Tensor>> {
        if self.scale_shift_table.is_some() && ada.is_none() {
            return Err(Error::Input(
                "resnet block: timestep-conditioned block needs a timestep".into(),
            ));
        }
        let mut hidden = None;
        if let Some(x) = x {
            let skip = match &self.shortcut {
                None => x.clone(),
                Some(s) => s.conv.forward(&group_norm(
                    &x,
                    1,
                    &s.norm_weight,
                    &s.norm_bias,
                    SKIP_NORM_EPS,
                )?)?,
            };
            state.skip.push(skip)?;
            hidden = Some(pre_activation(&x, ada.map(|a| (&a.shift1, &a.scale1)))?);
        }
        let mut hidden = state.conv1.push(&self.conv1, hidden, last, scratch)?;
        if let Some(h) = hidden.take() {
            hidden = Some(pre_activation(&h, ada.map(|a| (&a.shift2, &a.scale2)))?);
        }
        let Some(h) = state.conv2.push(&self.conv2, hidden, last, scratch)? else {
            return Ok(None);
        };
        let skip = state.skip.pop(h.dim(1)?)?;
        Ok(Some((skip + h)?))
    }
}

/// Pixel norm, optional `x * (1 + scale) + shift`, SiLU.
fn pre_activation(x: &Tensor, modulation: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    let mut h = pixel_norm(x, PIXEL_NORM_EPS)?;
    if let Some((shift, scale)) = modulation {
        h = modulate(&h, shift, scale)?;
    }
    Ok(candle_nn::ops::silu(&h)?)
}

/// `res_x`: ltx-core's `UNetMidBlock3D`, `num_layers` blocks sharing one timestep embedding
/// (keys `res_blocks.N.*`, `time_embedder.*`).
#[derive(Debug, Clone)]
pub struct ResStack {
    time_embedder: Option<TimestepEmbedder>,
    blocks: Vec<ResnetBlock3d>,
}

impl ResStack {
    /// Loads `num_layers` blocks of width `channels`.
    pub fn new(
        channels: usize,
        num_layers: usize,
        padding: PaddingMode,
        timestep_conditioning: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let time_embedder = if timestep_conditioning {
            Some(TimestepEmbedder::new(4 * channels, vb.pp("time_embedder"))?)
        } else {
            None
        };
        let blocks = (0..num_layers)
            .map(|i| {
                ResnetBlock3d::new(
                    channels,
                    channels,
                    padding,
                    timestep_conditioning,
                    vb.pp("res_blocks").pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            time_embedder,
            blocks,
        })
    }

    /// The blocks in order.
    pub fn blocks(&self) -> &[ResnetBlock3d] {
        &self.blocks
    }

    /// Each block's modulation for `[B]` scaled timesteps (`None` when not conditioned).
    pub fn adas(&self, scaled_timestep: Option<&Tensor>, dtype: DType) -> Result<Vec<Option<Ada>>> {
        let embedding = match (&self.time_embedder, scaled_timestep) {
            (Some(embedder), Some(t)) => Some(embedder.forward(t, dtype)?),
            (Some(_), None) => {
                return Err(Error::Input(
                    "res_x block: timestep-conditioned decoder needs a timestep".into(),
                ));
            }
            (None, _) => None,
        };
        self.blocks
            .iter()
            .map(|block| match &embedding {
                Some(e) => block.ada(e),
                None => Ok(None),
            })
            .collect()
    }

    /// A fresh streaming state.
    pub fn stream(&self, causal: bool) -> Vec<ResnetStream> {
        self.blocks
            .iter()
            .map(|_| ResnetStream::new(causal))
            .collect()
    }

    /// Feeds frames through every block.
    pub fn push(
        &self,
        states: &mut [ResnetStream],
        mut x: Option<Tensor>,
        adas: &[Option<Ada>],
        last: bool,
        scratch: usize,
    ) -> Result<Option<Tensor>> {
        for (i, block) in self.blocks.iter().enumerate() {
            let ada = adas.get(i).and_then(Option::as_ref);
            x = block.push(&mut states[i], x, ada, last, scratch)?;
        }
        Ok(x)
    }
}
