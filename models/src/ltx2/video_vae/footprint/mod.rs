//! Memory footprint of a (tiled) decode, computed from the VAE config alone, and the planner
//! that picks tile and piece sizes for a memory budget.
//!
//! The model replays the decoder stream's frame bookkeeping (how many frames each causal conv
//! receives, releases and carries, how many wait in residual queues) for the planned chunk
//! schedule, and at every layer adds up the tensors the implementation holds at once: the
//! streams' carried frames, the layer's input pieces and their concatenation, the conv output,
//! each conv2d group's scratch (input copy, im2col matrix, partial sums) and the elementwise
//! temporaries around it. It is an upper bound by construction (every term is counted as if
//! alive at the layer's worst moment); `tests/ltx2_video_vae_budget.rs` checks it against the
//! heap actually allocated on CPU.

mod sim;

use candle_core::{DType, Device};

use self::sim::{Env, StreamSim};
use super::config::{DecoderBlock, PaddingMode, VaeConfig};
use super::tiling::{TilingConfig, split_axis};
use crate::{Error, Result};

/// Where and how a decode runs, as far as its memory is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Bytes per activation element (4 for f32, 2 for bf16).
    pub elem_bytes: usize,
    /// Whether conv2d materialises an im2col matrix (candle's CUDA conv2d) rather than an
    /// input-sized copy plus per-thread tiles (candle's CPU conv2d).
    pub im2col: bool,
    /// Threads running CPU conv2d tasks at once (ignored with `im2col`).
    pub threads: usize,
    /// Whether the tiles' outputs are joined on the same device (counted in the total).
    pub blend_on_device: bool,
}

impl Target {
    /// The target of a decode in `dtype` on `device`, joining tiles there.
    pub fn new(device: &Device, dtype: DType) -> Self {
        Self {
            elem_bytes: dtype.size_in_bytes(),
            im2col: !device.is_cpu(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            blend_on_device: true,
        }
    }
}

/// Bytes a tiled decode needs at its peak, excluding weights and the caller's latent/noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Largest working set of a single decoder call (one tile, one chunk), including the
    /// state that tile's stream holds.
    pub max_call_bytes: usize,
    /// States the other tiles' streams hold while one tile decodes.
    pub other_tiles_bytes: usize,
    /// Decoded tile frames of one chunk and the blending buffers.
    pub blend_bytes: usize,
    /// The sum: the decode's peak working set.
    pub total_bytes: usize,
}

/// Latent dims of a decode: batch, frames, height, width (channels come from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentDims {
    /// Batch size.
    pub batch: usize,
    /// Latent frames.
    pub frames: usize,
    /// Latent height.
    pub height: usize,
    /// Latent width.
    pub width: usize,
}

/// Receptive radius of the decoder in latents: an output pixel depends only on latents less
/// than this many latents away (each 3x3x3 conv adds one voxel at its resolution, plus
/// rounding at the depth-to-space steps). 7 + 1 for the tiny fixture, 22 + 1 for LTX-2.
pub fn receptive_radius(cfg: &VaeConfig) -> usize {
    // Count in units of the finest resolution to stay in integers.
    let [_, total_scale, _] = cfg.decoder_scale();
    let finest = total_scale / cfg.patch_size;
    let mut scale = 1; // current resolution relative to the latent
    let mut radius = finest; // conv_in, one latent
    for block in &cfg.decoder_blocks {
        match *block {
            DecoderBlock::Res { num_layers, .. } => radius += 2 * num_layers * finest / scale,
            DecoderBlock::ResNarrow { .. } => radius += 2 * finest / scale,
            DecoderBlock::DepthToSpace { stride, .. } => {
                radius += finest / scale;
                scale *= stride[1];
            }
        }
    }
    radius += finest / scale; // conv_out
    // Each depth-to-space step can shift a pixel's view by up to one coarse voxel minus one
    // fine pixel relative to the exact distance; over the steps this stays below one latent.
    radius.div_ceil(finest) + 1
}

/// The footprint of decoding a latent of `dims` with `tiling` on `target` (see [`Footprint`]).
pub fn estimate(
    cfg: &VaeConfig,
    dims: LatentDims,
    target: Target,
    tiling: &TilingConfig,
) -> Result<Footprint> {
    let env = Env {
        batch: dims.batch,
        elem: target.elem_bytes,
        scratch: tiling.piece_bytes,
        padded: cfg.decoder_padding != PaddingMode::Zeros,
        im2col: target.im2col,
        threads: target.threads.max(1),
    };
    let rows = split_axis(dims.height, tiling.tile, tiling.overlap, tiling.context);
    let cols = split_axis(dims.width, tiling.tile, tiling.overlap, tiling.context);
    let chunk = tiling
        .chunk
        .filter(|&c| c > 0)
        .unwrap_or(dims.frames)
        .min(dims.frames.max(1));
    let mut max_call = 0;
    let mut max_held = 0;
    let mut max_released = 0;
    for row in &rows {
        for col in &cols {
            let mut sim = StreamSim::new(cfg, env, row.input.len(), col.input.len())?;
            let mut start = 0;
            while start < dims.frames {
                let len = chunk.min(dims.frames - start);
                start += len;
                let call = sim.push(len, start == dims.frames);
                max_call = max_call.max(call.peak);
                max_released = max_released.max(call.released_frames);
                max_held = max_held.max(sim.held().iter().sum::<usize>());
            }
        }
    }
    let tiles = rows.len() * cols.len();
    let blend = if target.blend_on_device {
        // Joining one chunk: the rows joined so far (at most the frame) beside the current
        // row's decoded tiles and its joined strip; then the joined frame beside its
        // frames-major -> channels-major copy.
        let [_, sh, sw] = cfg.decoder_scale();
        let full = dims.height * sh * dims.width * sw;
        let row_decoded = rows.iter().map(|r| r.input.len() * sh).max().unwrap_or(0)
            * cols.iter().map(|c| c.input.len() * sw).sum::<usize>();
        let strip = rows.iter().map(|r| r.core.len() * sh).max().unwrap_or(0) * dims.width * sw;
        let pixels = (full + row_decoded + strip).max(2 * full);
        dims.batch * max_released * cfg.out_channels * target.elem_bytes * pixels
    } else {
        0
    };
    let other = tiles.saturating_sub(1) * max_held;
    Ok(Footprint {
        max_call_bytes: max_call,
        other_tiles_bytes: other,
        blend_bytes: blend,
        total_bytes: max_call + other + blend,
    })
}

/// Picks the tiling with the least recomputation whose [`estimate`] fits in `budget` bytes:
/// whole frames or square tiles of decreasing size (with `overlap` and `context` latents),
/// each with the largest piece size that fits. All latent frames go in one call: the piece
/// cap, not temporal chunks, is what bounds the decoder's memory.
pub fn plan_for_budget(
    cfg: &VaeConfig,
    dims: LatentDims,
    target: Target,
    budget: usize,
    overlap: usize,
    context: usize,
) -> Result<TilingConfig> {
    let long = dims.height.max(dims.width);
    let mut tiles: Vec<Option<usize>> = vec![None];
    let mut t = long;
    while t > overlap + 2 {
        t = (t * 3 / 4).max(overlap + 2);
        tiles.push(Some(t));
    }
    let pieces: Vec<usize> = (1..=16).map(|k| (budget >> k).max(1)).collect();
    let mut best: Option<(f64, TilingConfig)> = None;
    for &tile in &tiles {
        for &piece_bytes in &pieces {
            let tiling = TilingConfig {
                tile,
                overlap,
                context,
                chunk: None,
                piece_bytes,
            };
            if estimate(cfg, dims, target, &tiling)?.total_bytes > budget {
                continue;
            }
            let rows = split_axis(dims.height, tile, overlap, context);
            let cols = split_axis(dims.width, tile, overlap, context);
            let decoded: usize = rows.iter().map(|r| r.input.len()).sum::<usize>()
                * cols.iter().map(|c| c.input.len()).sum::<usize>();
            let cost = decoded as f64 / (dims.height * dims.width).max(1) as f64;
            if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                best = Some((cost, tiling));
            }
            break;
        }
    }
    best.map(|(_, t)| t).ok_or_else(|| {
        Error::Input(format!(
            "no tiling of {dims:?} fits in a budget of {budget} bytes"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `vae` section of LTX-2 (19B): 4 `res_x` stages of 5 layers, 3 residual
    /// `compress_all` x2, decoder base 128, timestep-conditioned, reflect padding (default).
    fn ltx2_config() -> VaeConfig {
        let res = serde_json::json!(["res_x", {"num_layers": 5, "inject_noise": false}]);
        let up = serde_json::json!(["compress_all", {"residual": true, "multiplier": 2}]);
        VaeConfig::from_json(&serde_json::json!({
            "latent_channels": 128,
            "patch_size": 4,
            "decoder_blocks": [res, up, res, up, res, up, res],
            "decoder_base_channels": 128,
            "timestep_conditioning": true,
            "causal_decoder": false,
            "norm_layer": "pixel_norm",
        }))
        .unwrap()
    }

    const GIB: usize = 1 << 30;

    #[test]
    fn receptive_radius_counts_every_conv() {
        let cfg = ltx2_config();
        // 1 + 10 + 1 latents, then 11 convs at 1/2, 1/4 and 10 + 1 at 1/8 latent: 21.6 -> 22,
        // plus one latent of depth-to-space rounding.
        assert_eq!(receptive_radius(&cfg), 23);
    }

    #[test]
    fn a_121_frame_720p_decode_fits_a_budget() {
        // 121 frames of 1280x704 (720p rounded down to a multiple of 32, as ComfyUI's
        // EmptyLTXVLatentVideo does): latent 16 x 22 x 40, bf16 on a CUDA device.
        let cfg = ltx2_config();
        let dims = LatentDims {
            batch: 1,
            frames: 16,
            height: 22,
            width: 40,
        };
        let target = Target {
            elem_bytes: 2,
            im2col: true,
            threads: 1,
            blend_on_device: true,
        };
        let untiled = estimate(&cfg, dims, target, &TilingConfig::default()).unwrap();
        println!(
            "untiled: {:.2} GiB ({untiled:?})",
            untiled.total_bytes as f64 / GIB as f64
        );
        assert!(
            untiled.total_bytes > 16 * GIB,
            "an untiled 720p decode is far above 16 GiB"
        );
        for budget in [3 * GIB, 6 * GIB, 12 * GIB] {
            let plan = plan_for_budget(&cfg, dims, target, budget, 2, 0).unwrap();
            let fp = estimate(&cfg, dims, target, &plan).unwrap();
            println!(
                "budget {} GiB: {plan:?} -> call {:.2} GiB, other tiles {:.2} GiB, join {:.2} GiB",
                budget / GIB,
                fp.max_call_bytes as f64 / GIB as f64,
                fp.other_tiles_bytes as f64 / GIB as f64,
                fp.blend_bytes as f64 / GIB as f64
            );
            assert!(fp.total_bytes <= budget);
        }
        // Joining on the host leaves only the decoder calls on the device.
        let host_join = Target {
            blend_on_device: false,
            ..target
        };
        let plan = plan_for_budget(&cfg, dims, host_join, GIB, 2, 0).unwrap();
        assert!(estimate(&cfg, dims, host_join, &plan).unwrap().total_bytes <= GIB);
    }
}
