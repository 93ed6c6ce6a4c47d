//! ltx-core's `VideoDecoder`: normalised latent `[B, 128, T, h, w]` -> pixels
//! `[B, 3, 8(T-1)+1, 32h, 32w]` in about -1..1 (keys `vae.decoder.*`).
//!
//! LTX-2's decoder is timestep-conditioned: before decoding it mixes noise into the latent,
//! `x = s*noise + (1-s)*latent` (s = 0.025), and modulates every residual block and the output
//! norm with an embedding of `timestep * timestep_scale_multiplier` (timestep 0.05 by default).
//! The reference draws that noise with `torch.randn` inside the decoder; here the caller passes
//! it, so a decode is reproducible.
//!
//! The decoder runs as a stream over latent frames ([`DecoderStream`]): every op except the
//! causal convolutions is per voxel, and the convolutions carry the frames a later output
//! needs, so decoding a video in temporal chunks gives the same frames as decoding it at once.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::{DecoderBlock, VaeConfig};
use super::conv::{CausalConv3d, UNBOUNDED_SCRATCH, tensor_bytes};
use super::ops::{
    LatentStats, PIXEL_NORM_EPS, TimestepEmbedder, from_frames, modulate, pixel_norm, to_frames,
    unpatchify,
};
use super::resnet::{Ada, ResStack, ResnetBlock3d, ResnetStream};
use super::sampling::{DepthToSpaceStream, DepthToSpaceUp};
use super::stream::ConvStream;
use crate::{Error, Result};

/// Decode timestep ltx-core uses when none is given.
pub const DEFAULT_DECODE_TIMESTEP: f64 = 0.05;
/// Weight of the noise mixed into the latent by a timestep-conditioned decoder.
pub const DEFAULT_DECODE_NOISE_SCALE: f64 = 0.025;

/// One decoder block.
#[derive(Debug, Clone)]
enum Block {
    Res(ResStack),
    Narrow(ResnetBlock3d),
    Up(DepthToSpaceUp),
}

/// Streaming state of one block.
#[derive(Debug, Clone)]
enum BlockStream {
    Res(Vec<ResnetStream>),
    Narrow(ResnetStream),
    Up(DepthToSpaceStream),
}

impl BlockStream {
    fn held_bytes(&self) -> usize {
        match self {
            Self::Res(states) => states.iter().map(ResnetStream::held_bytes).sum(),
            Self::Narrow(state) => state.held_bytes(),
            Self::Up(state) => state.held_bytes(),
        }
    }
}

/// Weights of the timestep conditioning outside the residual blocks.
#[derive(Debug, Clone)]
struct TimestepConditioning {
    scale_multiplier: Tensor,
    last_embedder: TimestepEmbedder,
    last_table: Tensor,
}

/// Everything a decode derives from its timestep, computed once per decode.
#[derive(Debug, Clone)]
pub struct DecoderConditioning {
    blocks: Vec<Vec<Option<Ada>>>,
    last: Option<(Tensor, Tensor)>,
    batch: usize,
}

/// The state of a decode in progress (see the module docs); one per spatial tile.
#[derive(Debug, Clone)]
pub struct DecoderStream {
    conv_in: ConvStream,
    blocks: Vec<BlockStream>,
    conv_out: ConvStream,
    finished: bool,
    piece_bytes: usize,
}

impl DecoderStream {
    /// Bytes of activations the stream holds between calls.
    pub fn held_bytes(&self) -> usize {
        self.conv_in.held_bytes()
            + self.conv_out.held_bytes()
            + self
                .blocks
                .iter()
                .map(BlockStream::held_bytes)
                .sum::<usize>()
    }
}

/// The video decoder.
#[derive(Debug, Clone)]
pub struct VideoDecoder {
    conv_in: CausalConv3d,
    blocks: Vec<Block>,
    conv_out: CausalConv3d,
    stats: LatentStats,
    timestep: Option<TimestepConditioning>,
    causal: bool,
    patch_size: usize,
    latent_channels: usize,
    scale: [usize; 3],
    noise_scale: f64,
}

impl VideoDecoder {
    /// Loads the decoder (`vb` at `vae.decoder`, `stats_vb` at `vae.per_channel_statistics`).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder, stats_vb: VarBuilder) -> Result<Self> {
        let pad = cfg.decoder_padding;
        let cond = cfg.timestep_conditioning;
        // ltx-core: "3 upsampler blocks with multiplier 2" -> the first stage is 8x the base.
        let mut channels = cfg.decoder_base_channels * 8;
        let conv_in = CausalConv3d::new(
            cfg.latent_channels,
            channels,
            3,
            [1, 1, 1],
            pad,
            vb.pp("conv_in"),
        )?;
        let mut blocks = Vec::with_capacity(cfg.decoder_blocks.len());
        for (i, block) in cfg.decoder_blocks.iter().enumerate() {
            let bvb = vb.pp("up_blocks").pp(i);
            blocks.push(match *block {
                DecoderBlock::Res { inject_noise: true, .. }
                | DecoderBlock::ResNarrow { inject_noise: true, .. } => {
                    return Err(Error::Config(
                        "vae decoder: inject_noise blocks are not supported (LTX-2 does not use them)"
                            .into(),
                    ));
                }
                DecoderBlock::Res { num_layers, .. } => {
                    Block::Res(ResStack::new(channels, num_layers, pad, cond, bvb)?)
                }
                DecoderBlock::ResNarrow { divisor, .. } => {
                    let out = channels / divisor;
                    let b = ResnetBlock3d::new(channels, out, pad, false, bvb)?;
                    channels = out;
                    Block::Narrow(b)
                }
                DecoderBlock::DepthToSpace {
                    stride,
                    residual,
                    divisor,
                } => {
                    let b = DepthToSpaceUp::new(channels, stride, residual, divisor, pad, bvb)?;
                    channels = b.out_channels();
                    Block::Up(b)
                }
            });
        }
        let conv_out = CausalConv3d::new(
            channels,
            cfg.out_channels * cfg.patch_size * cfg.patch_size,
            3,
            [1, 1, 1],
            pad,
            vb.pp("conv_out"),
        )?;
        let timestep = if cond {
            Some(TimestepConditioning {
                scale_multiplier: vb.get((), "timestep_scale_multiplier")?,
                last_embedder: TimestepEmbedder::new(2 * channels, vb.pp("last_time_embedder"))?,
                last_table: vb.get((2, channels), "last_scale_shift_table")?,
            })
        } else {
            None
        };
        Ok(Self {
            conv_in,
            blocks,
            conv_out,
            stats: LatentStats::new(cfg.latent_channels, stats_vb)?,
            timestep,
            causal: cfg.causal_decoder,
            patch_size: cfg.patch_size,
            latent_channels: cfg.latent_channels,
            scale: cfg.decoder_scale(),
            noise_scale: DEFAULT_DECODE_NOISE_SCALE,
        })
    }

    /// Upscaling over (time, height, width): `(8, 32, 32)` for LTX-2.
    pub fn scale(&self) -> [usize; 3] {
        self.scale
    }

    /// Latent channels in.
    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }

    /// Whether the decoder is timestep-conditioned (and therefore needs noise).
    pub fn is_timestep_conditioned(&self) -> bool {
        self.timestep.is_some()
    }

    /// Whether decoding in temporal chunks or pieces is exact: false when a `res_x_y` block
    /// normalises its skip over the whole video (not in LTX-2); such decoders then take
    /// whole videos (spatial tiles stay possible but are never exact).
    pub fn supports_temporal_chunks(&self) -> bool {
        self.blocks.iter().all(|b| match b {
            Block::Narrow(block) => block.is_frame_local(),
            Block::Res(_) | Block::Up(_) => true,
        })
    }

    /// Pixel frames a latent of `frames` frames decodes to.
    pub fn out_frames(&self, frames: usize) -> usize {
        if frames == 0 {
            0
        } else {
            self.scale[0] * (frames - 1) + 1
        }
    }

    /// Precomputes the modulation for `batch` items decoded at `timestep` (default 0.05).
    pub fn conditioning(
        &self,
        timestep: Option<f64>,
        batch: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<DecoderConditioning> {
        let Some(tc) = &self.timestep else {
            return Ok(DecoderConditioning {
                blocks: self.blocks.iter().map(|_| Vec::new()).collect(),
                last: None,
                batch,
            });
        };
        let t = timestep.unwrap_or(DEFAULT_DECODE_TIMESTEP);
        let t = Tensor::full(t as f32, batch, device)?.to_dtype(dtype)?;
        let scaled = t.broadcast_mul(&tc.scale_multiplier.to_dtype(dtype)?)?;
        let blocks = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Res(stack) => stack.adas(Some(&scaled), dtype),
                Block::Narrow(_) | Block::Up(_) => Ok(Vec::new()),
            })
            .collect::<Result<Vec<_>>>()?;
        let emb = tc.last_embedder.forward(&scaled, dtype)?;
        let c = tc.last_table.dim(1)?;
        let values = emb
            .reshape((batch, 2, c))?
            .broadcast_add(&tc.last_table.to_dtype(dtype)?.unsqueeze(0)?)?;
        let shift = values.narrow(1, 0, 1)?.reshape((batch, 1, c, 1, 1))?;
        let scale = values.narrow(1, 1, 1)?.reshape((batch, 1, c, 1, 1))?;
        Ok(DecoderConditioning {
            blocks,
            last: Some((shift, scale)),
            batch,
        })
    }

    /// A fresh stream. Each block's output is cut into pieces of at most `piece_bytes`
    /// (at least one frame) that run through the rest of the decoder one after another, and
    /// each conv2d call's im2col scratch stays under the same cap ([`UNBOUNDED_SCRATCH`]:
    /// no cap). This bounds a call's memory however many frames the stream releases at once
    /// (at the end of a video every non-causal conv releases the frame it held back).
    pub fn stream(&self, piece_bytes: usize) -> DecoderStream {
        let blocks = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Res(stack) => BlockStream::Res(stack.stream(self.causal)),
                Block::Narrow(_) => BlockStream::Narrow(ResnetStream::new(self.causal)),
                Block::Up(_) => BlockStream::Up(DepthToSpaceStream::new(self.causal)),
            })
            .collect();
        DecoderStream {
            conv_in: ConvStream::new(self.causal),
            blocks,
            conv_out: ConvStream::new(self.causal),
            finished: false,
            piece_bytes,
        }
    }

    /// Feeds the next latent frames of a decode. `latent` and `noise` are frames-major
    /// `[B, T, C, h, w]` (normalised latent; noise is required by a timestep-conditioned
    /// decoder and ignored otherwise); `last` marks the final chunk. Returns the pixel frames
    /// `[B, n, 3, 32h, 32w]` that became final (none while the convolutions fill up).
    pub fn push(
        &self,
        cond: &DecoderConditioning,
        stream: &mut DecoderStream,
        latent: Option<&Tensor>,
        noise: Option<&Tensor>,
        last: bool,
    ) -> Result<Option<Tensor>> {
        if stream.finished {
            return Err(Error::Input(
                "video decoder: stream already finished".into(),
            ));
        }
        stream.finished = last;
        let x = match latent {
            Some(latent) => Some(self.prepare_latent(cond, latent, noise)?),
            None => None,
        };
        let mut frames = Vec::new();
        self.run_stage(cond, stream, 0, x, last, &mut frames)?;
        match frames.len() {
            0 => Ok(None),
            1 => Ok(frames.pop()),
            _ => Ok(Some(Tensor::cat(&frames, 1)?)),
        }
    }

    /// Runs stage `stage` (0: `conv_in`, then the blocks, then the output head) and,
    /// piece by piece, every later stage; final pixel frames are appended to `out`.
    fn run_stage(
        &self,
        cond: &DecoderConditioning,
        stream: &mut DecoderStream,
        stage: usize,
        x: Option<Tensor>,
        last: bool,
        out: &mut Vec<Tensor>,
    ) -> Result<()> {
        let cap = stream.piece_bytes;
        // Pieces are exact only when every stage is frame-local (see `supports_temporal_chunks`).
        let piece_cap = if self.supports_temporal_chunks() {
            cap
        } else {
            usize::MAX
        };
        let y = if stage == 0 {
            stream.conv_in.push(&self.conv_in, x, last, cap)?
        } else if let Some(block) = self.blocks.get(stage - 1) {
            match (block, &mut stream.blocks[stage - 1]) {
                (Block::Res(stack), BlockStream::Res(states)) => {
                    stack.push(states, x, &cond.blocks[stage - 1], last, cap)?
                }
                (Block::Narrow(b), BlockStream::Narrow(state)) => {
                    b.push(state, x, None, last, cap)?
                }
                (Block::Up(b), BlockStream::Up(state)) => b.push(state, x, last, cap)?,
                _ => {
                    return Err(Error::Input(
                        "video decoder: stream does not belong to this decoder".into(),
                    ));
                }
            }
        } else {
            if let Some(frames) = self.output_head(cond, stream, x, last)? {
                out.push(frames);
            }
            return Ok(());
        };
        match y {
            None if !last => Ok(()),
            None => self.run_stage(cond, stream, stage + 1, None, true, out),
            Some(y) => {
                let pieces = split_frames(&y, piece_cap)?;
                let count = pieces.len();
                for (i, piece) in pieces.into_iter().enumerate() {
                    let piece_last = last && i + 1 == count;
                    self.run_stage(cond, stream, stage + 1, Some(piece), piece_last, out)?;
                }
                Ok(())
            }
        }
    }

    /// Pixel norm, last timestep modulation, SiLU, `conv_out`, unpatchify.
    fn output_head(
        &self,
        cond: &DecoderConditioning,
        stream: &mut DecoderStream,
        x: Option<Tensor>,
        last: bool,
    ) -> Result<Option<Tensor>> {
        let x = match x {
            Some(h) => {
                let mut h = pixel_norm(&h, PIXEL_NORM_EPS)?;
                if let Some((shift, scale)) = &cond.last {
                    h = modulate(&h, shift, scale)?;
                }
                Some(candle_nn::ops::silu(&h)?)
            }
            None => None,
        };
        match stream
            .conv_out
            .push(&self.conv_out, x, last, stream.piece_bytes)?
        {
            Some(y) => Ok(Some(unpatchify(&y, self.patch_size)?)),
            None => Ok(None),
        }
    }

    /// Mixes in the noise (timestep-conditioned decoders) and un-normalises the latent.
    fn prepare_latent(
        &self,
        cond: &DecoderConditioning,
        latent: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, _, c, _, _) = latent.dims5()?;
        if c != self.latent_channels || b != cond.batch {
            return Err(Error::Input(format!(
                "video decoder: latent has batch {b} and {c} channels, expected batch {} and {} channels",
                cond.batch, self.latent_channels
            )));
        }
        let mixed = if self.timestep.is_some() {
            let noise = noise.ok_or_else(|| {
                Error::Input("video decoder: a timestep-conditioned decoder needs noise".into())
            })?;
            if noise.dims() != latent.dims() {
                return Err(Error::Input(format!(
                    "video decoder: noise shape {:?} differs from latent shape {:?}",
                    noise.dims(),
                    latent.dims()
                )));
            }
            let noise = noise.to_dtype(latent.dtype())?;
            ((noise * self.noise_scale)? + (latent * (1.0 - self.noise_scale))?)?
        } else {
            latent.clone()
        };
        self.stats.un_normalize(&mixed, 2)
    }

    /// Decodes a whole latent `[B, C, T, h, w]` at once (see [`Self::push`] for the
    /// arguments); returns `[B, 3, 8(T-1)+1, 32h, 32w]`.
    pub fn forward(
        &self,
        latent: &Tensor,
        timestep: Option<f64>,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, _, _, _, _) = latent.dims5()?;
        let cond = self.conditioning(timestep, b, latent.dtype(), latent.device())?;
        let latent = to_frames(latent)?;
        let noise = noise.map(to_frames).transpose()?;
        let mut stream = self.stream(UNBOUNDED_SCRATCH);
        let frames = self
            .push(&cond, &mut stream, Some(&latent), noise.as_ref(), true)?
            .ok_or_else(|| Error::Input("video decoder: latent has no frames".into()))?;
        from_frames(&frames)
    }
}

/// Splits `[B, T, ...]` along T into views of at most `cap` bytes (at least one frame each).
fn split_frames(x: &Tensor, cap: usize) -> Result<Vec<Tensor>> {
    let frames = x.dim(1)?;
    let frame_bytes = (tensor_bytes(x) / frames.max(1)).max(1);
    let per_piece = (cap / frame_bytes).clamp(1, frames.max(1));
    if per_piece >= frames {
        return Ok(vec![x.clone()]);
    }
    let mut pieces = Vec::with_capacity(frames.div_ceil(per_piece));
    let mut start = 0;
    while start < frames {
        let len = per_piece.min(frames - start);
        pieces.push(x.narrow(1, start, len)?);
        start += len;
    }
    Ok(pieces)
}
