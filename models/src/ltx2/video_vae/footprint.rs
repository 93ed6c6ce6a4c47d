//! Memory footprint of a (tiled) decode, computed from the VAE config alone, and the planner
//! that picks tile and chunk sizes for a memory budget.
//!
//! The model replays the decoder stream's frame bookkeeping (how many frames each causal conv
//! receives, releases and carries, how many wait in residual queues) for the planned chunk
//! schedule, and at every layer adds up the tensors the implementation holds at once: the
//! streams' carried frames, the layer's input pieces and their concatenation, the conv output,
//! each conv2d group's scratch (input copy, im2col matrix, partial sums) and the elementwise
//! temporaries around it. It is an upper bound by construction (every term is counted as if
//! alive at the layer's worst moment); `tests/ltx2_video_vae_tiled.rs` checks it against the
//! heap actually allocated on CPU.

use super::config::{DecoderBlock, PaddingMode, VaeConfig};
use super::tiling::{TilingConfig, split_axis};
use crate::{Error, Result};

use candle_core::{DType, Device};

/// Elements of CUDA conv2d's im2col matrix per input element (3x3 kernels).
const IM2COL_FACTOR: usize = 9;
/// Output pixels per task of candle's CPU conv2d (its `TILE_SIZE`); each running task holds
/// an im2col tile and a result tile of that many pixels.
const CPU_CONV_TILE: usize = 512;
/// Allowance for the small allocations of a call (shapes, kernel copies, thread-locals).
const CALL_OVERHEAD: usize = 1 << 20;

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

/// One causal conv's frame bookkeeping (mirrors `ConvStream`).
#[derive(Debug, Clone)]
struct ConvSim {
    causal: bool,
    started: bool,
    carry: usize,
}

impl ConvSim {
    fn new(causal: bool) -> Self {
        Self {
            causal,
            started: false,
            carry: 0,
        }
    }

    /// (frames concatenated, frames out) for `n` frames in.
    fn push(&mut self, n: usize, last: bool) -> (usize, usize) {
        let mut total = self.carry + n;
        if !self.started {
            if n == 0 {
                return (0, 0);
            }
            total += if self.causal { 2 } else { 1 };
            self.started = true;
        }
        if total == 0 {
            return (0, 0);
        }
        if last && !self.causal {
            total += 1;
        }
        let out = total.saturating_sub(2);
        self.carry = if last { 0 } else { total - out };
        (total, out)
    }
}

/// Sizes shared by the simulation: batch, element bytes, piece/scratch cap, padding, conv2d
/// scratch per input element.
#[derive(Debug, Clone, Copy)]
struct Env {
    batch: usize,
    elem: usize,
    scratch: usize,
    padded: bool,
    im2col: bool,
    threads: usize,
}

impl Env {
    fn bytes(&self, frames: usize, channels: usize, h: usize, w: usize) -> usize {
        self.batch * frames * channels * h * w * self.elem
    }

    /// Working set of one conv push beyond the state and upstream tensors: the concatenated
    /// input (briefly beside its pieces), the padded copy, the conv2d scratch of a group
    /// (input copy or im2col matrix, running sum, tap output, new sum) and, when grouped, the
    /// preallocated output.
    fn conv(&self, all: usize, out: usize, cin: usize, cout: usize, h: usize, w: usize) -> usize {
        let input = self.bytes(all, cin, h, w);
        if out == 0 {
            return 2 * input;
        }
        let per_frame = self.bytes(1, cin, h, w) * IM2COL_FACTOR;
        let group = (self.scratch / per_frame.max(1)).clamp(1, out);
        let pad = if self.padded {
            self.bytes(all, cin, h + 2, w + 2)
        } else {
            0
        };
        let group_in = self.bytes(group, cin, h + 2, w + 2);
        let scratch = if self.im2col {
            group_in * IM2COL_FACTOR
        } else {
            let tiles = self.threads * CPU_CONV_TILE * (IM2COL_FACTOR * cin + cout) * self.elem;
            group_in + tiles.min(group_in * IM2COL_FACTOR + self.bytes(group, cout, h, w))
        };
        let work =
            scratch + 3 * self.bytes(group, cout, h, w) + cout * cin * IM2COL_FACTOR * self.elem;
        let grouped_out = if group < out {
            self.bytes(out, cout, h, w)
        } else {
            0
        };
        (2 * input).max(input + pad + work + grouped_out)
    }
}

/// One residual block's bookkeeping.
#[derive(Debug, Clone)]
struct ResSim {
    convs: [ConvSim; 2],
    queue: usize,
}

/// One stage of the simulated decoder (the granularity at which outputs are cut into pieces).
#[derive(Debug, Clone)]
enum Stage {
    /// `conv_in`, or the output head (norm, `conv_out`, unpatchify) when `head`.
    Conv {
        sim: ConvSim,
        cin: usize,
        cout: usize,
        scale: usize,
        head: bool,
    },
    /// A `res_x` stack.
    Res {
        blocks: Vec<ResSim>,
        channels: usize,
        scale: usize,
    },
    /// A depth-to-space block.
    Up {
        sim: ConvSim,
        cin: usize,
        cout: usize,
        stride: [usize; 3],
        residual: bool,
        conv_started: bool,
        skip_started: bool,
        queue: usize,
        scale: usize,
    },
}

impl Stage {
    /// Bytes this stage's stream state holds, for a tile of `h x w` latents.
    fn held(&self, e: &Env, h: usize, w: usize) -> usize {
        match self {
            Self::Conv {
                sim, cin, scale, ..
            } => e.bytes(sim.carry, *cin, h * scale, w * scale),
            Self::Res {
                blocks,
                channels,
                scale,
            } => blocks
                .iter()
                .map(|b| b.convs[0].carry + b.convs[1].carry + b.queue)
                .map(|frames| e.bytes(frames, *channels, h * scale, w * scale))
                .sum(),
            Self::Up {
                sim,
                cin,
                cout,
                stride,
                queue,
                scale,
                ..
            } => {
                let factor: usize = stride.iter().product();
                e.bytes(sim.carry, *cin, h * scale, w * scale)
                    + e.bytes(
                        *queue,
                        cout / factor,
                        h * scale * stride[1],
                        w * scale * stride[2],
                    )
            }
        }
    }

    /// Feeds `n` frames; returns (frames out, working bytes beyond upstream and state, bytes
    /// of the output tensor).
    fn push(
        &mut self,
        e: &Env,
        h0: usize,
        w0: usize,
        n: usize,
        last: bool,
    ) -> (usize, usize, usize) {
        match self {
            Self::Conv {
                sim,
                cin,
                cout,
                scale,
                head,
            } => {
                let (h, w) = (h0 * *scale, w0 * *scale);
                let (all, out) = sim.push(n, last);
                let mut work =
                    (3 * e.bytes(n, *cin, h, w)).max(e.conv(all, out, *cin, *cout, h, w));
                if *head {
                    work = work.max(2 * e.bytes(out, *cout, h, w));
                }
                (out, work, e.bytes(out, *cout, h, w))
            }
            Self::Res {
                blocks,
                channels,
                scale,
            } => {
                let (c, h, w) = (*channels, h0 * *scale, w0 * *scale);
                let mut frames = n;
                let mut work = 0;
                for block in blocks.iter_mut() {
                    block.queue += frames;
                    let waiting = e.bytes(block.queue, c, h, w);
                    let (all1, out1) = block.convs[0].push(frames, last);
                    let (all2, out2) = block.convs[1].push(out1, last);
                    let inner = (3 * e.bytes(frames, c, h, w))
                        .max(e.conv(all1, out1, c, c, h, w))
                        .max(4 * e.bytes(out1, c, h, w))
                        .max(e.conv(all2, out2, c, c, h, w))
                        .max(2 * e.bytes(out2, c, h, w));
                    work = work.max(waiting + inner);
                    block.queue -= out2;
                    frames = out2;
                }
                (frames, work, e.bytes(frames, c, h, w))
            }
            Self::Up {
                sim,
                cin,
                cout,
                stride,
                residual,
                conv_started,
                skip_started,
                queue,
                scale,
            } => {
                let (h, w) = (h0 * *scale, w0 * *scale);
                let factor: usize = stride.iter().product();
                let (cu, hu, wu) = (*cout / factor, h * stride[1], w * stride[2]);
                let drop = usize::from(stride[0] == 2);
                let mut skip_work = 0;
                if *residual && n > 0 {
                    *queue += n * stride[0] - if *skip_started { 0 } else { drop };
                    *skip_started = true;
                    skip_work = e.bytes(n, *cin, h, w) + 2 * e.bytes(*queue, cu, hu, wu);
                }
                let (all, out) = sim.push(n, last);
                let mut up = out * stride[0];
                if out > 0 && !*conv_started {
                    up -= drop;
                    *conv_started = true;
                }
                let waiting = e.bytes(*queue, cu, hu, wu);
                let conv = e.conv(all, out, *cin, *cout, h, w);
                let work = skip_work.max(waiting + conv.max(2 * e.bytes(up, cu, hu, wu)));
                if *residual {
                    *queue -= up;
                }
                (up, work, e.bytes(up, cu, hu, wu))
            }
        }
    }
}

/// The decoder stream's bookkeeping for one tile of `h x w` latents (mirrors
/// `VideoDecoder::push` and its piece-by-piece recursion).
#[derive(Debug, Clone)]
struct StreamSim {
    stages: Vec<Stage>,
    env: Env,
    h: usize,
    w: usize,
}

/// What one simulated call needed.
#[derive(Debug, Clone, Copy, Default)]
struct CallSim {
    peak: usize,
    released_frames: usize,
    released_bytes: usize,
}

impl StreamSim {
    fn new(cfg: &VaeConfig, env: Env, h: usize, w: usize) -> Result<Self> {
        let causal = cfg.causal_decoder;
        let mut channels = cfg.decoder_base_channels * 8;
        let mut scale = 1;
        let conv = |cin, cout, scale, head| Stage::Conv {
            sim: ConvSim::new(causal),
            cin,
            cout,
            scale,
            head,
        };
        let mut stages = vec![conv(cfg.latent_channels, channels, scale, false)];
        for block in &cfg.decoder_blocks {
            match *block {
                DecoderBlock::Res { num_layers, .. } => stages.push(Stage::Res {
                    blocks: (0..num_layers)
                        .map(|_| ResSim {
                            convs: [ConvSim::new(causal), ConvSim::new(causal)],
                            queue: 0,
                        })
                        .collect(),
                    channels,
                    scale,
                }),
                DecoderBlock::ResNarrow { .. } => {
                    return Err(Error::Config(
                        "footprint: res_x_y decoder blocks are not modelled".into(),
                    ));
                }
                DecoderBlock::DepthToSpace {
                    stride,
                    residual,
                    divisor,
                } => {
                    let factor: usize = stride.iter().product();
                    let cout = factor * channels / divisor;
                    stages.push(Stage::Up {
                        sim: ConvSim::new(causal),
                        cin: channels,
                        cout,
                        stride,
                        residual,
                        conv_started: false,
                        skip_started: false,
                        queue: 0,
                        scale,
                    });
                    channels = cout / factor;
                    scale *= stride[1];
                }
            }
        }
        let out_channels = cfg.out_channels * cfg.patch_size * cfg.patch_size;
        stages.push(conv(channels, out_channels, scale, true));
        Ok(Self { stages, env, h, w })
    }

    fn held(&self) -> Vec<usize> {
        self.stages
            .iter()
            .map(|s| s.held(&self.env, self.h, self.w))
            .collect()
    }

    /// Feeds `n` latent frames; returns the call's peak (state included) and what it released.
    fn push(&mut self, n: usize, last: bool) -> CallSim {
        let before = self.held();
        let mut call = CallSim::default();
        self.run(0, n, last, 0, &mut call);
        let held: usize = before
            .iter()
            .zip(self.held())
            .map(|(a, b)| (*a).max(b))
            .sum();
        call.peak = call.peak.max(2 * call.released_bytes) + held + CALL_OVERHEAD;
        call
    }

    fn run(&mut self, stage: usize, n: usize, last: bool, upstream: usize, call: &mut CallSim) {
        let env = self.env;
        let (h, w) = (self.h, self.w);
        let (out, work, out_bytes) = self.stages[stage].push(&env, h, w, n, last);
        call.peak = call.peak.max(upstream + call.released_bytes + work);
        if stage + 1 == self.stages.len() {
            call.released_frames += out;
            call.released_bytes += out_bytes;
            return;
        }
        if out == 0 {
            if last {
                self.run(stage + 1, 0, true, upstream, call);
            }
            return;
        }
        let per_piece = (env.scratch / (out_bytes / out).max(1)).clamp(1, out);
        let mut start = 0;
        while start < out {
            let len = per_piece.min(out - start);
            start += len;
            self.run(
                stage + 1,
                len,
                last && start == out,
                upstream + out_bytes,
                call,
            );
        }
    }
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
