//! Tiled decoding: spatial tiles with blended overlaps, temporal chunks, bounded memory.
//!
//! * Time: the latent is fed to the decoder stream in chunks of `chunk` latent frames. The
//!   stream's causal convolutions carry the frames later outputs depend on, so chunking
//!   changes memory, never the result (unlike ltx-core's and ComfyUI's overlapping temporal
//!   tiles, which blend independently decoded chunks). Inside a call, every block's output is
//!   cut into pieces of at most `piece_bytes` that run through the rest of the decoder one by
//!   one (as ComfyUI's decoder does), which is what bounds the fine, wide stages' memory.
//! * Space: the latent is cut into tiles as ltx-core's `split_with_symmetric_overlaps` does
//!   (tiles of `tile` latents stepping by `tile - overlap`); each tile is decoded alone and the
//!   overlaps are blended with ltx-core's trapezoidal masks (linear ramps of
//!   `overlap * 32` pixels), normalised by the summed weights. A tile can also be decoded with
//!   `context` extra latents on each inner side that are decoded and then discarded: the
//!   decoder is local (pixel norm, 3x3x3 convs), so with `context` at least its receptive
//!   radius ([`super::footprint::receptive_radius`]) tiled and whole decodes agree to rounding.
//! * Budget: [`super::footprint::estimate`] gives the peak working set of a configuration and
//!   [`super::footprint::plan_for_budget`] picks one that fits a byte budget.
//!
//! Decoding proceeds chunk by chunk over all tiles ([`TiledDecode`] is an iterator of frame
//! chunks), and tiles can be joined on another device ([`TiledDecode::with_output_device`]).
//! A frame is final once the latents within the decoder's temporal reach (~22 latent frames
//! for LTX-2) have been fed, so short clips come out in one chunk at the end.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use super::VideoVae;
use super::conv::UNBOUNDED_SCRATCH;
use super::decoder::{DecoderConditioning, DecoderStream};
use super::ops::{from_frames, to_frames};
use crate::{Error, Result};

/// How to tile a decode, in latent units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilingConfig {
    /// Spatial tile side in latents (`None`: whole frames).
    pub tile: Option<usize>,
    /// Overlap of neighbouring tiles in latents (blended over `overlap * 32` pixels).
    pub overlap: usize,
    /// Extra latents decoded around each tile's inner sides and discarded.
    pub context: usize,
    /// Latent frames per temporal chunk (`None`: all at once).
    pub chunk: Option<usize>,
    /// Cap in bytes on the pieces each decoder block's output is cut into, and on each conv2d
    /// call's im2col scratch ([`UNBOUNDED_SCRATCH`]: none); see [`VideoDecoder::stream`].
    ///
    /// [`VideoDecoder::stream`]: super::VideoDecoder::stream
    pub piece_bytes: usize,
}

impl Default for TilingConfig {
    /// No tiling at all.
    fn default() -> Self {
        Self {
            tile: None,
            overlap: 0,
            context: 0,
            chunk: None,
            piece_bytes: UNBOUNDED_SCRATCH,
        }
    }
}

impl TilingConfig {
    /// From ComfyUI's `VAEDecodeTiled` inputs (`tile_size`, `overlap` in pixels,
    /// `temporal_size`, `temporal_overlap` in frames), converted as ComfyUI does for LTX
    /// (spatial /32, temporal /8 with at least 2 latent frames). `temporal_overlap` is
    /// accepted for compatibility and unused: temporal chunks here are exact, not blended.
    /// `piece_bytes` is left unbounded; set it (or use `plan_for_budget`) to bound memory.
    pub fn from_comfy(
        tile_size: usize,
        overlap: usize,
        temporal_size: usize,
        _temporal_overlap: usize,
        scale: [usize; 3],
    ) -> Self {
        let overlap = if tile_size < 4 * overlap {
            tile_size / 4
        } else {
            overlap
        };
        let tile = (tile_size / scale[1]).max(1);
        Self {
            tile: Some(tile),
            overlap: (overlap / scale[1]).min(tile.saturating_sub(1)),
            context: 0,
            chunk: Some((temporal_size / scale[0]).max(2)),
            piece_bytes: UNBOUNDED_SCRATCH,
        }
    }
}

/// One tile's extent along a spatial axis, in latents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisTile {
    /// Latents fed to the decoder (core plus context, clipped to the latent).
    pub input: Range<usize>,
    /// Latents whose pixels this tile contributes.
    pub core: Range<usize>,
    /// Blend ramp at the start of the core, in latents.
    pub left_ramp: usize,
    /// Blend ramp at the end of the core, in latents.
    pub right_ramp: usize,
}

/// ltx-core's symmetric-overlap split of one axis of `len` latents, with context added.
pub fn split_axis(
    len: usize,
    tile: Option<usize>,
    overlap: usize,
    context: usize,
) -> Vec<AxisTile> {
    let whole = || {
        vec![AxisTile {
            input: 0..len,
            core: 0..len,
            left_ramp: 0,
            right_ramp: 0,
        }]
    };
    let Some(tile) = tile else {
        return whole();
    };
    let overlap = overlap.min(tile.saturating_sub(1));
    if len <= tile {
        return whole();
    }
    let step = tile - overlap;
    let count = (len + tile - 2 * overlap - 1) / step;
    (0..count)
        .map(|i| {
            let start = i * step;
            let end = if i + 1 == count { len } else { start + tile };
            AxisTile {
                input: start.saturating_sub(context)..(end + context).min(len),
                core: start..end,
                left_ramp: if i == 0 { 0 } else { overlap },
                right_ramp: if i + 1 == count { 0 } else { overlap },
            }
        })
        .collect()
}

/// ltx-core's `compute_trapezoidal_mask_1d` (ramps starting above 0): `length` weights with
/// linear ramps of `left` and `right` samples.
pub fn trapezoid(length: usize, left: usize, right: usize) -> Vec<f32> {
    let mut mask = vec![1f32; length];
    let left = left.min(length);
    let right = right.min(length);
    for (k, m) in mask.iter_mut().take(left).enumerate() {
        *m *= (k + 1) as f32 / (left + 1) as f32;
    }
    for k in 0..right {
        mask[length - right + k] *= 1.0 - (k + 1) as f32 / (right + 1) as f32;
    }
    mask
}

/// Per-tile blend weights along one axis in pixels, normalised to sum to 1 at every pixel.
fn axis_weights(
    tiles: &[AxisTile],
    scale: usize,
    device: &Device,
    dtype: DType,
) -> Result<Vec<Tensor>> {
    let total = tiles.iter().map(|t| t.core.end).max().unwrap_or(0) * scale;
    let masks: Vec<Vec<f32>> = tiles
        .iter()
        .map(|t| {
            trapezoid(
                t.core.len() * scale,
                t.left_ramp * scale,
                t.right_ramp * scale,
            )
        })
        .collect();
    let mut sum = vec![0f32; total];
    for (t, m) in tiles.iter().zip(&masks) {
        for (i, w) in m.iter().enumerate() {
            sum[t.core.start * scale + i] += w;
        }
    }
    tiles
        .iter()
        .zip(masks)
        .map(|(t, m)| {
            let normalised: Vec<f32> = m
                .iter()
                .enumerate()
                .map(|(i, w)| w / sum[t.core.start * scale + i].max(1e-8))
                .collect();
            Ok(Tensor::new(normalised.as_slice(), device)?.to_dtype(dtype)?)
        })
        .collect()
}

/// Events reported around every decoder call of a tiled decode (for memory accounting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// A decoder stream call is about to run.
    Start,
    /// It returned.
    End,
}

/// A tiled decode in progress: an iterator of pixel frame chunks `[B, 3, n, H, W]`.
pub struct TiledDecode<'a> {
    vae: &'a VideoVae,
    cond: DecoderConditioning,
    latent: Tensor,
    noise: Option<Tensor>,
    rows: Vec<AxisTile>,
    cols: Vec<AxisTile>,
    row_weights: Vec<Tensor>,
    col_weights: Vec<Tensor>,
    streams: Vec<DecoderStream>,
    chunk: usize,
    next_frame: usize,
    done: bool,
    observer: Option<Box<dyn FnMut(CallPhase) + 'a>>,
    output_device: Device,
}

impl<'a> TiledDecode<'a> {
    /// Prepares the decode of a normalised latent `[B, C, T, h, w]` (arguments as
    /// [`VideoVae::decode`]).
    pub fn new(
        vae: &'a VideoVae,
        latent: &Tensor,
        timestep: Option<f64>,
        noise: Option<&Tensor>,
        tiling: &TilingConfig,
    ) -> Result<Self> {
        let decoder = vae.decoder();
        let latent = latent.to_device(vae.device())?.to_dtype(vae.dtype())?;
        let (b, _, t, h, w) = latent.dims5()?;
        if t == 0 {
            return Err(Error::Input("tiled decode: latent has no frames".into()));
        }
        let chunk = match tiling.chunk {
            Some(c) if c > 0 && decoder.supports_temporal_chunks() => c,
            _ => t,
        };
        let noise = noise
            .map(|n| -> Result<Tensor> {
                to_frames(&n.to_device(vae.device())?.to_dtype(vae.dtype())?)
            })
            .transpose()?;
        let rows = split_axis(h, tiling.tile, tiling.overlap, tiling.context);
        let cols = split_axis(w, tiling.tile, tiling.overlap, tiling.context);
        let [_, sh, sw] = decoder.scale();
        let streams = (0..rows.len() * cols.len())
            .map(|_| decoder.stream(tiling.piece_bytes))
            .collect();
        Ok(Self {
            cond: decoder.conditioning(timestep, b, vae.dtype(), vae.device())?,
            latent: to_frames(&latent)?,
            noise,
            row_weights: axis_weights(&rows, sh, vae.device(), vae.dtype())?,
            col_weights: axis_weights(&cols, sw, vae.device(), vae.dtype())?,
            rows,
            cols,
            streams,
            chunk,
            next_frame: 0,
            done: false,
            observer: None,
            output_device: vae.device().clone(),
            vae,
        })
    }

    /// Calls `observer` before and after every decoder call.
    pub fn with_call_observer(mut self, observer: impl FnMut(CallPhase) + 'a) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Moves every decoded tile to `device` right after its decoder call and joins the tiles
    /// there (e.g. the host, so the decoder's device holds only the decoder's working set);
    /// output chunks are then on `device`.
    pub fn with_output_device(mut self, device: &Device) -> Result<Self> {
        let dtype = self.vae.dtype();
        let move_all = |ws: &[Tensor]| -> Result<Vec<Tensor>> {
            ws.iter()
                .map(|w| Ok(w.to_device(device)?.to_dtype(dtype)?))
                .collect()
        };
        self.row_weights = move_all(&self.row_weights)?;
        self.col_weights = move_all(&self.col_weights)?;
        self.output_device = device.clone();
        Ok(self)
    }

    /// Number of spatial tiles.
    pub fn tile_count(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    /// Latent frames per temporal chunk actually used.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Bytes the tiles' decoder streams hold between chunks right now.
    pub fn held_bytes(&self) -> usize {
        self.streams.iter().map(DecoderStream::held_bytes).sum()
    }

    /// Decodes the next temporal chunk on every tile; `None` when no frame was released.
    fn step(&mut self) -> Result<Option<Tensor>> {
        let total = self.latent.dim(1)?;
        let start = self.next_frame;
        let len = self.chunk.min(total - start);
        let last = start + len == total;
        self.next_frame += len;
        self.done = last;
        let frames = self.latent.narrow(1, start, len)?;
        let noise = self
            .noise
            .as_ref()
            .map(|n| n.narrow(1, start, len))
            .transpose()?;
        let [_, sh, sw] = self.vae.decoder().scale();
        let mut strips = Vec::with_capacity(self.rows.len());
        for (r, row) in self.rows.iter().enumerate() {
            let mut cores = Vec::with_capacity(self.cols.len());
            for (c, col) in self.cols.iter().enumerate() {
                let crop = |t: &Tensor| -> Result<Tensor> {
                    Ok(t.narrow(3, row.input.start, row.input.len())?
                        .narrow(4, col.input.start, col.input.len())?
                        .contiguous()?)
                };
                let tile_latent = crop(&frames)?;
                let tile_noise = noise.as_ref().map(crop).transpose()?;
                if let Some(observe) = self.observer.as_mut() {
                    observe(CallPhase::Start);
                }
                let decoded = self.vae.decoder().push(
                    &self.cond,
                    &mut self.streams[r * self.cols.len() + c],
                    Some(&tile_latent),
                    tile_noise.as_ref(),
                    last,
                )?;
                if let Some(observe) = self.observer.as_mut() {
                    observe(CallPhase::End);
                }
                let Some(decoded) = decoded else { continue };
                let decoded = decoded.to_device(&self.output_device)?;
                cores.push(
                    decoded
                        .narrow(
                            3,
                            (row.core.start - row.input.start) * sh,
                            row.core.len() * sh,
                        )?
                        .narrow(
                            4,
                            (col.core.start - col.input.start) * sw,
                            col.core.len() * sw,
                        )?,
                );
            }
            if cores.is_empty() {
                continue;
            }
            strips.push(blend_axis(&cores, &self.cols, sw, &self.col_weights, 4)?);
        }
        if strips.is_empty() {
            return Ok(None);
        }
        let frames = blend_axis(&strips, &self.rows, sh, &self.row_weights, 3)?;
        drop(strips);
        Ok(Some(from_frames(&frames)?))
    }
}

/// Joins tile outputs along `dim`: `parts[i]` holds the pixels of `tiles[i].core` (latents
/// times `scale`). Where one tile covers a pixel its value is taken as is (its normalised
/// weight is exactly 1); where several do, their weighted sum. Single-part joins are views.
fn blend_axis(
    parts: &[Tensor],
    tiles: &[AxisTile],
    scale: usize,
    weights: &[Tensor],
    dim: usize,
) -> Result<Tensor> {
    let px = |t: &AxisTile| t.core.start * scale..t.core.end * scale;
    let mut cuts: Vec<usize> = tiles
        .iter()
        .flat_map(|t| [px(t).start, px(t).end])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut segments = Vec::with_capacity(cuts.len());
    for span in cuts.windows(2) {
        let (p, q) = (span[0], span[1]);
        let mut segment: Option<Tensor> = None;
        let covering: Vec<usize> = (0..tiles.len())
            .filter(|&i| px(&tiles[i]).start <= p && q <= px(&tiles[i]).end)
            .collect();
        for &i in &covering {
            let offset = p - px(&tiles[i]).start;
            let part = parts[i].narrow(dim, offset, q - p)?;
            let term = if covering.len() == 1 {
                part
            } else {
                let mut shape = vec![1; part.rank()];
                shape[dim] = q - p;
                part.broadcast_mul(&weights[i].narrow(0, offset, q - p)?.reshape(shape)?)?
            };
            segment = Some(match segment {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
        segments
            .push(segment.ok_or_else(|| Error::Input("tiled decode: uncovered pixels".into()))?);
    }
    match segments.len() {
        1 => segments
            .pop()
            .ok_or_else(|| Error::Input("tiled decode: nothing to join".into())),
        _ => Ok(Tensor::cat(&segments, dim)?),
    }
}

impl Iterator for TiledDecode<'_> {
    type Item = Result<Tensor>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.step() {
                Ok(Some(frames)) => return Some(Ok(frames)),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl VideoVae {
    /// Decodes like [`VideoVae::decode`] but tile by tile and chunk by chunk (see the module
    /// docs of [`crate::ltx2::video_vae::tiling`]); returns the whole video
    /// `[B, 3, 8(T-1)+1, 32h, 32w]`. Use [`TiledDecode`] to receive it chunk by chunk.
    pub fn decode_tiled(
        &self,
        latent: &Tensor,
        timestep: Option<f64>,
        noise: Option<&Tensor>,
        tiling: &TilingConfig,
    ) -> Result<Tensor> {
        let chunks =
            TiledDecode::new(self, latent, timestep, noise, tiling)?.collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&chunks, 2)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_ltx_core_examples() {
        // 40 latents, tiles of 16 overlapping by 2: starts 0, 14, 28; the last ends at 40.
        let tiles = split_axis(40, Some(16), 2, 0);
        let cores: Vec<_> = tiles.iter().map(|t| t.core.clone()).collect();
        assert_eq!(cores, vec![0..16, 14..30, 28..40]);
        assert_eq!((tiles[0].left_ramp, tiles[0].right_ramp), (0, 2));
        assert_eq!((tiles[2].left_ramp, tiles[2].right_ramp), (2, 0));
        // context widens the input, clipped to the axis
        let tiles = split_axis(40, Some(16), 2, 3);
        assert_eq!(tiles[0].input, 0..19);
        assert_eq!(tiles[1].input, 11..33);
        assert_eq!(tiles[2].input, 25..40);
        assert_eq!(split_axis(10, Some(16), 2, 3)[0].input, 0..10);
    }

    #[test]
    fn trapezoid_ramps_sum_to_one_across_an_overlap() {
        let a = trapezoid(6, 0, 3);
        let b = trapezoid(6, 3, 0);
        for k in 0..3 {
            assert!((a[3 + k] + b[k] - 1.0).abs() < 1e-6);
        }
        assert_eq!(&a[..3], &[1.0, 1.0, 1.0]);
        assert!((b[0] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn comfy_inputs_convert_like_comfyui() {
        let t = TilingConfig::from_comfy(512, 64, 4096, 8, [8, 32, 32]);
        assert_eq!((t.tile, t.overlap, t.chunk), (Some(16), 2, Some(512)));
        let t = TilingConfig::from_comfy(128, 64, 16, 8, [8, 32, 32]);
        assert_eq!((t.tile, t.overlap, t.chunk), (Some(4), 1, Some(2)));
    }
}
